//! Event sources: the parts that turn something that happened (a queue
//! message, a schedule's tick) into an invocation.
//!
//! The HTTP gateway and the direct-invoke APIs are sources too; they live in
//! their own crates because they own listeners and protocols.

pub mod queue_mappings;
pub mod schedules;
