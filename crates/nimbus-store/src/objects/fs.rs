//! The embedded object store: metadata in `objects.db` (its own SQLite file,
//! WAL, `synchronous=FULL`, so an acknowledged write survives a power cut),
//! bytes in immutable blob files `objects/blobs/<xx>/<random id>`.
//!
//! A write stages a temp file in `objects/tmp/`, fsyncs it, renames it to a
//! new blob name, fsyncs the directory and then commits the row that points
//! the key at it. Blobs no row points to (a crash between rename and commit,
//! or before an old blob was unlinked) and leftover temp files are removed
//! when the store opens.
//!
//! A write's bucket notifications go into the `notifications` table in the
//! transaction of the row they are about (the outbox of `objects.rs`); one
//! process owns the file, so a claim is an `UPDATE` of the due time under
//! the connection's lock, the same contract as the cluster's row locks.
//!
//! Reads hand out the opened blob file as a stream (ranged by a seek and a
//! `take`), so a GET is the same `ReaderStream` over a file it always was.
//! SQLite's errors stay inside this file: they leave it as
//! [`ObjectError::Backend`].

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use md5::{Digest, Md5};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::writer::{Staged, stage};
use super::{
    BucketInfo, ByteRange, CreatedObject, ListEntry, ListPage, ListQuery, MAX_PART_NUMBER,
    MIN_PART_SIZE, Notification, ObjectAttrs, ObjectError, ObjectMeta, ObjectRead, ObjectStore,
    PartInfo, PendingNotification, PutBody, UploadInfo, group_key, multipart_etag,
};

/// `objects.db`'s schema, one step per version (`user_version`). Step 1 is
/// the schema from before versioning, still `IF NOT EXISTS`, so a data dir
/// from then (version 0, tables present) opens unchanged.
const MIGRATIONS: &[&str] = &[
    // v1: buckets, objects, multipart uploads and their parts.
    "
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    notifications TEXT
);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    attrs TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    attrs TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    upload TEXT NOT NULL,
    number INTEGER NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (upload, number)
) WITHOUT ROWID;
",
    // v2: the notifications outbox. An entry is claimable once `due_ms` has
    // passed: at once when written, at the end of each claim's lease after.
    "
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER,
    etag TEXT,
    committed_ms INTEGER NOT NULL,
    detail TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    claims INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX notifications_due ON notifications (due_ms);
",
];

/// How this backend fails inside: an object-store answer, or SQLite's own
/// error, which becomes [`ObjectError::Backend`] where it leaves the file.
#[derive(Debug)]
enum FsError {
    Object(ObjectError),
    Db(rusqlite::Error),
}

impl From<ObjectError> for FsError {
    fn from(e: ObjectError) -> Self {
        FsError::Object(e)
    }
}

impl From<rusqlite::Error> for FsError {
    fn from(e: rusqlite::Error) -> Self {
        FsError::Db(e)
    }
}

impl From<FsError> for ObjectError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::Object(e) => e,
            FsError::Db(e) => ObjectError::backend(e),
        }
    }
}

type DbResult<T> = Result<T, FsError>;

/// Rows fetched per step of a listing scan.
const LIST_BATCH: usize = 256;

pub struct FsObjectStore {
    db: Arc<Mutex<Connection>>,
    root: PathBuf,
    min_part_size: u64,
    /// Stamps creation and modification times.
    clock: nimbus_core::Clock,
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    hex::encode(b)
}

fn to_json(attrs: &ObjectAttrs) -> String {
    serde_json::to_string(attrs).expect("attributes serialize")
}

fn from_json(s: &str) -> Result<ObjectAttrs, ObjectError> {
    serde_json::from_str(s).map_err(|e| ObjectError::Corrupt(e.to_string()))
}

fn sync_dir(dir: &Path) -> Result<(), ObjectError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ObjectError::io(dir, e))
}

/// Opens `objects.db`, bringing its schema up to date.
fn open_db(path: &Path) -> DbResult<Connection> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    crate::sqlite::migrate(&mut conn, "object database", MIGRATIONS)
        .map_err(ObjectError::backend)?;
    Ok(conn)
}

impl FsObjectStore {
    /// Opens (creating) `objects.db` at `db_path` and the data under `root`,
    /// removing blobs no row refers to.
    pub fn open(db_path: &Path, root: &Path) -> Result<Self, ObjectError> {
        let conn = open_db(db_path).map_err(ObjectError::from)?;
        for dir in [root.to_path_buf(), root.join("tmp"), root.join("blobs")] {
            std::fs::create_dir_all(&dir).map_err(|e| ObjectError::io(&dir, e))?;
        }
        let store = Self {
            db: Arc::new(Mutex::new(conn)),
            root: root.to_path_buf(),
            min_part_size: MIN_PART_SIZE,
            clock: nimbus_core::Clock::system(),
        };
        store.collect_garbage()?;
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

    fn blob_path(&self, blob: &str) -> PathBuf {
        self.root.join("blobs").join(&blob[..2]).join(blob)
    }

    fn collect_garbage(&self) -> DbResult<()> {
        let tmp = self.root.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(|e| ObjectError::io(&tmp, e))? {
            let entry = entry.map_err(|e| ObjectError::io(&tmp, e))?;
            let _ = std::fs::remove_file(entry.path());
        }
        let live: HashSet<String> = {
            let conn = self.lock()?;
            let mut stmt =
                conn.prepare("SELECT blob FROM objects UNION ALL SELECT blob FROM parts")?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?
        };
        let blobs = self.root.join("blobs");
        for fan in std::fs::read_dir(&blobs).map_err(|e| ObjectError::io(&blobs, e))? {
            let fan = fan.map_err(|e| ObjectError::io(&blobs, e))?.path();
            let Ok(entries) = std::fs::read_dir(&fan) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !live.contains(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, ObjectError> {
        self.db
            .lock()
            .map_err(|_| ObjectError::Task("object database lock poisoned".into()))
    }

    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> DbResult<T> + Send + 'static,
    ) -> Result<T, ObjectError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db
                .lock()
                .map_err(|_| ObjectError::Task("object database lock poisoned".into()))?;
            f(&mut conn).map_err(ObjectError::from)
        })
        .await
        .map_err(|e| ObjectError::Task(e.to_string()))?
    }

    /// Streams a body into a new temp file.
    async fn stage(&self, body: PutBody) -> Result<Staged, ObjectError> {
        stage(self.root.join("tmp").join(random_id()), body).await
    }

    /// The object's description and its blob, opened: later overwrites don't
    /// affect the file.
    async fn open_blob(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectMeta, std::fs::File), ObjectError> {
        // A concurrent overwrite may unlink the blob between the lookup and
        // the open: look again (the new blob is there by then).
        let mut attempts = 0;
        loop {
            let (b, k) = (bucket.to_string(), key.to_string());
            let (meta, blob) = self.with_db(move |conn| find_object(conn, &b, &k)).await?;
            let path = self.blob_path(&blob);
            match std::fs::File::open(&path) {
                Ok(f) => return Ok((meta, f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 5 => {
                    attempts += 1;
                }
                Err(e) => return Err(ObjectError::io(&path, e)),
            }
        }
    }

    /// Moves a finished temp file to a new blob name, durably. Returns the blob id.
    async fn place_blob(&self, tmp: PathBuf) -> Result<String, ObjectError> {
        let blob = random_id();
        let dest = self.blob_path(&blob);
        let blobs = self.root.join("blobs");
        tokio::task::spawn_blocking(move || {
            let fan = dest.parent().expect("blob paths have a parent");
            if !fan.exists() {
                std::fs::create_dir_all(fan).map_err(|e| ObjectError::io(fan, e))?;
                sync_dir(&blobs)?;
            }
            std::fs::rename(&tmp, &dest).map_err(|e| ObjectError::io(&dest, e))?;
            sync_dir(fan)
        })
        .await
        .map_err(|e| ObjectError::Task(e.to_string()))??;
        Ok(blob)
    }

    fn unlink_blobs(&self, blobs: Vec<String>) {
        for b in blobs {
            let _ = std::fs::remove_file(self.blob_path(&b));
        }
    }

    /// Points `bucket/key` at a placed blob and stores the write's
    /// notifications; with `upload`, also ends that multipart upload, all in
    /// one transaction.
    async fn commit(
        &self,
        bucket: &str,
        key: &str,
        blob: String,
        meta: ObjectMeta,
        upload: Option<String>,
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError> {
        let (b, k) = (bucket.to_string(), key.to_string());
        let new_blob = blob.clone();
        let m = meta.clone();
        let notifications = notifications.to_vec();
        let result = self
            .with_db(move |conn| {
                let tx = conn.transaction()?;
                bucket_must_exist(&tx, &b)?;
                let mut stale: Vec<String> = tx
                    .query_row(
                        "SELECT blob FROM objects WHERE bucket = ?1 AND key = ?2",
                        params![b, k],
                        |r| r.get(0),
                    )
                    .optional()?
                    .into_iter()
                    .collect();
                if let Some(id) = &upload {
                    stale.extend(end_upload(&tx, id)?);
                }
                tx.execute(
                    "INSERT OR REPLACE INTO objects (bucket, key, blob, size, etag, modified_ms, attrs)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        b,
                        k,
                        new_blob,
                        m.size as i64,
                        m.etag,
                        m.modified_ms,
                        to_json(&m.attrs)
                    ],
                )?;
                let created = CreatedObject {
                    size: m.size,
                    etag: m.etag.clone(),
                };
                let written = Written {
                    bucket: &b,
                    key: &k,
                    object: Some(&created),
                    committed_ms: m.modified_ms,
                };
                store_notifications(&tx, &written, &notifications)?;
                tx.commit()?;
                Ok(stale)
            })
            .await;
        match result {
            Ok(stale) => {
                self.unlink_blobs(stale);
                Ok(meta)
            }
            Err(e) => {
                self.unlink_blobs(vec![blob]);
                Err(e)
            }
        }
    }

    /// Writes `sources` one after the other into a new temp file; returns
    /// (path, hex md5, size). Runs on the blocking pool.
    async fn concat(
        &self,
        sources: Vec<std::fs::File>,
    ) -> Result<(PathBuf, String, u64), ObjectError> {
        let tmp = self.root.join("tmp").join(random_id());
        tokio::task::spawn_blocking(move || {
            let guard = TempGuard(tmp.clone());
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| ObjectError::io(&tmp, e))?;
            let mut md5 = Md5::new();
            let mut size = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            for mut f in sources {
                loop {
                    let n = f.read(&mut buf).map_err(|e| ObjectError::io(&tmp, e))?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n])
                        .map_err(|e| ObjectError::io(&tmp, e))?;
                    md5.update(&buf[..n]);
                    size += n as u64;
                }
            }
            out.sync_all().map_err(|e| ObjectError::io(&tmp, e))?;
            std::mem::forget(guard);
            Ok((tmp, hex::encode(md5.finalize()), size))
        })
        .await
        .map_err(|e| ObjectError::Task(e.to_string()))?
    }
}

/// Removes a temp file unless forgotten.
struct TempGuard(PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn bucket_must_exist(conn: &Connection, bucket: &str) -> DbResult<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM buckets WHERE name = ?1)",
        [bucket],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(ObjectError::NoSuchBucket(bucket.to_string()).into())
    }
}

/// Deletes an upload and its parts; returns the part blobs to unlink.
fn end_upload(conn: &Connection, id: &str) -> DbResult<Vec<String>> {
    let blobs: Vec<String> = conn
        .prepare("SELECT blob FROM parts WHERE upload = ?1")?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    conn.execute("DELETE FROM parts WHERE upload = ?1", [id])?;
    if conn.execute("DELETE FROM uploads WHERE id = ?1", [id])? == 0 {
        return Err(ObjectError::NoSuchUpload(id.to_string()).into());
    }
    Ok(blobs)
}

/// A committed write, as its notifications record it.
struct Written<'w> {
    bucket: &'w str,
    key: &'w str,
    object: Option<&'w CreatedObject>,
    committed_ms: i64,
}

/// Stores a write's notifications in its transaction, claimable at once.
fn store_notifications(
    tx: &Connection,
    written: &Written<'_>,
    notifications: &[Notification],
) -> DbResult<()> {
    if notifications.is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO notifications (id, bucket, key, size, etag, committed_ms, detail, due_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)",
    )?;
    for n in notifications {
        stmt.execute(params![
            n.id,
            written.bucket,
            written.key,
            written.object.map(|o| o.size as i64),
            written.object.map(|o| o.etag.as_str()),
            written.committed_ms,
            n.detail,
        ])?;
    }
    Ok(())
}

fn pending_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingNotification> {
    let size: Option<i64> = r.get(3)?;
    let etag: Option<String> = r.get(4)?;
    Ok(PendingNotification {
        id: r.get(0)?,
        bucket: r.get(1)?,
        key: r.get(2)?,
        object: size.zip(etag).map(|(size, etag)| CreatedObject {
            size: size as u64,
            etag,
        }),
        committed_ms: r.get(5)?,
        detail: r.get(6)?,
        claims: r.get(7)?,
    })
}

fn meta_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ObjectMeta, String, String)> {
    Ok((
        ObjectMeta {
            key: r.get(0)?,
            size: r.get::<_, i64>(1)? as u64,
            etag: r.get(2)?,
            modified_ms: r.get(3)?,
            attrs: ObjectAttrs::default(),
        },
        r.get(4)?,
        r.get(5)?,
    ))
}

const META_COLUMNS: &str = "key, size, etag, modified_ms, attrs, blob";

fn find_object(conn: &Connection, bucket: &str, key: &str) -> DbResult<(ObjectMeta, String)> {
    let row = conn
        .query_row(
            &format!("SELECT {META_COLUMNS} FROM objects WHERE bucket = ?1 AND key = ?2"),
            params![bucket, key],
            meta_row,
        )
        .optional()?;
    match row {
        Some((mut meta, attrs, blob)) => {
            meta.attrs = from_json(&attrs)?;
            Ok((meta, blob))
        }
        None => {
            bucket_must_exist(conn, bucket)?;
            Err(ObjectError::NoSuchKey(key.to_string()).into())
        }
    }
}

fn find_upload(conn: &Connection, id: &str) -> DbResult<UploadInfo> {
    let row = conn
        .query_row(
            "SELECT bucket, key, attrs, created_ms FROM uploads WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| ObjectError::NoSuchUpload(id.to_string()))?;
    Ok(UploadInfo {
        id: id.to_string(),
        bucket: row.0,
        key: row.1,
        attrs: from_json(&row.2)?,
        created_ms: row.3,
    })
}

fn list_parts(conn: &Connection, id: &str) -> DbResult<Vec<(PartInfo, String)>> {
    let mut stmt = conn.prepare(
        "SELECT number, size, etag, modified_ms, blob FROM parts WHERE upload = ?1 ORDER BY number",
    )?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                PartInfo {
                    number: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    etag: r.get(2)?,
                    modified_ms: r.get(3)?,
                },
                r.get(4)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn scan(conn: &Connection, bucket: &str, q: &ListQuery) -> DbResult<ListPage> {
    bucket_must_exist(conn, bucket)?;
    let mut page = ListPage::default();
    if q.max_keys == 0 {
        return Ok(page);
    }
    let delimiter = q.delimiter.as_deref();
    let mut cursor: Option<String> = q.after.clone();
    let mut last_prefix: Option<String> = None;
    let mut stmt = conn.prepare(&format!(
        "SELECT {META_COLUMNS} FROM objects
         WHERE bucket = ?1 AND key >= ?2 AND (?3 IS NULL OR key > ?3)
         ORDER BY key LIMIT {LIST_BATCH}"
    ))?;
    loop {
        let rows: Vec<(ObjectMeta, String, String)> = stmt
            .query_map(params![bucket, q.prefix, cursor], meta_row)?
            .collect::<Result<_, _>>()?;
        if rows.is_empty() {
            return Ok(page);
        }
        let full_batch = rows.len() == LIST_BATCH;
        let mut jump: Option<String> = None;
        for (mut meta, attrs, _) in rows {
            if !meta.key.starts_with(&q.prefix) {
                return Ok(page);
            }
            cursor = Some(meta.key.clone());
            let entry = match group_key(&meta.key, &q.prefix, delimiter) {
                Some(cp) => {
                    let seen = last_prefix.as_deref() == Some(cp)
                        || q.after.as_deref().is_some_and(|a| cp <= a);
                    if seen {
                        continue;
                    }
                    ListEntry::CommonPrefix(cp.to_string())
                }
                None => {
                    meta.attrs = from_json(&attrs)?;
                    ListEntry::Object(meta)
                }
            };
            if page.entries.len() == q.max_keys {
                page.truncated = true;
                return Ok(page);
            }
            if let ListEntry::CommonPrefix(cp) = &entry {
                last_prefix = Some(cp.clone());
                // Skip the rest of this prefix in one step.
                jump = Some(format!("{cp}\u{10FFFF}"));
            }
            page.entries.push(entry);
            if jump.is_some() {
                break;
            }
        }
        if let Some(j) = jump {
            cursor = Some(j);
        } else if !full_batch {
            return Ok(page);
        }
    }
}

#[async_trait]
impl ObjectStore for FsObjectStore {
    async fn create_bucket(&self, name: &str) -> Result<BucketInfo, ObjectError> {
        let info = BucketInfo {
            name: name.to_string(),
            created_ms: self.clock.now_ms(),
            notifications: None,
        };
        let i = info.clone();
        self.with_db(move |conn| {
            let n = conn.execute(
                "INSERT OR IGNORE INTO buckets (name, created_ms) VALUES (?1, ?2)",
                params![i.name, i.created_ms],
            )?;
            if n == 0 {
                return Err(ObjectError::BucketExists(i.name).into());
            }
            Ok(())
        })
        .await?;
        Ok(info)
    }

    async fn delete_bucket(&self, name: &str) -> Result<(), ObjectError> {
        let name = name.to_string();
        let stale = self
            .with_db(move |conn| {
                let tx = conn.transaction()?;
                bucket_must_exist(&tx, &name)?;
                let has_objects: bool = tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM objects WHERE bucket = ?1)",
                    [&name],
                    |r| r.get(0),
                )?;
                if has_objects {
                    return Err(ObjectError::BucketNotEmpty(name).into());
                }
                let uploads: Vec<String> = tx
                    .prepare("SELECT id FROM uploads WHERE bucket = ?1")?
                    .query_map([&name], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut stale = Vec::new();
                for id in uploads {
                    stale.extend(end_upload(&tx, &id)?);
                }
                tx.execute("DELETE FROM buckets WHERE name = ?1", [&name])?;
                tx.commit()?;
                Ok(stale)
            })
            .await?;
        self.unlink_blobs(stale);
        Ok(())
    }

    async fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, ObjectError> {
        let name = name.to_string();
        self.with_db(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT name, created_ms, notifications FROM buckets WHERE name = ?1",
                    [name],
                    |r| {
                        Ok(BucketInfo {
                            name: r.get(0)?,
                            created_ms: r.get(1)?,
                            notifications: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>, ObjectError> {
        self.with_db(|conn| {
            let mut stmt =
                conn.prepare("SELECT name, created_ms, notifications FROM buckets ORDER BY name")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(BucketInfo {
                        name: r.get(0)?,
                        created_ms: r.get(1)?,
                        notifications: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn set_notifications(
        &self,
        bucket: &str,
        config: Option<String>,
    ) -> Result<(), ObjectError> {
        let bucket = bucket.to_string();
        self.with_db(move |conn| {
            let n = conn.execute(
                "UPDATE buckets SET notifications = ?2 WHERE name = ?1",
                params![bucket, config],
            )?;
            if n == 0 {
                return Err(ObjectError::NoSuchBucket(bucket).into());
            }
            Ok(())
        })
        .await
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: PutBody,
        attrs: ObjectAttrs,
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError> {
        let staged = self.stage(body).await?;
        let (etag, size) = (staged.etag.clone(), staged.size);
        let blob = self.place_blob(staged.path().to_path_buf()).await?;
        staged.release();
        let meta = ObjectMeta {
            key: key.to_string(),
            size,
            etag,
            modified_ms: self.clock.now_ms(),
            attrs,
        };
        self.commit(bucket, key, blob, meta, None, notifications)
            .await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError> {
        let (b, k) = (bucket.to_string(), key.to_string());
        self.with_db(move |conn| Ok(find_object(conn, &b, &k)?.0))
            .await
    }

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectRead, ObjectError> {
        let (meta, file) = self.open_blob(bucket, key).await?;
        let range = match range {
            None => Some(0..meta.size),
            Some(r) => r.resolve(meta.size),
        };
        let (start, len) = range
            .as_ref()
            .map_or((0, 0), |r| (r.start, r.end - r.start));
        let mut file = tokio::fs::File::from_std(file);
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| ObjectError::io(self.root.join("blobs"), e))?;
        }
        Ok(ObjectRead {
            meta,
            range,
            body: Box::pin(tokio_util::io::ReaderStream::new(file.take(len))),
        })
    }

    async fn delete(
        &self,
        bucket: &str,
        key: &str,
        notifications: &[Notification],
    ) -> Result<Option<ObjectMeta>, ObjectError> {
        let (b, k) = (bucket.to_string(), key.to_string());
        let notifications = notifications.to_vec();
        let now = self.clock.now_ms();
        let removed = self
            .with_db(move |conn| {
                let tx = conn.transaction()?;
                let found = match find_object(&tx, &b, &k) {
                    Ok(found) => Some(found),
                    Err(FsError::Object(ObjectError::NoSuchKey(_))) => None,
                    Err(e) => return Err(e),
                };
                if found.is_some() {
                    tx.execute(
                        "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
                        params![b, k],
                    )?;
                    let written = Written {
                        bucket: &b,
                        key: &k,
                        object: None,
                        committed_ms: now,
                    };
                    store_notifications(&tx, &written, &notifications)?;
                    tx.commit()?;
                }
                Ok(found)
            })
            .await?;
        Ok(removed.map(|(meta, blob)| {
            self.unlink_blobs(vec![blob]);
            meta
        }))
    }

    async fn copy(
        &self,
        from: (&str, &str),
        to: (&str, &str),
        attrs: Option<ObjectAttrs>,
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError> {
        // The open handle keeps the source's bytes even if it is replaced meanwhile.
        let (src_meta, src) = self.open_blob(from.0, from.1).await?;
        let (tmp, etag, size) = self.concat(vec![src]).await?;
        let blob = self.place_blob(tmp).await?;
        let meta = ObjectMeta {
            key: to.1.to_string(),
            size,
            etag,
            modified_ms: self.clock.now_ms(),
            attrs: attrs.unwrap_or(src_meta.attrs),
        };
        self.commit(to.0, to.1, blob, meta, None, notifications)
            .await
    }

    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, ObjectError> {
        let (b, q) = (bucket.to_string(), query.clone());
        self.with_db(move |conn| scan(conn, &b, &q)).await
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
        let i = info.clone();
        self.with_db(move |conn| {
            bucket_must_exist(conn, &i.bucket)?;
            conn.execute(
                "INSERT INTO uploads (id, bucket, key, attrs, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![i.id, i.bucket, i.key, to_json(&i.attrs), i.created_ms],
            )?;
            Ok(())
        })
        .await?;
        Ok(info)
    }

    async fn upload(&self, id: &str) -> Result<UploadInfo, ObjectError> {
        let id = id.to_string();
        self.with_db(move |conn| find_upload(conn, &id)).await
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
        let staged = self.stage(body).await?;
        let (etag, size) = (staged.etag.clone(), staged.size);
        let blob = self.place_blob(staged.path().to_path_buf()).await?;
        staged.release();
        let part = PartInfo {
            number,
            size,
            etag,
            modified_ms: self.clock.now_ms(),
        };
        let (upload, p, new_blob) = (id.to_string(), part.clone(), blob.clone());
        let result = self
            .with_db(move |conn| {
                let tx = conn.transaction()?;
                find_upload(&tx, &upload)?;
                let old: Option<String> = tx
                    .query_row(
                        "SELECT blob FROM parts WHERE upload = ?1 AND number = ?2",
                        params![upload, p.number],
                        |r| r.get(0),
                    )
                    .optional()?;
                tx.execute(
                    "INSERT OR REPLACE INTO parts (upload, number, blob, size, etag, modified_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        upload,
                        p.number,
                        new_blob,
                        p.size as i64,
                        p.etag,
                        p.modified_ms
                    ],
                )?;
                tx.commit()?;
                Ok(old)
            })
            .await;
        match result {
            Ok(old) => {
                self.unlink_blobs(old.into_iter().collect());
                Ok(part)
            }
            Err(e) => {
                self.unlink_blobs(vec![blob]);
                Err(e)
            }
        }
    }

    async fn list_parts(&self, id: &str) -> Result<Vec<PartInfo>, ObjectError> {
        let id = id.to_string();
        self.with_db(move |conn| {
            find_upload(conn, &id)?;
            Ok(list_parts(conn, &id)?.into_iter().map(|(p, _)| p).collect())
        })
        .await
    }

    async fn complete_upload(
        &self,
        id: &str,
        parts: &[(u32, String)],
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError> {
        let upload_id = id.to_string();
        let (upload, stored) = self
            .with_db(move |conn| {
                let upload = find_upload(conn, &upload_id)?;
                Ok((upload, list_parts(conn, &upload_id)?))
            })
            .await?;
        let mut previous = 0;
        let mut chosen = Vec::with_capacity(parts.len());
        for (i, (number, etag)) in parts.iter().enumerate() {
            if *number <= previous {
                return Err(ObjectError::InvalidPartOrder);
            }
            previous = *number;
            let etag = etag.trim_matches('"');
            let (part, blob) = stored
                .iter()
                .find(|(p, _)| p.number == *number && p.etag == etag)
                .ok_or(ObjectError::InvalidPart(*number))?;
            if i + 1 < parts.len() && part.size < self.min_part_size {
                return Err(ObjectError::EntityTooSmall(*number));
            }
            let path = self.blob_path(blob);
            let file = std::fs::File::open(&path).map_err(|e| ObjectError::io(&path, e))?;
            chosen.push((part.etag.clone(), file));
        }
        if chosen.is_empty() {
            return Err(ObjectError::InvalidPart(0));
        }
        let etags: Vec<&str> = chosen.iter().map(|(e, _)| e.as_str()).collect();
        let etag = multipart_etag(&etags);
        let (tmp, _, size) = self
            .concat(chosen.into_iter().map(|(_, f)| f).collect())
            .await?;
        let blob = self.place_blob(tmp).await?;
        let meta = ObjectMeta {
            key: upload.key.clone(),
            size,
            etag,
            modified_ms: self.clock.now_ms(),
            attrs: upload.attrs,
        };
        self.commit(
            &upload.bucket,
            &upload.key,
            blob,
            meta,
            Some(upload.id),
            notifications,
        )
        .await
    }

    async fn abort_upload(&self, id: &str) -> Result<(), ObjectError> {
        let id = id.to_string();
        let stale = self
            .with_db(move |conn| {
                let tx = conn.transaction()?;
                let stale = end_upload(&tx, &id)?;
                tx.commit()?;
                Ok(stale)
            })
            .await?;
        self.unlink_blobs(stale);
        Ok(())
    }

    async fn claim_notifications(
        &self,
        max: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<PendingNotification>, ObjectError> {
        let now = self.clock.now_ms();
        let until = now.saturating_add(lease.as_millis().try_into().unwrap_or(i64::MAX));
        let mut claimed = self
            .with_db(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "UPDATE notifications SET due_ms = ?2, claims = claims + 1
                     WHERE id IN (SELECT id FROM notifications WHERE due_ms <= ?1
                                  ORDER BY due_ms, id LIMIT ?3)
                     RETURNING id, bucket, key, size, etag, committed_ms, detail, claims",
                )?;
                let rows = stmt
                    .query_map(params![now, until, max as i64], pending_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        claimed.sort_by(|a, b| (a.committed_ms, &a.id).cmp(&(b.committed_ms, &b.id)));
        Ok(claimed)
    }

    async fn remove_notifications(&self, ids: &[String]) -> Result<(), ObjectError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.with_db(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached("DELETE FROM notifications WHERE id = ?1")?;
                for id in &ids {
                    stmt.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema as `objects.db` had it before versioning (no
    /// `user_version`): a data dir from then opens unchanged.
    #[tokio::test]
    async fn opens_a_data_dir_from_before_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let (db, root) = (dir.path().join("objects.db"), dir.path().join("objects"));
        let blob = "ab".repeat(16);
        {
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute("INSERT INTO buckets (name, created_ms) VALUES ('b', 1)", [])
                .unwrap();
            conn.execute(
                "INSERT INTO objects (bucket, key, blob, size, etag, modified_ms, attrs)
                 VALUES ('b', 'k', ?1, 5, 'e', 2, '{}')",
                [&blob],
            )
            .unwrap();
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(version, 0);
        }
        let fan = root.join("blobs").join(&blob[..2]);
        std::fs::create_dir_all(&fan).unwrap();
        std::fs::write(fan.join(&blob), b"hello").unwrap();

        let store = FsObjectStore::open(&db, &root).unwrap();
        let read = store.open("b", "k", None).await.unwrap();
        assert_eq!(read.meta.etag, "e");
        let body = crate::body::collect(read.body, 100).await.unwrap();
        assert_eq!(body, b"hello", "the blob was kept, not collected");
        drop(store);
        let conn = Connection::open(&db).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);

        // A schema newer than this build is refused, not guessed at.
        conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1)
            .unwrap();
        drop(conn);
        let newer = FsObjectStore::open(&db, &root).err().expect("refused");
        assert!(matches!(newer, ObjectError::Backend(_)), "{newer}");
        assert!(newer.to_string().contains("newer"), "{newer}");
    }
}
