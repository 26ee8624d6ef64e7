//! ListObjects on the primary key: a page is read in batches of rows in
//! key order, and a common prefix is skipped in one step (the next batch
//! starts past every key under it) rather than read key by key.

use deadpool_postgres::GenericClient;

use super::object_meta;
use crate::objects::{ListEntry, ListPage, ListQuery, ObjectError, group_key};

/// Rows fetched per step of a listing scan.
const LIST_BATCH: i64 = 256;

/// One page of `bucket` (which exists) as `query` asks.
pub(super) async fn scan(
    client: &impl GenericClient,
    bucket: &str,
    query: &ListQuery,
) -> Result<ListPage, ObjectError> {
    // Keys are never empty, so "" as the exclusive bound excludes nothing.
    let stmt = client
        .prepare_cached(
            "SELECT key, size, etag, modified_ms, attrs::text FROM objects
             WHERE bucket = $1 AND key >= $2 AND key > $3
             ORDER BY key LIMIT $4",
        )
        .await?;
    let mut page = ListPage::default();
    if query.max_keys == 0 {
        return Ok(page);
    }
    let delimiter = query.delimiter.as_deref();
    let mut cursor = query.after.clone().unwrap_or_default();
    let mut last_prefix: Option<String> = None;
    loop {
        let rows = client
            .query(&stmt, &[&bucket, &query.prefix, &cursor, &LIST_BATCH])
            .await?;
        let full_batch = rows.len() as i64 == LIST_BATCH;
        let mut jump: Option<String> = None;
        for row in &rows {
            let key: String = row.try_get(0)?;
            if !key.starts_with(&query.prefix) {
                return Ok(page);
            }
            cursor.clone_from(&key);
            let entry = match group_key(&key, &query.prefix, delimiter) {
                Some(cp) => {
                    let seen = last_prefix.as_deref() == Some(cp)
                        || query.after.as_deref().is_some_and(|a| cp <= a);
                    if seen {
                        continue;
                    }
                    ListEntry::CommonPrefix(cp.to_string())
                }
                None => ListEntry::Object(object_meta(row, 0)?),
            };
            if page.entries.len() == query.max_keys {
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
            cursor = j;
        } else if !full_batch {
            return Ok(page);
        }
    }
}
