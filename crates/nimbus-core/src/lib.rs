//! Domain types shared by every part of Nimbus.
//!
//! This crate has no I/O. It defines what a function *is* (its configuration and
//! the rules that make one valid), what an invocation carries, and the one table of
//! public error codes, so that the control plane, the scheduler, the runtimes and
//! every API speak the same vocabulary and report the same errors.

pub mod clock;
pub mod error;
pub mod function;
pub mod invocation;
pub mod limits;
pub mod lineage;
pub mod package;
pub mod permissions;
pub mod policy;
pub mod schedule;
pub mod style;
pub mod target;

pub use clock::Clock;
pub use error::{AwsException, ErrorCode, ErrorRow, Throttle, ValidationError, platform_error};
pub use function::{
    AliasRecord, AliasRouting, EventInvokeConfig, FunctionConfig, FunctionName, FunctionRecord,
    Network, Runtime, validate_alias_name,
};
pub use invocation::{InvocationId, InvokeRequest};
pub use style::HandlerStyle;
pub use target::Target;
