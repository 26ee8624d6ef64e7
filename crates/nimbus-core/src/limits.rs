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
