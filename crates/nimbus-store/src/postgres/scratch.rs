//! Throwaway databases for tests and benchmarks: each test (or bench run)
//! gets a database of its own on the machine's PostgreSQL, created empty
//! and dropped afterwards, so runs never see each other's rows.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

use crate::StoreError;

/// The server tests use unless `NIMBUS_TEST_POSTGRES` names another (a URL
/// of a database the user may create databases from).
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists until this is dropped.
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl ScratchDatabase {
    /// Creates an empty database on the server of `NIMBUS_TEST_POSTGRES`
    /// (or [`DEFAULT_ADMIN_URL`]).
    pub async fn create() -> Result<Self, StoreError> {
        let admin_url =
            std::env::var("NIMBUS_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        Self::create_on(&admin_url).await
    }

    /// Creates an empty database on the server `admin_url` points to.
    pub async fn create_on(admin_url: &str) -> Result<Self, StoreError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mut salt = [0u8; 4];
        getrandom::fill(&mut salt).map_err(|e| StoreError::Task(e.to_string()))?;
        let name = format!(
            "nimbus_t_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            hex::encode(salt)
        );
        let (client, conn) = tokio_postgres::connect(admin_url, NoTls).await?;
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        drop(client);
        let _ = driver.await;
        let url = replace_dbname(admin_url, &name);
        Ok(ScratchDatabase {
            admin_url: admin_url.to_string(),
            name,
            url,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `admin_url` with its database name replaced by `name`.
fn replace_dbname(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    // postgres://user@host:port/db -> keep everything up to the path.
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // Drop runs outside async code, perhaps on a runtime's thread: drop
        // the database from a thread of its own, and wait for it.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    let driver = tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    drop(client);
                    let _ = driver.await;
                }
            });
        });
        let _ = done.join();
    }
}

#[cfg(test)]
mod tests {
    use super::replace_dbname;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(
            replace_dbname("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_dbname("postgres://u:p@h/db?connect_timeout=3", "x"),
            "postgres://u:p@h/x?connect_timeout=3"
        );
        assert_eq!(replace_dbname("postgres://h", "x"), "postgres://h/x");
    }
}
