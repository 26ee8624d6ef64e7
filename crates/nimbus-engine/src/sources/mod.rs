//! Event sources: the parts that turn something that happened (a queue
//! message, a schedule's tick, an object written) into a call of the
//! [`Dispatcher`](crate::dispatch::Dispatcher), which runs the target.
//!
//! The HTTP gateway and the direct-invoke APIs are sources too; they live in
//! their own crates because they own listeners and protocols.

pub mod object_events;
pub mod queue_mappings;
pub mod schedules;
