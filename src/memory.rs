//! Gives the memory of a burst back to the system once the burst is over.
//! The allocator keeps what sessions and deliveries free for its next
//! allocations (glibc returns a heap's pages only from its top), so after
//! ten thousand connections, or a few hundred messages' data buffers at
//! once, the process would stay at its peak for good. When a period with
//! new connections is followed by one without, the free pages are handed
//! back (`malloc_trim`), once per burst: never under steady load, where the
//! next connection would take them back at once.

use std::time::Duration;

/// How often the server looks whether a burst is over.
pub const QUIET_PERIOD: Duration = Duration::from_secs(5);

/// Tells from the count of connections granted so far, read once per
/// period, when a burst has just ended.
#[derive(Debug, Default)]
pub struct Bursts {
    seen: u64,
    busy: bool,
}

impl Bursts {
    /// True when the period just past had no new connection and the one
    /// before it had some.
    pub fn ended(&mut self, granted: u64) -> bool {
        let new = granted != self.seen;
        self.seen = granted;
        let ended = self.busy && !new;
        self.busy = new;
        ended
    }
}

/// Runs for the server's life: after each burst of connections (as
/// `granted` counts them), the allocator's free pages go back to the system.
pub async fn release_after_bursts(granted: impl Fn() -> u64) {
    let mut bursts = Bursts::default();
    loop {
        tokio::time::sleep(QUIET_PERIOD).await;
        if bursts.ended(granted()) {
            let _ = tokio::task::spawn_blocking(release_free_pages).await;
        }
    }
}

/// Hands the allocator's free pages back to the system (glibc's allocator;
/// other C libraries return theirs on their own or not at all).
fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under
    // its locks; it takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::Bursts;

    #[test]
    fn a_quiet_period_after_a_busy_one_ends_the_burst() {
        let mut bursts = Bursts::default();
        assert!(!bursts.ended(40), "a busy period");
        assert!(bursts.ended(40), "then a quiet one");
    }

    #[test]
    fn a_burst_ends_once_however_long_the_quiet_lasts() {
        let mut bursts = Bursts::default();
        bursts.ended(40);
        assert!(bursts.ended(40));
        assert!(!bursts.ended(40));
        assert!(!bursts.ended(40));
    }

    #[test]
    fn steady_load_never_ends_a_burst() {
        let mut bursts = Bursts::default();
        for granted in (1..=20).map(|n| n * 100) {
            assert!(!bursts.ended(granted));
        }
    }

    #[test]
    fn a_server_that_never_had_a_connection_has_no_burst_to_end() {
        let mut bursts = Bursts::default();
        assert!(!bursts.ended(0));
        assert!(!bursts.ended(0));
    }
}
