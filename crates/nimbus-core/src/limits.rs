//! Platform limits, in one place so that the API, the CLI and the docs agree.
//! The values follow AWS Lambda's published quotas where one exists, so that code
//! that works on Nimbus also fits on Lambda and the other way round.

/// Largest synchronous invocation request payload (Lambda: 6 MB).
pub const MAX_SYNC_REQUEST_BYTES: usize = 6 * 1024 * 1024;
/// Largest response a runtime may post; Lambda's RIE uses 6 MiB + 100 bytes.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 + 100;
/// Largest response a function may stream (Lambda's documented maximum).
pub const MAX_STREAMED_RESPONSE_BYTES: u64 = 200 * 1024 * 1024;
/// Largest zipped code package accepted by a direct upload (Lambda: 50 MB).
pub const MAX_ZIP_BYTES: u64 = 50 * 1024 * 1024;
/// Largest unzipped code package (Lambda: 250 MB).
pub const MAX_UNZIPPED_BYTES: u64 = 250 * 1024 * 1024;
/// Most entries a code package may hold; guards against zip bombs made of tiny files.
pub const MAX_ZIP_ENTRIES: usize = 20_000;
pub const MIN_MEMORY_MB: u32 = 128;
pub const MAX_MEMORY_MB: u32 = 10_240;
pub const DEFAULT_MEMORY_MB: u32 = 128;
/// A function's private `/tmp` (Lambda's `EphemeralStorage`).
pub const MIN_EPHEMERAL_STORAGE_MB: u32 = 512;
pub const MAX_EPHEMERAL_STORAGE_MB: u32 = 10_240;
pub const DEFAULT_EPHEMERAL_STORAGE_MB: u32 = 512;
pub const MIN_TIMEOUT_S: u32 = 1;
pub const MAX_TIMEOUT_S: u32 = 900;
pub const DEFAULT_TIMEOUT_S: u32 = 3;
/// Total size of all environment variable names and values (Lambda: 4 KB).
pub const MAX_ENV_BYTES: usize = 4 * 1024;
pub const MAX_DESCRIPTION_CHARS: usize = 256;
/// Bytes of log text returned with an invocation when the caller asks for the tail.
pub const LOG_TAIL_BYTES: usize = 4 * 1024;
/// Largest asynchronous (`Event`) invocation payload (Lambda: 1 MB since 2025).
pub const MAX_ASYNC_REQUEST_BYTES: usize = 1024 * 1024;
/// Most log lines one `GET /v1/functions/{name}/logs` returns (its `limit`).
pub const MAX_LOG_QUERY_LINES: usize = 10_000;

// Schedules (EventBridge Scheduler's bounds, so an expression moves over unchanged).
/// Longest schedule expression (EventBridge `ScheduleExpression`: 256 characters).
pub const MAX_SCHEDULE_EXPRESSION_CHARS: usize = 256;
/// Longest time zone name (EventBridge `ScheduleExpressionTimezone`: 50 characters).
pub const MAX_TIME_ZONE_CHARS: usize = 50;
/// Shortest `rate()` period (EventBridge: one minute).
pub const MIN_RATE_PERIOD_S: i64 = 60;
/// Longest `rate()` period: ten years of days. EventBridge documents no upper
/// bound, but a period this long never fires in practice, and bounding it keeps
/// every fire time inside chrono's range with room to spare.
pub const MAX_RATE_PERIOD_S: i64 = 3650 * 86_400;
/// First and last year a cron year field may name (EventBridge: 1970-2199).
pub const MIN_CRON_YEAR: u32 = 1970;
pub const MAX_CRON_YEAR: u32 = 2199;

/// Event-driven invocations of one function in one chain of events before the
/// next is dropped (Lambda's recursive loop detection stops at 16).
pub const MAX_RECURSION_HOPS: u32 = 16;
