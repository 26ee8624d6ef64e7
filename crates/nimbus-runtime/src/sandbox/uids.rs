//! Host uids for instances when the server runs as root.
//!
//! Two instances sharing a uid could signal, trace and read each other, and
//! pass each other's Runtime API check, so a uid is never handed out twice at
//! once: the pool hands out uids from a free list and takes one back only when
//! the instance holding it is gone (its [`UidLease`] is dropped after the
//! process tree was killed and reaped). Released uids go to the back of the
//! list, so a uid is reused as late as possible. An empty list is an error
//! (the instance does not start), never a shared uid.
//!
//! Several servers on one host must not share uids either: each takes a
//! block of `span` uids under an exclusive `flock` in `/run/nimbus`, skipping
//! blocks another server holds and blocks that overlap the host's
//! `/etc/subuid` or `/etc/subgid` ranges (rootless containers use those). The
//! lock dies with the process, so a SIGKILLed server frees its block.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where the per-block lock files live.
pub const LOCK_DIR: &str = "/run/nimbus";
/// How many blocks are tried before giving up.
const MAX_BLOCKS: u32 = 64;

/// A block of host uids (and the gids of the same numbers) owned by this server.
#[derive(Debug)]
pub struct UidPool {
    first: u32,
    span: u32,
    free: Mutex<VecDeque<u32>>,
    _lock: Option<File>,
}

/// One uid in use by one instance; returned to its pool when dropped.
#[derive(Debug)]
pub struct UidLease {
    uid: u32,
    pool: Arc<UidPool>,
}

impl UidLease {
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().unwrap_or_else(|p| p.into_inner());
        free.push_back(self.uid);
    }
}

impl UidPool {
    /// Takes the first block of `span` uids at or after `base` that no other
    /// server on this host holds and that overlaps no subordinate id range.
    pub fn lock_block(base: u32, span: u32) -> io::Result<Arc<Self>> {
        Self::lock_block_in(Path::new(LOCK_DIR), base, span, &subordinate_ranges())
    }

    fn lock_block_in(
        dir: &Path,
        base: u32,
        span: u32,
        reserved: &[(u64, u64)],
    ) -> io::Result<Arc<Self>> {
        use std::os::fd::AsRawFd;
        let span = span.max(1);
        std::fs::create_dir_all(dir)?;
        let mut first = base;
        for _ in 0..MAX_BLOCKS {
            let end = first as u64 + span as u64;
            if end > u32::MAX as u64 {
                break;
            }
            if let Some(&(_, r_end)) = reserved
                .iter()
                .find(|&&(s, e)| (first as u64) < e && s < end)
            {
                first = r_end.min(u32::MAX as u64) as u32;
                continue;
            }
            let path: PathBuf = dir.join(format!("uids-{first}-{span}.lock"));
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // SAFETY: flock(2) on a descriptor we own; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Arc::new(Self::with_lock(first, span, Some(file))));
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err);
            }
            first = end as u32;
        }
        Err(io::Error::other(format!(
            "no free block of {span} sandbox uids at or after {base} (other servers hold them)"
        )))
    }

    /// A pool without a host lock (tests of the allocator itself).
    pub fn unlocked(first: u32, span: u32) -> Arc<Self> {
        Arc::new(Self::with_lock(first, span.max(1), None))
    }

    fn with_lock(first: u32, span: u32, lock: Option<File>) -> Self {
        Self {
            first,
            span,
            free: Mutex::new((first..first + span).collect()),
            _lock: lock,
        }
    }

    /// A uid no live instance of this server (or any other) uses.
    pub fn lease(self: &Arc<Self>) -> Option<UidLease> {
        let uid = self
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()?;
        Some(UidLease {
            uid,
            pool: self.clone(),
        })
    }

    /// The first uid and the number of uids of the block.
    pub fn range(&self) -> (u32, u32) {
        (self.first, self.span)
    }
}

/// The ranges of `/etc/subuid` and `/etc/subgid` as `[start, end)`.
fn subordinate_ranges() -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for file in ["/etc/subuid", "/etc/subgid"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        out.extend(parse_subordinate(&text));
    }
    out
}

fn parse_subordinate(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.trim().split(':');
            let (_, start, count) = (it.next()?, it.next()?, it.next()?);
            let start: u64 = start.trim().parse().ok()?;
            let count: u64 = count.trim().parse().ok()?;
            Some((start, start + count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_is_never_leased_twice_while_held() {
        let pool = UidPool::unlocked(5000, 3);
        let a = pool.lease().unwrap();
        let b = pool.lease().unwrap();
        let c = pool.lease().unwrap();
        assert!(pool.lease().is_none(), "an empty pool refuses");
        let mut held = [a.uid(), b.uid(), c.uid()];
        held.sort();
        assert_eq!(held, [5000, 5001, 5002]);
        drop(b);
        let d = pool.lease().unwrap();
        assert_eq!(d.uid(), 5001, "the only free uid");
        assert!(pool.lease().is_none());
    }

    #[test]
    fn released_uids_are_reused_last() {
        let pool = UidPool::unlocked(100, 4);
        let a = pool.lease().unwrap();
        assert_eq!(a.uid(), 100);
        drop(a);
        let order: Vec<u32> = (0..4)
            .map(|_| pool.lease().unwrap())
            .map(|l| {
                let u = l.uid();
                std::mem::forget(l);
                u
            })
            .collect();
        assert_eq!(order, [101, 102, 103, 100]);
    }

    #[test]
    fn wrapping_many_times_never_shares_a_live_uid() {
        let pool = UidPool::unlocked(7000, 8);
        let mut live: VecDeque<UidLease> = VecDeque::new();
        for i in 0..70_000u32 {
            if live.len() == 8 || (i % 3 == 0 && !live.is_empty()) {
                live.pop_front();
            }
            let l = pool.lease().expect("a free uid");
            assert!(live.iter().all(|x| x.uid() != l.uid()));
            live.push_back(l);
        }
    }

    #[test]
    fn two_servers_lock_disjoint_blocks() {
        let dir = std::env::temp_dir().join(format!("nimbus-uids-{}", std::process::id()));
        let a = UidPool::lock_block_in(&dir, 3_000_000, 1000, &[]).unwrap();
        let b = UidPool::lock_block_in(&dir, 3_000_000, 1000, &[]).unwrap();
        assert_eq!(a.range(), (3_000_000, 1000));
        assert_eq!(b.range(), (3_001_000, 1000));
        drop(a);
        let c = UidPool::lock_block_in(&dir, 3_000_000, 1000, &[]).unwrap();
        assert_eq!(
            c.range(),
            (3_000_000, 1000),
            "a released block is taken again"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn subordinate_ranges_are_skipped() {
        let reserved = parse_subordinate("alice:100000:65536\nbob:165536:65536\n");
        assert_eq!(reserved, [(100_000, 165_536), (165_536, 231_072)]);
        let dir = std::env::temp_dir().join(format!("nimbus-subuids-{}", std::process::id()));
        let p = UidPool::lock_block_in(&dir, 100_000, 65_536, &reserved).unwrap();
        assert_eq!(p.range().0, 231_072);
        let _ = std::fs::remove_dir_all(dir);
    }
}
