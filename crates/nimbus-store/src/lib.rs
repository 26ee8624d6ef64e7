//! Storage behind narrow interfaces.
//!
//! The rest of Nimbus sees three things: a [`MetadataStore`] (functions and, later,
//! versions, aliases, keys), a [`LogStore`] (invocation logs with retention) and a
//! [`CodeStore`] (content-addressed code packages). The embedded backends here are
//! SQLite in WAL mode and plain files in the data directory; cluster backends
//! (PostgreSQL, object storage) implement the same traits.

mod code;
mod error;
mod logs;
mod metadata;
mod sqlite;

pub use code::{CodeInfo, CodeStore};
pub use error::StoreError;
pub use logs::{LogQuery, LogRecord, LogStore, SqliteLogStore, StoredLog};
pub use metadata::{MetadataStore, SqliteMetadataStore};
pub use sqlite::open_database;
