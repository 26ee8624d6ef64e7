//! The object store of a cluster: buckets, objects, multipart uploads and
//! the bodies themselves in PostgreSQL, so every node serves every object
//! with nothing shared but the database.
//!
//! Why bodies in the database rather than beside it: one backup, one
//! failover, and a body commits in the same place as the row pointing to it.
//! How they are kept (chunked, streamed, reference-counted, swept) is in
//! [`blobs`].
//!
//! Why no change notices: no node keeps buckets or objects in memory (a
//! bucket's notification rules are read with the bucket at each event), so
//! there is nothing to invalidate.
//!
//! Locks: a write that must see a stable set of rows locks their parent
//! first, always in the order bucket → upload, so that concurrent completes,
//! aborts and bucket deletions never leave a part's body unreleased and
//! never deadlock each other.

mod blobs;
mod list;
mod outbox;
mod uploads;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use md5::{Digest, Md5};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};

use self::blobs::{Segment, Written};
use crate::StoreError;
use crate::objects::{
    BucketInfo, ByteRange, CreatedObject, ListPage, ListQuery, MAX_PART_NUMBER, MIN_PART_SIZE,
    Notification, ObjectAttrs, ObjectError, ObjectMeta, ObjectRead, ObjectStore, PartInfo,
    PendingNotification, PutBody, UploadInfo, multipart_etag,
};
use crate::postgres::{Pg, migrate};

/// The `objects` area's schema, one step per version. Keys and bucket names
/// sort as bytes (`COLLATE "C"`), S3's order; chunk data is stored
/// uncompressed (`EXTERNAL`) so a range read fetches only the slices it
/// covers and already-compressed bodies cost no compression attempt. The
/// notifications outbox (v2, see [`outbox`]) has no foreign key to its
/// bucket: a notification outlives the bucket's deletion, as on S3.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE object_buckets (
    name TEXT COLLATE \"C\" PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    notifications TEXT
);
CREATE TABLE object_blobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    size BIGINT NOT NULL DEFAULT 0,
    refs INTEGER NOT NULL DEFAULT 0,
    expires_ms BIGINT
);
CREATE INDEX object_blobs_expiry ON object_blobs (expires_ms) WHERE expires_ms IS NOT NULL;
CREATE TABLE object_chunks (
    blob BIGINT NOT NULL REFERENCES object_blobs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (blob, seq)
);
ALTER TABLE object_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE objects (
    bucket TEXT COLLATE \"C\" NOT NULL REFERENCES object_buckets (name),
    key TEXT COLLATE \"C\" NOT NULL,
    blobs BIGINT[] NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    modified_ms BIGINT NOT NULL,
    attrs JSONB NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE object_uploads (
    id TEXT PRIMARY KEY,
    bucket TEXT COLLATE \"C\" NOT NULL REFERENCES object_buckets (name) ON DELETE CASCADE,
    key TEXT NOT NULL,
    attrs JSONB NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX object_uploads_bucket ON object_uploads (bucket);
CREATE TABLE object_parts (
    upload TEXT NOT NULL REFERENCES object_uploads (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    blobs BIGINT[] NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    modified_ms BIGINT NOT NULL,
    PRIMARY KEY (upload, number)
);
",
    "
CREATE TABLE object_notifications (
    id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    size BIGINT,
    etag TEXT,
    committed_ms BIGINT NOT NULL,
    detail TEXT NOT NULL,
    due_ms BIGINT NOT NULL,
    claims INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX object_notifications_due ON object_notifications (due_ms, id);
",
];

/// A node sweeps expired bodies at most this often after its own writes.
const SWEEP_EVERY_MS: i64 = 60 * 1000;

/// An object's description, `bucket` and `key` given (the bucket exists
/// when the row does).
const FIND_OBJECT: &str = "SELECT o.key, o.size, o.etag, o.modified_ms, o.attrs::text
    FROM object_buckets b LEFT JOIN objects o ON o.bucket = b.name AND o.key = $2
    WHERE b.name = $1";

/// [`FIND_OBJECT`] and the blobs of the body with their sizes, in order.
const FIND_BODY: &str = "SELECT o.key, o.size, o.etag, o.modified_ms, o.attrs::text, o.blobs,
        ARRAY(SELECT s.size FROM unnest(o.blobs) WITH ORDINALITY AS u(id, n)
              JOIN object_blobs s ON s.id = u.id ORDER BY u.n)
    FROM object_buckets b LEFT JOIN objects o ON o.bucket = b.name AND o.key = $2
    WHERE b.name = $1";

/// Replaces an object, returning the blobs of the version replaced.
const UPDATE_OBJECT: &str =
    "WITH old AS (SELECT blobs FROM objects WHERE bucket = $1 AND key = $2 FOR UPDATE)
    UPDATE objects o SET blobs = $3, size = $4, etag = $5, modified_ms = $6, attrs = $7
    FROM old WHERE o.bucket = $1 AND o.key = $2
    RETURNING old.blobs";

const INSERT_OBJECT: &str =
    "INSERT INTO objects (bucket, key, blobs, size, etag, modified_ms, attrs)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (bucket, key) DO NOTHING";

impl From<tokio_postgres::Error> for ObjectError {
    fn from(e: tokio_postgres::Error) -> Self {
        ObjectError::backend(e)
    }
}

/// A pooled connection to the database.
async fn connect(pg: &Pg) -> Result<deadpool_postgres::Object, ObjectError> {
    pg.client().await.map_err(ObjectError::backend)
}

/// Whether `e` is a foreign-key violation (a row whose parent is gone).
fn is_orphan(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}

/// Runs a write transaction, again when PostgreSQL broke a deadlock by
/// aborting it ([`super::retry_deadlocks`]). Writers lock an object's row
/// before its bodies, but two that share bodies can still meet in opposite
/// orders (two copies swapping two objects).
async fn retry_deadlocks<T, Fut>(attempt: impl FnMut() -> Fut) -> Result<T, ObjectError>
where
    Fut: std::future::Future<Output = Result<T, ObjectError>>,
{
    super::retry_deadlocks(is_deadlock, attempt).await
}

fn is_deadlock(e: &ObjectError) -> bool {
    let ObjectError::Backend(e) = e else {
        return false;
    };
    e.downcast_ref::<tokio_postgres::Error>()
        .is_some_and(super::is_deadlock)
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    hex::encode(b)
}

fn from_json(s: &str) -> Result<ObjectAttrs, ObjectError> {
    serde_json::from_str(s).map_err(|e| ObjectError::Corrupt(e.to_string()))
}

/// An object's description from the columns `key, size, etag, modified_ms,
/// attrs::text`, starting at `at`.
fn object_meta(row: &tokio_postgres::Row, at: usize) -> Result<ObjectMeta, ObjectError> {
    Ok(ObjectMeta {
        key: row.try_get(at)?,
        size: row.try_get::<_, i64>(at + 1)? as u64,
        etag: row.try_get(at + 2)?,
        modified_ms: row.try_get(at + 3)?,
        attrs: from_json(row.try_get(at + 4)?)?,
    })
}

fn upload_info(id: &str, row: &tokio_postgres::Row) -> Result<UploadInfo, ObjectError> {
    Ok(UploadInfo {
        id: id.to_string(),
        bucket: row.try_get(0)?,
        key: row.try_get(1)?,
        attrs: from_json(row.try_get(2)?)?,
        created_ms: row.try_get(3)?,
    })
}

/// Replaces the row `update` finds, or inserts it with `insert` (both take
/// the same parameters); returns the blobs the replaced row listed. An
/// insert that finds the row taken by a concurrent one retries the update,
/// so the blobs of that row are released too.
async fn upsert(
    tx: &impl GenericClient,
    update: &str,
    insert: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let update = tx.prepare_cached(update).await?;
    let insert = tx.prepare_cached(insert).await?;
    loop {
        if let Some(row) = tx.query_opt(&update, params).await? {
            return Ok(row.get(0));
        }
        if tx.execute(&insert, params).await? == 1 {
            return Ok(Vec::new());
        }
    }
}

/// The MD5 of a body read back from the database (a copy of a multipart
/// object gets the plain MD5 of its bytes as its ETag, as on the file
/// backend).
async fn hash(mut body: crate::ByteStream) -> Result<String, ObjectError> {
    use futures::StreamExt;
    let mut md5 = Md5::new();
    while let Some(chunk) = body.next().await {
        md5.update(chunk.map_err(ObjectError::backend)?);
    }
    Ok(hex::encode(md5.finalize()))
}

/// A created object, as its notifications record it.
fn created(meta: &ObjectMeta) -> CreatedObject {
    CreatedObject {
        size: meta.size,
        etag: meta.etag.clone(),
    }
}

/// Whether an ETag is the plain MD5 of the bytes (not a multipart one).
fn is_plain_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

pub struct PgObjectStore {
    pg: Pg,
    min_part_size: u64,
    /// Stamps creation and modification times, and expiries.
    clock: nimbus_core::Clock,
    /// When this store last swept expired bodies (ms since the epoch).
    last_sweep_ms: Arc<AtomicI64>,
}

impl PgObjectStore {
    /// Brings the `objects` schema up to date and removes the bodies whose
    /// time is up.
    pub async fn open(pg: &Pg) -> Result<Self, StoreError> {
        migrate(pg, "objects", MIGRATIONS).await?;
        let store = Self {
            pg: pg.clone(),
            min_part_size: MIN_PART_SIZE,
            clock: nimbus_core::Clock::system(),
            last_sweep_ms: Arc::new(AtomicI64::new(0)),
        };
        store.sweep().await.map_err(StoreError::backend)?;
        Ok(store)
    }

    /// Reads the time from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: nimbus_core::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Lowers S3's 5 MiB minimum part size (tests).
    pub fn with_min_part_size(mut self, bytes: u64) -> Self {
        self.min_part_size = bytes;
        self
    }

    /// Deletes the bodies whose time is up: released ones past their grace
    /// period, staged ones whose writer stopped. Writes call it now and then
    /// on their own; returns how many bodies went.
    pub async fn sweep(&self) -> Result<u64, ObjectError> {
        let now = self.clock.now_ms();
        self.last_sweep_ms.store(now, Ordering::Relaxed);
        blobs::sweep(&self.pg, now).await
    }

    /// Starts a sweep in the background unless this store swept recently.
    fn sweep_soon(&self) {
        let now = self.clock.now_ms();
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now - last < SWEEP_EVERY_MS
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let pg = self.pg.clone();
        tokio::spawn(async move {
            if let Err(e) = blobs::sweep(&pg, now).await {
                tracing::warn!(error = %e, "sweeping expired object bodies failed");
            }
        });
    }

    /// An object's description and, with `body`, the blobs of its body.
    async fn find(
        &self,
        bucket: &str,
        key: &str,
        body: bool,
    ) -> Result<(ObjectMeta, Vec<Segment>), ObjectError> {
        let client = connect(&self.pg).await?;
        let stmt = client
            .prepare_cached(if body { FIND_BODY } else { FIND_OBJECT })
            .await?;
        let row = client
            .query_opt(&stmt, &[&bucket, &key])
            .await?
            .ok_or_else(|| ObjectError::NoSuchBucket(bucket.to_string()))?;
        if row.get::<_, Option<String>>(0).is_none() {
            return Err(ObjectError::NoSuchKey(key.to_string()));
        }
        let meta = object_meta(&row, 0)?;
        if !body {
            return Ok((meta, Vec::new()));
        }
        let ids: Vec<i64> = row.try_get(5)?;
        let sizes: Vec<i64> = row.try_get(6)?;
        let total: i64 = sizes.iter().sum();
        if ids.len() != sizes.len() || total as u64 != meta.size {
            return Err(ObjectError::Corrupt(format!(
                "the body of {bucket}/{key} is missing blobs"
            )));
        }
        let segments = ids.into_iter().zip(sizes.into_iter().map(|s| s as u64));
        Ok((meta, segments.collect()))
    }

    /// Points `bucket/meta.key` at `blobs` (already referenced for it) in
    /// `tx`, releasing the version it replaces.
    async fn replace_object(
        &self,
        tx: &impl GenericClient,
        bucket: &str,
        meta: &ObjectMeta,
        blobs: &[i64],
    ) -> Result<(), ObjectError> {
        let params: [&(dyn ToSql + Sync); 7] = [
            &bucket,
            &meta.key,
            &blobs,
            &(meta.size as i64),
            &meta.etag,
            &meta.modified_ms,
            &Json(&meta.attrs),
        ];
        let replaced = upsert(tx, UPDATE_OBJECT, INSERT_OBJECT, &params)
            .await
            .map_err(|e| {
                if is_orphan(&e) {
                    ObjectError::NoSuchBucket(bucket.to_string())
                } else {
                    e.into()
                }
            })?;
        blobs::release(tx, &replaced, self.clock.now_ms()).await
    }

    /// Commits a written body as `bucket/meta.key` with the write's
    /// notifications; the body is removed if the commit fails.
    async fn commit_object(
        &self,
        bucket: &str,
        meta: ObjectMeta,
        written: &Written,
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError> {
        let committed = retry_deadlocks(|| async {
            let mut client = connect(&self.pg).await?;
            let tx = client.transaction().await?;
            let blobs = blobs::claim(&tx, written).await?;
            self.replace_object(&tx, bucket, &meta, &blobs).await?;
            self.note(&tx, bucket, &meta, notifications).await?;
            tx.commit().await?;
            Ok(())
        })
        .await;
        self.settle(written, committed).await?;
        self.sweep_soon();
        Ok(meta)
    }

    /// Stores the notifications of the write of `meta` in its transaction.
    async fn note(
        &self,
        tx: &impl GenericClient,
        bucket: &str,
        meta: &ObjectMeta,
        notifications: &[Notification],
    ) -> Result<(), ObjectError> {
        let written = outbox::Written {
            bucket,
            key: &meta.key,
            object: Some(created(meta)),
            committed_ms: meta.modified_ms,
        };
        outbox::store(tx, &written, notifications).await
    }

    /// After a commit of `written`: on failure, removes its staged body.
    async fn settle(
        &self,
        written: &Written,
        committed: Result<(), ObjectError>,
    ) -> Result<(), ObjectError> {
        if committed.is_err()
            && let Some(blob) = written.staged()
        {
            blobs::discard(&self.pg, blob).await;
        }
        committed
    }

    /// One attempt at completing upload `id` with the listed parts.
    async fn complete(
        &self,
        id: &str,
        parts: &[(u32, String)],
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError> {
        let mut client = connect(&self.pg).await?;
        let tx = client.transaction().await?;
        let upload = uploads::lock_for_completion(&tx, id).await?;
        let stored = uploads::stored_parts(&tx, id).await?;
        let chosen = uploads::choose_parts(parts, &stored, self.min_part_size)?;
        let etags: Vec<&str> = chosen.iter().map(|(p, _)| p.etag.as_str()).collect();
        let meta = ObjectMeta {
            key: upload.key.clone(),
            size: chosen.iter().map(|(p, _)| p.size).sum(),
            etag: multipart_etag(&etags),
            modified_ms: self.clock.now_ms(),
            attrs: upload.attrs,
        };
        // The object takes over the chosen parts' blobs (no bytes move);
        // the parts not chosen are released with the upload.
        let numbers: Vec<i32> = chosen.iter().map(|(p, _)| p.number as i32).collect();
        tx.execute(
            "DELETE FROM object_parts WHERE upload = $1 AND number = ANY($2)",
            &[&id, &numbers],
        )
        .await?;
        uploads::end_uploads(&tx, &[id.to_string()], self.clock.now_ms()).await?;
        let blobs: Vec<i64> = chosen.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        self.replace_object(&tx, &upload.bucket, &meta, &blobs)
            .await?;
        self.note(&tx, &upload.bucket, &meta, notifications).await?;
        tx.commit().await?;
        Ok(meta)
    }
}

#[async_trait]
impl ObjectStore for PgObjectStore {
    async fn create_bucket(&self, name: &str) -> Result<BucketInfo, ObjectError> {
        let info = BucketInfo {
            name: name.to_string(),
            created_ms: self.clock.now_ms(),
            notifications: None,
        };
        let client = connect(&self.pg).await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO object_buckets (name, created_ms) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
            )
            .await?;
        if client
            .execute(&stmt, &[&info.name, &info.created_ms])
            .await?
            == 0
        {
            return Err(ObjectError::BucketExists(info.name));
        }
        Ok(info)
    }

    async fn delete_bucket(&self, name: &str) -> Result<(), ObjectError> {
        let mut client = connect(&self.pg).await?;
        let tx = client.transaction().await?;
        // Bucket first: no object or upload can be added to it from here on.
        tx.query_opt(
            "SELECT 1 FROM object_buckets WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?
        .ok_or_else(|| ObjectError::NoSuchBucket(name.to_string()))?;
        let not_empty: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM objects WHERE bucket = $1)",
                &[&name],
            )
            .await?
            .get(0);
        if not_empty {
            return Err(ObjectError::BucketNotEmpty(name.to_string()));
        }
        // Then its uploads: the parts being written to them land first.
        let uploads: Vec<String> = tx
            .query(
                "SELECT id FROM object_uploads WHERE bucket = $1 FOR UPDATE",
                &[&name],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        uploads::end_uploads(&tx, &uploads, self.clock.now_ms()).await?;
        tx.execute("DELETE FROM object_buckets WHERE name = $1", &[&name])
            .await?;
        tx.commit().await?;
        self.sweep_soon();
        Ok(())
    }

    async fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, ObjectError> {
        let client = connect(&self.pg).await?;
        let stmt = client
            .prepare_cached(
                "SELECT name, created_ms, notifications FROM object_buckets WHERE name = $1",
            )
            .await?;
        let row = client.query_opt(&stmt, &[&name]).await?;
        Ok(row.map(|r| BucketInfo {
            name: r.get(0),
            created_ms: r.get(1),
            notifications: r.get(2),
        }))
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>, ObjectError> {
        let client = connect(&self.pg).await?;
        let rows = client
            .query(
                "SELECT name, created_ms, notifications FROM object_buckets ORDER BY name",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| BucketInfo {
                name: r.get(0),
                created_ms: r.get(1),
                notifications: r.get(2),
            })
            .collect())
    }

    async fn set_notifications(
        &self,
        bucket: &str,
        config: Option<String>,
    ) -> Result<(), ObjectError> {
        let client = connect(&self.pg).await?;
        let n = client
            .execute(
                "UPDATE object_buckets SET notifications = $2 WHERE name = $1",
                &[&bucket, &config],
            )
            .await?;
        if n == 0 {
            return Err(ObjectError::NoSuchBucket(bucket.to_string()));
        }
        Ok(())
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: PutBody,
        attrs: ObjectAttrs,
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError> {
        let written = blobs::write(&self.pg, &self.clock, body).await?;
        let meta = ObjectMeta {
            key: key.to_string(),
            size: written.size,
            etag: written.etag.clone(),
            modified_ms: self.clock.now_ms(),
            attrs,
        };
        self.commit_object(bucket, meta, &written, notifications)
            .await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError> {
        Ok(self.find(bucket, key, false).await?.0)
    }

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectRead, ObjectError> {
        let (meta, segments) = self.find(bucket, key, true).await?;
        let range = match range {
            None => Some(0..meta.size),
            Some(r) => r.resolve(meta.size),
        };
        let body = blobs::read(self.pg.clone(), segments, range.clone().unwrap_or(0..0));
        Ok(ObjectRead { meta, range, body })
    }

    async fn delete(
        &self,
        bucket: &str,
        key: &str,
        notifications: &[Notification],
    ) -> Result<Option<ObjectMeta>, ObjectError> {
        let client = connect(&self.pg).await?;
        // One statement, so one transaction: the notifications are stored
        // only if a row was removed.
        let stmt = client
            .prepare_cached(
                "WITH gone AS (
                    DELETE FROM objects WHERE bucket = $1 AND key = $2
                    RETURNING key, size, etag, modified_ms, attrs, blobs),
                 released AS (
                    UPDATE object_blobs
                    SET refs = refs - 1, expires_ms = CASE WHEN refs = 1 THEN $3 ELSE expires_ms END
                    WHERE id IN (SELECT unnest(blobs) FROM gone)),
                 noted AS (
                    INSERT INTO object_notifications (id, bucket, key, committed_ms, detail, due_ms)
                    SELECT n.id, $1, $2, $6, n.detail, $6
                    FROM gone, UNNEST($4::text[], $5::text[]) AS n(id, detail))
                 SELECT key, size, etag, modified_ms, attrs::text FROM gone",
            )
            .await?;
        let now = self.clock.now_ms();
        let expires = now + blobs::READ_GRACE_MS;
        let (ids, details) = outbox::columns(notifications);
        let params: [&(dyn ToSql + Sync); 6] = [&bucket, &key, &expires, &ids, &details, &now];
        match client.query_opt(&stmt, &params).await? {
            Some(row) => {
                self.sweep_soon();
                Ok(Some(object_meta(&row, 0)?))
            }
            None => match self.bucket(bucket).await? {
                Some(_) => Ok(None),
                None => Err(ObjectError::NoSuchBucket(bucket.to_string())),
            },
        }
    }

    async fn copy(
        &self,
        from: (&str, &str),
        to: (&str, &str),
        attrs: Option<ObjectAttrs>,
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError> {
        // The copy shares the source's blobs: no bytes are written.
        let (source, segments) = self.find(from.0, from.1, true).await?;
        let etag = if is_plain_md5(&source.etag) {
            source.etag
        } else {
            let whole = 0..source.size;
            hash(blobs::read(self.pg.clone(), segments.clone(), whole)).await?
        };
        let blobs: Vec<i64> = segments.iter().map(|s| s.0).collect();
        let meta = ObjectMeta {
            key: to.1.to_string(),
            size: source.size,
            etag,
            modified_ms: self.clock.now_ms(),
            attrs: attrs.unwrap_or(source.attrs),
        };
        retry_deadlocks(|| async {
            let mut client = connect(&self.pg).await?;
            let tx = client.transaction().await?;
            // The target's row first, as every writer of an object locks it.
            self.replace_object(&tx, to.0, &meta, &blobs).await?;
            blobs::share(&tx, &blobs).await?;
            self.note(&tx, to.0, &meta, notifications).await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        self.sweep_soon();
        Ok(meta)
    }

    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, ObjectError> {
        if self.bucket(bucket).await?.is_none() {
            return Err(ObjectError::NoSuchBucket(bucket.to_string()));
        }
        list::scan(&connect(&self.pg).await?, bucket, query).await
    }

    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
    ) -> Result<UploadInfo, ObjectError> {
        let info = UploadInfo {
            id: random_id(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            attrs,
            created_ms: self.clock.now_ms(),
        };
        let client = connect(&self.pg).await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO object_uploads (id, bucket, key, attrs, created_ms)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await?;
        let params: [&(dyn ToSql + Sync); 5] = [
            &info.id,
            &info.bucket,
            &info.key,
            &Json(&info.attrs),
            &info.created_ms,
        ];
        match client.execute(&stmt, &params).await {
            Ok(_) => Ok(info),
            Err(e) if is_orphan(&e) => Err(ObjectError::NoSuchBucket(info.bucket)),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload(&self, id: &str) -> Result<UploadInfo, ObjectError> {
        let client = connect(&self.pg).await?;
        let stmt = client
            .prepare_cached(
                "SELECT bucket, key, attrs::text, created_ms FROM object_uploads WHERE id = $1",
            )
            .await?;
        let row = client
            .query_opt(&stmt, &[&id])
            .await?
            .ok_or_else(|| ObjectError::NoSuchUpload(id.to_string()))?;
        upload_info(id, &row)
    }

    async fn put_part(
        &self,
        id: &str,
        number: u32,
        body: PutBody,
    ) -> Result<PartInfo, ObjectError> {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(ObjectError::InvalidPartNumber(number));
        }
        let written = blobs::write(&self.pg, &self.clock, body).await?;
        let part = PartInfo {
            number,
            size: written.size,
            etag: written.etag.clone(),
            modified_ms: self.clock.now_ms(),
        };
        let committed = retry_deadlocks(|| async {
            let mut client = connect(&self.pg).await?;
            let tx = client.transaction().await?;
            let blobs = blobs::claim(&tx, &written).await?;
            let replaced = uploads::replace_part(&tx, id, &part, &blobs).await?;
            blobs::release(&tx, &replaced, self.clock.now_ms()).await?;
            tx.commit().await?;
            Ok(())
        })
        .await;
        self.settle(&written, committed).await?;
        self.sweep_soon();
        Ok(part)
    }

    async fn list_parts(&self, id: &str) -> Result<Vec<PartInfo>, ObjectError> {
        let client = connect(&self.pg).await?;
        let stmt = client
            .prepare_cached(
                "SELECT p.number, p.size, p.etag, p.modified_ms
                 FROM object_uploads u LEFT JOIN object_parts p ON p.upload = u.id
                 WHERE u.id = $1 ORDER BY p.number",
            )
            .await?;
        let rows = client.query(&stmt, &[&id]).await?;
        if rows.is_empty() {
            return Err(ObjectError::NoSuchUpload(id.to_string()));
        }
        let mut parts = Vec::with_capacity(rows.len());
        for r in rows {
            let Some(number) = r.get::<_, Option<i32>>(0) else {
                continue;
            };
            parts.push(PartInfo {
                number: number as u32,
                size: r.try_get::<_, i64>(1)? as u64,
                etag: r.try_get(2)?,
                modified_ms: r.try_get(3)?,
            });
        }
        Ok(parts)
    }

    async fn complete_upload(
        &self,
        id: &str,
        parts: &[(u32, String)],
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError> {
        let meta = retry_deadlocks(|| self.complete(id, parts, notifications)).await?;
        self.sweep_soon();
        Ok(meta)
    }

    async fn abort_upload(&self, id: &str) -> Result<(), ObjectError> {
        let mut client = connect(&self.pg).await?;
        let tx = client.transaction().await?;
        tx.query_opt(
            "SELECT 1 FROM object_uploads WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or_else(|| ObjectError::NoSuchUpload(id.to_string()))?;
        uploads::end_uploads(&tx, &[id.to_string()], self.clock.now_ms()).await?;
        tx.commit().await?;
        self.sweep_soon();
        Ok(())
    }

    async fn claim_notifications(
        &self,
        max: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<PendingNotification>, ObjectError> {
        let now = self.clock.now_ms();
        let until = now.saturating_add(lease.as_millis().try_into().unwrap_or(i64::MAX));
        outbox::claim(&connect(&self.pg).await?, now, until, max).await
    }

    async fn remove_notifications(&self, ids: &[String]) -> Result<(), ObjectError> {
        if ids.is_empty() {
            return Ok(());
        }
        outbox::remove(&connect(&self.pg).await?, ids).await
    }
}

#[cfg(test)]
mod tests;
