//! Black-box tests of the `nimbus` binary: every test starts a real server on a
//! free port with a fresh data directory, deploys real functions and talks to it
//! over HTTP, exactly as users and their tools do.

#![allow(
    clippy::disallowed_methods,
    reason = "black-box tests start the nimbus binary and tools as processes"
)]

mod harness;

mod api;
mod cli;
mod failures;
mod gateway;
mod gateway_hostile;
mod handler_styles;
mod hostile;
mod lifecycle;
mod limits;
mod listeners;
mod logs;
mod memory;
mod messages;
mod nodejs;
mod objects;
mod provided;
mod python;
mod sandbox;
mod schedules;
mod spares;
mod workflows;
