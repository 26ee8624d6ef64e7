//! Dev-only test kit: a scripted fake runtime ([`fake`]) and the engine
//! composed in-process on temporary SQLite stores ([`engine`]).
//!
//! Engine tests built on it run in milliseconds: no processes, no sockets, and
//! under `#[tokio::test(start_paused = true)]` a ten-second invocation takes no
//! real time. The tests themselves are in `tests/kit/`.

pub mod engine;
pub mod fake;
pub mod feed;

pub use engine::{Options, TestEngine, function_name, wait_until};
pub use fake::{Call, Counts, FakeFactory, Reply, Script};
pub use feed::KitChangeFeed;
