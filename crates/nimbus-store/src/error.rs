use nimbus_core::ValidationError;

/// The error of every storage contract. It names no backend's types: a
/// backend maps its own errors to [`StoreError::Backend`] (the SQLite one in
/// `sqlite/mod.rs`), keeping the typed variants for what callers act upon.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The backend failed (a database, a network, a driver); callers only
    /// report it.
    #[error("database error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// Wraps an error of a backend.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

// Kept apart from the variants above so backends can change those freely:
// everything a backend adds is an internal error unless it says otherwise.
impl StoreError {
    /// This error's row of the error table.
    pub fn code(&self) -> nimbus_core::ErrorCode {
        use nimbus_core::ErrorCode;
        match self {
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::Invalid(v) => v.code,
            _ => ErrorCode::Internal,
        }
    }
}
