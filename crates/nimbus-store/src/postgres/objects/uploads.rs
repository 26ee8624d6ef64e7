//! Multipart uploads: parts land as they come, and a completion checks the
//! listed parts as S3 does, then hands their blobs to the object.

use deadpool_postgres::GenericClient;

use tokio_postgres::types::ToSql;

use super::{blobs, upload_info, upsert};
use crate::objects::{ObjectError, PartInfo, UploadInfo};

/// Replaces a part, returning the blobs of the version replaced.
const UPDATE_PART: &str =
    "WITH old AS (SELECT blobs FROM object_parts WHERE upload = $1 AND number = $2 FOR UPDATE)
    UPDATE object_parts p SET blobs = $3, size = $4, etag = $5, modified_ms = $6
    FROM old WHERE p.upload = $1 AND p.number = $2
    RETURNING old.blobs";

const INSERT_PART: &str =
    "INSERT INTO object_parts (upload, number, blobs, size, etag, modified_ms)
    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (upload, number) DO NOTHING";

/// Stores `part` of upload `id` with `blobs` (already referenced for it),
/// in place of any part of that number; returns the replaced part's blobs.
/// Holds the upload shared: parts land side by side, never during its
/// completion or abort.
pub(super) async fn replace_part(
    tx: &impl GenericClient,
    id: &str,
    part: &PartInfo,
    blobs: &[i64],
) -> Result<Vec<i64>, ObjectError> {
    tx.query_opt(
        "SELECT 1 FROM object_uploads WHERE id = $1 FOR SHARE",
        &[&id],
    )
    .await?
    .ok_or_else(|| ObjectError::NoSuchUpload(id.to_string()))?;
    let params: [&(dyn ToSql + Sync); 6] = [
        &id,
        &(part.number as i32),
        &blobs,
        &(part.size as i64),
        &part.etag,
        &part.modified_ms,
    ];
    Ok(upsert(tx, UPDATE_PART, INSERT_PART, &params).await?)
}

/// Locks an upload for its completion: its bucket first (shared: the
/// object may be created in it), then the upload, the lock order of
/// `delete_bucket`.
pub(super) async fn lock_for_completion(
    tx: &impl GenericClient,
    id: &str,
) -> Result<UploadInfo, ObjectError> {
    let no_such_upload = || ObjectError::NoSuchUpload(id.to_string());
    tx.query_opt(
        "SELECT 1 FROM object_buckets
         WHERE name = (SELECT bucket FROM object_uploads WHERE id = $1) FOR KEY SHARE",
        &[&id],
    )
    .await?
    .ok_or_else(no_such_upload)?;
    let upload = tx
        .query_opt(
            "SELECT bucket, key, attrs::text, created_ms FROM object_uploads
             WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or_else(no_such_upload)?;
    upload_info(id, &upload)
}

/// The stored parts of an upload with their blobs, by number.
pub(super) async fn stored_parts(
    tx: &impl GenericClient,
    id: &str,
) -> Result<Vec<(PartInfo, Vec<i64>)>, ObjectError> {
    let stmt = tx
        .prepare_cached(
            "SELECT number, size, etag, modified_ms, blobs FROM object_parts
             WHERE upload = $1 ORDER BY number",
        )
        .await?;
    tx.query(&stmt, &[&id])
        .await?
        .iter()
        .map(|r| {
            let part = PartInfo {
                number: r.try_get::<_, i32>(0)? as u32,
                size: r.try_get::<_, i64>(1)? as u64,
                etag: r.try_get(2)?,
                modified_ms: r.try_get(3)?,
            };
            Ok((part, r.try_get(4)?))
        })
        .collect()
}

/// Releases the blobs of the parts of `uploads` and deletes the uploads;
/// the caller holds their rows locked.
pub(super) async fn end_uploads(
    tx: &impl GenericClient,
    uploads: &[String],
    now_ms: i64,
) -> Result<(), ObjectError> {
    let stmt = tx
        .prepare_cached(
            "WITH parts AS (DELETE FROM object_parts WHERE upload = ANY($1) RETURNING blobs),
                  uploads AS (DELETE FROM object_uploads WHERE id = ANY($1))
             UPDATE object_blobs
             SET refs = refs - 1, expires_ms = CASE WHEN refs = 1 THEN $2 ELSE expires_ms END
             WHERE id IN (SELECT unnest(blobs) FROM parts)",
        )
        .await?;
    tx.execute(&stmt, &[&uploads, &(now_ms + blobs::READ_GRACE_MS)])
        .await?;
    Ok(())
}

/// The parts a completion lists, checked against the stored ones as S3
/// checks them: ascending, each stored with that ETag, all but the last at
/// least `min_part_size`. Returns the chosen parts.
pub(super) fn choose_parts<'p>(
    listed: &[(u32, String)],
    stored: &'p [(PartInfo, Vec<i64>)],
    min_part_size: u64,
) -> Result<Vec<&'p (PartInfo, Vec<i64>)>, ObjectError> {
    let mut previous = 0;
    let mut chosen = Vec::with_capacity(listed.len());
    for (i, (number, etag)) in listed.iter().enumerate() {
        if *number <= previous {
            return Err(ObjectError::InvalidPartOrder);
        }
        previous = *number;
        let etag = etag.trim_matches('"');
        let part = stored
            .iter()
            .find(|(p, _)| p.number == *number && p.etag == etag)
            .ok_or(ObjectError::InvalidPart(*number))?;
        if i + 1 < listed.len() && part.0.size < min_part_size {
            return Err(ObjectError::EntityTooSmall(*number));
        }
        chosen.push(part);
    }
    if chosen.is_empty() {
        return Err(ObjectError::InvalidPart(0));
    }
    Ok(chosen)
}
