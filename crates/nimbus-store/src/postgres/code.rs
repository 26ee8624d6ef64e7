//! Code packages of a cluster, in PostgreSQL: any node can run any function
//! because every node fetches packages from the one database.
//!
//! A package is stored as 1 MiB rows, like object bodies, so that sending one
//! on streams it without holding it, and a row never approaches the limits
//! of a single value. Packages are immutable and named by their sha256, so
//! a put is one transaction that stores them all or finds the name taken
//! (then the bytes are the same: nothing to do), and a read needs no
//! snapshot: the rows it fetches later are the ones it found.

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::GenericClient;
use futures::StreamExt;

use crate::StoreError;
use crate::body::ByteStream;
use crate::code::{CodeBlobs, CodeInfo, Package, is_sha256, not_a_sha256};
use crate::postgres::{Pg, migrate};

/// The `code` area's schema, one step per version. Zips are compressed
/// already: their rows are stored as they are (`EXTERNAL`).
const MIGRATIONS: &[&str] = &["
CREATE TABLE code_packages (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL
);
CREATE TABLE code_chunks (
    sha256 TEXT NOT NULL REFERENCES code_packages (sha256) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (sha256, seq)
);
ALTER TABLE code_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
"];

/// Bytes per chunk row (all but a package's last hold exactly this many).
const CHUNK: usize = 1 << 20;

/// Chunk rows written per statement (one round trip each).
const CHUNKS_PER_INSERT: usize = 8;

/// Chunks a read fetches ahead of the one its consumer is taking.
const READ_AHEAD: usize = 2;

pub struct PgCodeBlobs {
    pg: Pg,
}

impl PgCodeBlobs {
    /// Brings the `code` schema up to date.
    pub async fn open(pg: &Pg) -> Result<Self, StoreError> {
        migrate(pg, "code", MIGRATIONS).await?;
        Ok(Self { pg: pg.clone() })
    }

    async fn size(&self, sha256: &str) -> Result<Option<u64>, StoreError> {
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached("SELECT size FROM code_packages WHERE sha256 = $1")
            .await?;
        let row = client.query_opt(&stmt, &[&sha256]).await?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }
}

fn not_found(sha256: &str) -> StoreError {
    StoreError::NotFound(format!("code package {sha256}"))
}

/// Writes `zip` as the chunk rows of `sha256`, several rows per statement.
async fn insert_chunks(
    tx: &impl GenericClient,
    sha256: &str,
    zip: &[u8],
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO code_chunks (sha256, seq, data)
             SELECT $1, seq, data FROM unnest($2::int4[], $3::bytea[]) AS c(seq, data)",
        )
        .await?;
    let chunks: Vec<(i32, &[u8])> = zip
        .chunks(CHUNK)
        .enumerate()
        .map(|(seq, data)| (seq as i32, data))
        .collect();
    for batch in chunks.chunks(CHUNKS_PER_INSERT) {
        let (seqs, data): (Vec<i32>, Vec<&[u8]>) = batch.iter().copied().unzip();
        tx.execute(&stmt, &[&sha256, &seqs, &data]).await?;
    }
    Ok(())
}

async fn fetch(pg: Pg, sha256: String, seq: i32) -> std::io::Result<Bytes> {
    let row = async {
        let client = pg.client().await?;
        let stmt = client
            .prepare_cached("SELECT data FROM code_chunks WHERE sha256 = $1 AND seq = $2")
            .await?;
        Ok::<_, StoreError>(client.query_opt(&stmt, &[&sha256, &seq]).await?)
    }
    .await
    .map_err(std::io::Error::other)?;
    let data: Vec<u8> = row
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("chunk {seq} of code package {sha256} is missing"),
            )
        })?
        .get(0);
    Ok(data.into())
}

#[async_trait]
impl CodeBlobs for PgCodeBlobs {
    async fn put(&self, package: &Package) -> Result<(), StoreError> {
        let sha256 = &package.info().sha256;
        if !is_sha256(sha256) {
            return Err(not_a_sha256(sha256));
        }
        let zip = package.zip();
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        // A concurrent put of the same package waits here for the first
        // one's commit, then finds the name taken.
        let created = tx
            .execute(
                "INSERT INTO code_packages (sha256, size) VALUES ($1, $2)
                 ON CONFLICT (sha256) DO NOTHING",
                &[&sha256, &(zip.len() as i64)],
            )
            .await?;
        if created == 0 {
            return Ok(());
        }
        insert_chunks(&tx, sha256, zip).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn info(&self, sha256: &str) -> Result<Option<CodeInfo>, StoreError> {
        if !is_sha256(sha256) {
            return Ok(None);
        }
        Ok(self.size(sha256).await?.map(|size| CodeInfo {
            sha256: sha256.to_string(),
            size,
        }))
    }

    async fn get(&self, sha256: &str) -> Result<Bytes, StoreError> {
        if !is_sha256(sha256) {
            return Err(not_a_sha256(sha256));
        }
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT p.size, c.data FROM code_packages p
                 LEFT JOIN code_chunks c ON c.sha256 = p.sha256
                 WHERE p.sha256 = $1 ORDER BY c.seq",
            )
            .await?;
        let rows = client.query(&stmt, &[&sha256]).await?;
        let size = rows
            .first()
            .ok_or_else(|| not_found(sha256))?
            .get::<_, i64>(0) as usize;
        let mut zip = Vec::with_capacity(size);
        for row in &rows {
            if let Some(data) = row.get::<_, Option<&[u8]>>(1) {
                zip.extend_from_slice(data);
            }
        }
        if zip.len() != size {
            return Err(StoreError::Corrupt(format!(
                "code package {sha256} has {} of its {size} bytes",
                zip.len()
            )));
        }
        Ok(zip.into())
    }

    async fn open(&self, sha256: &str) -> Result<(CodeInfo, ByteStream), StoreError> {
        if !is_sha256(sha256) {
            return Err(not_a_sha256(sha256));
        }
        let size = self.size(sha256).await?.ok_or_else(|| not_found(sha256))?;
        let chunks = size.div_ceil(CHUNK as u64) as i32;
        let (pg, sha) = (self.pg.clone(), sha256.to_string());
        let stream = futures::stream::iter(0..chunks)
            .map(move |seq| fetch(pg.clone(), sha.clone(), seq))
            .buffered(READ_AHEAD);
        let info = CodeInfo {
            sha256: sha256.to_string(),
            size,
        };
        Ok((info, Box::pin(stream)))
    }
}
