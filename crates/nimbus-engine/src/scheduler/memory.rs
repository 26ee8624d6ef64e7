//! Memory admission: the memory limits of all instances that exist (starting,
//! idle or busy) add up to at most a budget.
//!
//! Each instance's cgroup caps it at its function's `memory_mb`; without this
//! sum the host could be promised far more than it has (a thousand instances of
//! 10 GB), and the kernel's OOM killer, not the platform, would decide who
//! runs. A start that does not fit first evicts idle instances (least recently
//! used first, any function's), then waits for memory to be freed within the
//! caller's queue wait, then is refused with `TooManyRequests`.

use std::sync::Mutex;

use tokio::sync::Notify;

/// Memory committed to instances, in MB.
#[derive(Debug)]
pub struct MemoryBudget {
    capacity_mb: u64,
    used_mb: Mutex<u64>,
    /// Woken whenever memory is given back.
    pub(crate) freed: Notify,
}

impl MemoryBudget {
    pub fn new(capacity_mb: u64) -> Self {
        Self {
            capacity_mb,
            used_mb: Mutex::new(0),
            freed: Notify::new(),
        }
    }

    /// No bound (tests, tools).
    pub fn unlimited() -> Self {
        Self::new(u64::MAX)
    }

    pub fn capacity_mb(&self) -> u64 {
        self.capacity_mb
    }

    /// MB committed now.
    pub fn used_mb(&self) -> u64 {
        *self.used_mb.lock().unwrap()
    }

    /// Commits `mb` if it fits.
    pub(crate) fn try_take(&self, mb: u64) -> bool {
        let mut used = self.used_mb.lock().unwrap();
        if used.saturating_add(mb) > self.capacity_mb {
            return false;
        }
        *used += mb;
        true
    }

    /// Commits as many of `n` instances of `mb` as fit; returns how many.
    pub(crate) fn take_up_to(&self, n: usize, mb: u64) -> usize {
        let mut used = self.used_mb.lock().unwrap();
        let room = self.capacity_mb.saturating_sub(*used);
        let fit = room
            .checked_div(mb)
            .map_or(n, |k| n.min(usize::try_from(k).unwrap_or(usize::MAX)));
        *used += fit as u64 * mb;
        fit
    }

    /// Gives back what `n` instances of `mb` held.
    pub(crate) fn give(&self, n: usize, mb: u64) {
        if n == 0 {
            return;
        }
        {
            let mut used = self.used_mb.lock().unwrap();
            *used = used.saturating_sub(n as u64 * mb);
        }
        self.freed.notify_waiters();
    }
}

/// The default budget: the host's memory less a reserve for the server, the
/// kernel and everything else on the machine (a tenth of it, at least 1 GiB).
pub fn default_budget_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?
        * 1024;
    Some(total.saturating_sub((total / 10).max(RESERVE_MIN_BYTES)))
}

/// Least memory kept out of the default budget.
pub const RESERVE_MIN_BYTES: u64 = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_never_exceed_the_capacity() {
        let b = MemoryBudget::new(512);
        assert!(b.try_take(256));
        assert!(b.try_take(256));
        assert!(!b.try_take(1));
        b.give(1, 256);
        assert_eq!(b.take_up_to(3, 128), 2);
        assert_eq!(b.used_mb(), 512);
        b.give(2, 128);
        b.give(1, 256);
        assert_eq!(b.used_mb(), 0);
    }

    #[test]
    fn the_default_keeps_a_reserve() {
        assert!(default_budget_bytes().is_some(), "Linux has /proc/meminfo");
    }
}
