//! Object bodies as blobs of 1 MiB rows (`object_chunks`), so a body
//! streams through the database both ways and is never held whole.
//!
//! # Why chunks are written outside the committing transaction
//!
//! A body of more than one chunk is *staged*: each chunk commits on its own,
//! on a connection borrowed for that one statement, so a slow upload pins
//! no connection and no long transaction. The staged blob has no reference
//! and an expiry that each chunk pushes back; the transaction that commits
//! the object or part then *claims* it (one reference, no expiry). A body
//! that fits one chunk skips staging: its only chunk is written by the
//! committing transaction itself (the 1 MB PUT is one transaction).
//!
//! # Why bodies are reclaimed by a sweep, after a grace period
//!
//! Blobs are immutable and reference-counted: an object or part holds one
//! reference on each blob it lists (a copy shares its source's blobs, a
//! completed multipart upload takes over its parts' blobs, so neither copies
//! bytes). The transaction that drops the last reference (overwrite, delete,
//! abort) stamps the blob with an expiry in that same transaction, so a body
//! can never outlive its last reference unnoticed; its chunks are deleted
//! later by [`sweep`]. The delay is the point: a reader streams chunks lazily,
//! without a transaction or a pooled connection held between them, and the
//! contract says a reader keeps the version it opened (the file backend gets
//! that from an open file handle). Deleting the chunks in the releasing
//! transaction would cut such a reader off; the grace period lets it finish.
//! A staged blob whose writer died simply expires the same way.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use deadpool_postgres::GenericClient;
use futures::StreamExt;
use md5::{Digest, Md5};
use nimbus_core::Clock;

use super::connect;
use crate::body::ByteStream;
use crate::objects::{ObjectError, PutBody};
use crate::postgres::Pg;

/// Bytes per chunk row: every chunk of a blob but its last holds exactly
/// this many, which is what lets a range read compute which rows it needs.
/// Part of the schema: changing it needs a migration.
pub(super) const CHUNK: usize = 1 << 20;

/// How long a staged blob outlives its last written chunk unless claimed.
pub(super) const STAGING_ALLOWANCE_MS: i64 = 60 * 60 * 1000;

/// How long a released blob's chunks stay readable for the readers that
/// opened it before it was overwritten or deleted.
pub(super) const READ_GRACE_MS: i64 = 60 * 60 * 1000;

/// Chunks a read fetches ahead of the one its consumer is taking.
const READ_AHEAD: usize = 2;

/// Expired blobs deleted per sweep statement.
const SWEEP_BATCH: i64 = 64;

/// Drops one reference on each blob of `$1`; a blob left with none expires
/// at `$2`. Used as a statement or inside a larger one.
pub(super) const RELEASE: &str = "UPDATE object_blobs
    SET refs = refs - 1, expires_ms = CASE WHEN refs = 1 THEN $2 ELSE expires_ms END
    WHERE id = ANY($1)";

/// A body that has streamed in and passed its declared checks, not yet
/// referenced by anything.
pub(super) struct Written {
    pub(super) body: Body,
    pub(super) size: u64,
    /// Hex MD5 of the bytes (the ETag).
    pub(super) etag: String,
}

pub(super) enum Body {
    /// At most one chunk, still in memory: the committing transaction
    /// writes it (an empty body has no blob at all).
    Inline(Bytes),
    /// A staged blob, all its chunks written.
    Staged(i64),
}

impl Written {
    /// The staged blob to remove if this body is never committed.
    pub(super) fn staged(&self) -> Option<i64> {
        match self.body {
            Body::Staged(id) => Some(id),
            Body::Inline(_) => None,
        }
    }
}

/// Cuts a body into chunks of exactly [`CHUNK`] bytes (the last one
/// shorter), counting and hashing it on the way and refusing it as soon as it
/// runs past its declared length.
struct Chunker {
    stream: ByteStream,
    /// Received but not yet handed out.
    pending: Bytes,
    ended: bool,
    declared_len: Option<u64>,
    declared_md5: Option<[u8; 16]>,
    size: u64,
    md5: Md5,
}

impl Chunker {
    fn new(body: PutBody) -> Self {
        Self {
            stream: body.stream,
            pending: Bytes::new(),
            ended: false,
            declared_len: body.len,
            declared_md5: body.md5,
            size: 0,
            md5: Md5::new(),
        }
    }

    /// The next chunk, or `None` once the body has ended.
    async fn next(&mut self) -> Result<Option<Bytes>, ObjectError> {
        let mut chunk = BytesMut::new();
        loop {
            if chunk.is_empty() && self.pending.len() >= CHUNK {
                return Ok(Some(self.pending.split_to(CHUNK)));
            }
            let take = (CHUNK - chunk.len()).min(self.pending.len());
            chunk.extend_from_slice(&self.pending.split_to(take));
            if chunk.len() == CHUNK {
                return Ok(Some(chunk.freeze()));
            }
            if self.ended {
                return Ok((!chunk.is_empty()).then(|| chunk.freeze()));
            }
            match self.stream.next().await {
                Some(received) => self.receive(received.map_err(ObjectError::Body)?)?,
                None => self.ended = true,
            }
        }
    }

    fn receive(&mut self, bytes: Bytes) -> Result<(), ObjectError> {
        self.size += bytes.len() as u64;
        if let Some(expected) = self.declared_len
            && self.size > expected
        {
            return Err(ObjectError::IncompleteBody {
                expected,
                received: self.size,
            });
        }
        self.md5.update(&bytes);
        self.pending = bytes;
        Ok(())
    }

    /// Checks the whole body against what its sender declared.
    fn finish(self, body: Body) -> Result<Written, ObjectError> {
        if let Some(expected) = self.declared_len
            && self.size != expected
        {
            return Err(ObjectError::IncompleteBody {
                expected,
                received: self.size,
            });
        }
        let digest = self.md5.finalize();
        if self
            .declared_md5
            .is_some_and(|d| d.as_slice() != digest.as_slice())
        {
            return Err(ObjectError::BadDigest);
        }
        Ok(Written {
            body,
            size: self.size,
            etag: hex::encode(digest),
        })
    }
}

/// Streams `body` in: kept in memory if it fits one chunk, else staged
/// chunk by chunk (the next chunk is received while the last is stored).
/// Nothing of a refused or failed body is left behind.
pub(super) async fn write(pg: &Pg, clock: &Clock, body: PutBody) -> Result<Written, ObjectError> {
    let mut chunker = Chunker::new(body);
    let Some(first) = chunker.next().await? else {
        return chunker.finish(Body::Inline(Bytes::new()));
    };
    let Some(second) = chunker.next().await? else {
        return chunker.finish(Body::Inline(first));
    };
    let blob = stage_first(pg, clock, first).await?;
    let written = stage_rest(pg, clock, blob, &mut chunker, second)
        .await
        .and_then(|()| chunker.finish(Body::Staged(blob)));
    if written.is_err() {
        discard(pg, blob).await;
    }
    written
}

/// Creates a staged blob holding `chunk` as its first row.
async fn stage_first(pg: &Pg, clock: &Clock, chunk: Bytes) -> Result<i64, ObjectError> {
    let client = connect(pg).await?;
    let stmt = client
        .prepare_cached(
            "WITH blob AS (INSERT INTO object_blobs (expires_ms) VALUES ($1) RETURNING id),
                  chunk AS (INSERT INTO object_chunks (blob, seq, data) SELECT id, 0, $2 FROM blob)
             SELECT id FROM blob",
        )
        .await?;
    let expires = clock.now_ms() + STAGING_ALLOWANCE_MS;
    let row = client
        .query_one(&stmt, &[&expires, &chunk.as_ref()])
        .await?;
    Ok(row.get(0))
}

/// Stores `next` and every chunk after it, receiving each while the one
/// before it is stored.
async fn stage_rest(
    pg: &Pg,
    clock: &Clock,
    blob: i64,
    chunker: &mut Chunker,
    mut next: Bytes,
) -> Result<(), ObjectError> {
    let mut seq = 1;
    loop {
        let (stored, received) = tokio::join!(append(pg, clock, blob, seq, next), chunker.next());
        // The body's own failure first: it is what the sender is told.
        let received = received?;
        stored?;
        match received {
            Some(chunk) => next = chunk,
            None => return Ok(()),
        }
        seq += 1;
    }
}

/// Appends chunk `seq` to a staged blob and pushes its expiry back.
async fn append(
    pg: &Pg,
    clock: &Clock,
    blob: i64,
    seq: i32,
    chunk: Bytes,
) -> Result<(), ObjectError> {
    let client = connect(pg).await?;
    let stmt = client
        .prepare_cached(
            "WITH touched AS (UPDATE object_blobs SET expires_ms = $4 WHERE id = $1)
             INSERT INTO object_chunks (blob, seq, data) VALUES ($1, $2, $3)",
        )
        .await?;
    let expires = clock.now_ms() + STAGING_ALLOWANCE_MS;
    client
        .execute(&stmt, &[&blob, &seq, &chunk.as_ref(), &expires])
        .await?;
    Ok(())
}

/// Removes a staged blob that will not be committed. Best effort: if this
/// fails, the blob expires and a sweep removes it.
pub(super) async fn discard(pg: &Pg, blob: i64) {
    let removed = async {
        connect(pg)
            .await?
            .execute(
                "DELETE FROM object_blobs WHERE id = $1 AND refs = 0",
                &[&blob],
            )
            .await?;
        Ok::<_, ObjectError>(())
    }
    .await;
    if let Err(e) = removed {
        tracing::warn!(blob, error = %e, "could not remove an uncommitted object body; it expires");
    }
}

/// Takes the first reference on a written body inside the transaction that
/// commits it: returns the blobs the committed row lists.
pub(super) async fn claim(
    tx: &impl GenericClient,
    written: &Written,
) -> Result<Vec<i64>, ObjectError> {
    let size = written.size as i64;
    match &written.body {
        Body::Inline(bytes) if bytes.is_empty() => Ok(Vec::new()),
        Body::Inline(bytes) => {
            let stmt = tx
                .prepare_cached(
                    "WITH blob AS (INSERT INTO object_blobs (size, refs) VALUES ($1, 1) RETURNING id),
                          chunk AS (INSERT INTO object_chunks (blob, seq, data) SELECT id, 0, $2 FROM blob)
                     SELECT id FROM blob",
                )
                .await?;
            let row = tx.query_one(&stmt, &[&size, &bytes.as_ref()]).await?;
            Ok(vec![row.get(0)])
        }
        Body::Staged(blob) => {
            let stmt = tx
                .prepare_cached(
                    "UPDATE object_blobs SET refs = 1, size = $2, expires_ms = NULL
                     WHERE id = $1 AND refs = 0",
                )
                .await?;
            if tx.execute(&stmt, &[blob, &size]).await? != 1 {
                return Err(ObjectError::Task(
                    "the body expired before it was committed (the upload stalled too long)".into(),
                ));
            }
            Ok(vec![*blob])
        }
    }
}

/// Takes one more reference on blobs a committed row already lists (a copy).
/// A blob released meanwhile is taken back while its grace period lasts.
pub(super) async fn share(tx: &impl GenericClient, blobs: &[i64]) -> Result<(), ObjectError> {
    if blobs.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE object_blobs SET refs = refs + 1, expires_ms = NULL WHERE id = ANY($1)",
        )
        .await?;
    if tx.execute(&stmt, &[&blobs]).await? != blobs.len() as u64 {
        return Err(ObjectError::Task(
            "the source object's body was reclaimed while it was being copied".into(),
        ));
    }
    Ok(())
}

/// Drops one reference on each of `blobs` (see [`RELEASE`]).
pub(super) async fn release(
    tx: &impl GenericClient,
    blobs: &[i64],
    now_ms: i64,
) -> Result<(), ObjectError> {
    if blobs.is_empty() {
        return Ok(());
    }
    let stmt = tx.prepare_cached(RELEASE).await?;
    tx.execute(&stmt, &[&blobs, &(now_ms + READ_GRACE_MS)])
        .await?;
    Ok(())
}

/// Deletes every blob whose expiry has passed, with its chunks; nodes
/// sweeping at once skip each other's rows. Returns how many went.
pub(super) async fn sweep(pg: &Pg, now_ms: i64) -> Result<u64, ObjectError> {
    let client = connect(pg).await?;
    let stmt = client
        .prepare_cached(
            "DELETE FROM object_blobs WHERE id IN (
                SELECT id FROM object_blobs WHERE expires_ms < $1
                ORDER BY expires_ms LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .await?;
    let mut swept = 0;
    loop {
        let n = client.execute(&stmt, &[&now_ms, &SWEEP_BATCH]).await?;
        swept += n;
        if n < SWEEP_BATCH as u64 {
            return Ok(swept);
        }
    }
}

/// One blob of an object, in order: its id and size.
pub(super) type Segment = (i64, u64);

/// The bytes `range` of the concatenation of `segments`, fetched a chunk
/// at a time as the stream is polled (only the chunks the range covers, and
/// of the first and last only the bytes it covers).
pub(super) fn read(pg: Pg, segments: Vec<Segment>, range: Range<u64>) -> ByteStream {
    let pieces = Pieces {
        segments,
        segment: 0,
        segment_start: 0,
        pos: range.start,
        end: range.end,
    };
    Box::pin(
        futures::stream::iter(pieces)
            .map(move |piece| fetch(pg.clone(), piece))
            .buffered(READ_AHEAD),
    )
}

/// The bytes `offset..offset + len` of chunk `seq` of `blob`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    blob: i64,
    seq: i32,
    offset: i32,
    len: i32,
}

/// The pieces a range reads, in order.
struct Pieces {
    segments: Vec<Segment>,
    segment: usize,
    /// Where `segments[segment]` starts in the object.
    segment_start: u64,
    pos: u64,
    end: u64,
}

impl Iterator for Pieces {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        while self.pos < self.end {
            let (blob, size) = *self.segments.get(self.segment)?;
            let within = self.pos - self.segment_start;
            if within >= size {
                self.segment += 1;
                self.segment_start += size;
                continue;
            }
            let chunk = CHUNK as u64;
            let (seq, offset) = (within / chunk, within % chunk);
            let chunk_len = (size - seq * chunk).min(chunk);
            let len = (chunk_len - offset).min(self.end - self.pos);
            self.pos += len;
            return Some(Piece {
                blob,
                seq: seq as i32,
                offset: offset as i32,
                len: len as i32,
            });
        }
        None
    }
}

async fn fetch(pg: Pg, piece: Piece) -> std::io::Result<Bytes> {
    let row = async {
        let client = connect(&pg).await?;
        let stmt = client
            .prepare_cached(
                "SELECT substring(data FROM $3 + 1 FOR $4) FROM object_chunks
                 WHERE blob = $1 AND seq = $2",
            )
            .await?;
        let row = client
            .query_opt(&stmt, &[&piece.blob, &piece.seq, &piece.offset, &piece.len])
            .await?;
        Ok::<_, ObjectError>(row)
    }
    .await
    .map_err(std::io::Error::other)?;
    let data: Vec<u8> = row
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "chunk {} of object body {} is gone (reclaimed after the object was replaced)",
                piece.seq, piece.blob
            ))
        })?
        .get(0);
    if data.len() != piece.len as usize {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "chunk {} of object body {} is {} bytes short",
                piece.seq,
                piece.blob,
                piece.len as usize - data.len().min(piece.len as usize)
            ),
        ));
    }
    Ok(data.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(segments: &[Segment], range: Range<u64>) -> Vec<Piece> {
        Pieces {
            segments: segments.to_vec(),
            segment: 0,
            segment_start: 0,
            pos: range.start,
            end: range.end,
        }
        .collect()
    }

    /// What a range must select: per blob, the bytes `lo..hi` of it.
    fn expected(segments: &[Segment], range: Range<u64>) -> Vec<(i64, u64, u64)> {
        let mut start = 0;
        let mut out = Vec::new();
        for &(blob, size) in segments {
            let (lo, hi) = (range.start.max(start), range.end.min(start + size));
            if lo < hi {
                out.push((blob, lo - start, hi - start));
            }
            start += size;
        }
        out
    }

    /// Pieces as per-blob byte ranges, contiguous pieces of a blob merged.
    fn merged(pieces: &[Piece]) -> Vec<(i64, u64, u64)> {
        let mut out: Vec<(i64, u64, u64)> = Vec::new();
        for p in pieces {
            let lo = p.seq as u64 * CHUNK as u64 + p.offset as u64;
            let hi = lo + p.len as u64;
            match out.last_mut() {
                Some(last) if last.0 == p.blob && last.2 == lo => last.2 = hi,
                _ => out.push((p.blob, lo, hi)),
            }
        }
        out
    }

    #[test]
    fn pieces_cover_exactly_the_range_across_segments_and_chunks() {
        let c = CHUNK as u64;
        let segments: Vec<Segment> = vec![(1, 5), (2, 0), (3, 2 * c + 3), (4, 1)];
        let total: u64 = segments.iter().map(|s| s.1).sum();
        let points = [0, 1, 4, 5, 6, c, c + 4, c + 5, 2 * c + 5, total - 1, total];
        for &start in &points {
            for &end in points.iter().filter(|&&e| e >= start) {
                let got = pieces(&segments, start..end);
                assert_eq!(
                    merged(&got),
                    expected(&segments, start..end),
                    "{start}..{end}"
                );
                // No piece crosses a chunk boundary.
                assert!(
                    got.iter()
                        .all(|p| p.len > 0 && (p.offset + p.len) as usize <= CHUNK)
                );
            }
        }
        // The last byte is one piece: the last byte of the last chunk.
        assert_eq!(
            pieces(&segments, total - 2..total - 1),
            [Piece {
                blob: 3,
                seq: 2,
                offset: 2,
                len: 1
            }]
        );
    }
}
