//! The notifications outbox: a write's notifications are inserted by the
//! transaction that commits it (one statement for all of them), and relays
//! on any node claim them with `FOR UPDATE SKIP LOCKED`, so two relays
//! never hold one entry and neither waits for the other. A claim moves the
//! entry's `due_ms` to the end of its lease instead of deleting it: a relay
//! that dies leaves entries that come due again.

use deadpool_postgres::GenericClient;

use crate::objects::{CreatedObject, Notification, ObjectError, PendingNotification};

/// A committed write, as its notifications record it.
pub(super) struct Written<'w> {
    pub bucket: &'w str,
    pub key: &'w str,
    pub object: Option<CreatedObject>,
    pub committed_ms: i64,
}

/// The notifications' ids and details, as the array parameters the
/// statements unnest.
pub(super) fn columns(notifications: &[Notification]) -> (Vec<&str>, Vec<&str>) {
    notifications
        .iter()
        .map(|n| (n.id.as_str(), n.detail.as_str()))
        .unzip()
}

/// Stores a write's notifications in its transaction, claimable at once.
pub(super) async fn store(
    tx: &impl GenericClient,
    written: &Written<'_>,
    notifications: &[Notification],
) -> Result<(), ObjectError> {
    if notifications.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO object_notifications
                (id, bucket, key, size, etag, committed_ms, detail, due_ms)
             SELECT n.id, $3, $4, $5, $6, $7, n.detail, $7
             FROM UNNEST($1::text[], $2::text[]) AS n(id, detail)",
        )
        .await?;
    let (ids, details) = columns(notifications);
    let size = written.object.as_ref().map(|o| o.size as i64);
    let etag = written.object.as_ref().map(|o| o.etag.as_str());
    tx.execute(
        &stmt,
        &[
            &ids,
            &details,
            &written.bucket,
            &written.key,
            &size,
            &etag,
            &written.committed_ms,
        ],
    )
    .await?;
    Ok(())
}

/// Claims up to `max` entries due at `now_ms`, leasing them until `until_ms`.
pub(super) async fn claim(
    client: &impl GenericClient,
    now_ms: i64,
    until_ms: i64,
    max: usize,
) -> Result<Vec<PendingNotification>, ObjectError> {
    let stmt = client
        .prepare_cached(
            "WITH due AS (
                SELECT id FROM object_notifications WHERE due_ms <= $1
                ORDER BY due_ms, id LIMIT $3 FOR UPDATE SKIP LOCKED)
             UPDATE object_notifications n SET due_ms = $2, claims = n.claims + 1
             FROM due WHERE n.id = due.id
             RETURNING n.id, n.bucket, n.key, n.size, n.etag, n.committed_ms, n.detail, n.claims",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&now_ms, &until_ms, &(max as i64)])
        .await?;
    let mut claimed = rows
        .iter()
        .map(pending)
        .collect::<Result<Vec<_>, ObjectError>>()?;
    claimed.sort_by(|a, b| (a.committed_ms, &a.id).cmp(&(b.committed_ms, &b.id)));
    Ok(claimed)
}

fn pending(r: &tokio_postgres::Row) -> Result<PendingNotification, ObjectError> {
    let size: Option<i64> = r.try_get(3)?;
    let etag: Option<String> = r.try_get(4)?;
    Ok(PendingNotification {
        id: r.try_get(0)?,
        bucket: r.try_get(1)?,
        key: r.try_get(2)?,
        object: size.zip(etag).map(|(size, etag)| CreatedObject {
            size: size as u64,
            etag,
        }),
        committed_ms: r.try_get(5)?,
        detail: r.try_get(6)?,
        claims: r.try_get::<_, i32>(7)? as u32,
    })
}

/// Removes delivered entries, in one statement.
pub(super) async fn remove(client: &impl GenericClient, ids: &[String]) -> Result<(), ObjectError> {
    let stmt = client
        .prepare_cached("DELETE FROM object_notifications WHERE id = ANY($1)")
        .await?;
    client.execute(&stmt, &[&ids]).await?;
    Ok(())
}
