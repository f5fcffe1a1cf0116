//! Waiting for device enumeration to settle. A controller probed late (a second NVMe, a
//! USB bridge, a SAS HBA behind its firmware's spin-up) can add a disk seconds after the
//! installer's modules are loaded; "the only fixed disk" must not be chosen before that.
//! There is no udev here to say when probing is over, so the set of block devices must
//! stay the same for a quiet period.

use std::path::Path;
use std::time::Duration;

/// Waits until the names under `SYSFS/block` have not changed for `quiet`, or `max` has
/// passed (then it logs what it saw and returns: the selection that follows still requires
/// exactly one candidate). Returns how long it waited.
pub fn settle(sysfs: &Path, quiet: Duration, max: Duration) -> Duration {
    let block = sysfs.join("block");
    let list = || {
        let mut names: Vec<String> = std::fs::read_dir(&block).map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()).unwrap_or_default();
        names.sort();
        names
    };
    let (waited, settled) = settle_with(list, quiet, max, Duration::from_millis(250), std::thread::sleep);
    if settled {
        log::info!("block devices settled after {:.1} s", waited.as_secs_f64());
    } else {
        log::warn!("block devices were still changing after {:.0} s; choosing among those present now", waited.as_secs_f64());
    }
    waited
}

/// The loop of [`settle`], with the listing, the poll interval and the sleep given (so a
/// test can drive it): returns the time waited and whether the list stayed the same for
/// `quiet`.
pub fn settle_with(mut list: impl FnMut() -> Vec<String>, quiet: Duration, max: Duration, poll: Duration, mut sleep: impl FnMut(Duration)) -> (Duration, bool) {
    let mut waited = Duration::ZERO;
    let mut last = list();
    let mut unchanged = Duration::ZERO;
    while waited < max {
        if unchanged >= quiet {
            return (waited, true);
        }
        sleep(poll);
        waited += poll;
        let now = list();
        if now == last {
            unchanged += poll;
        } else {
            log::info!("block devices changed: {}", now.join(" "));
            last = now;
            unchanged = Duration::ZERO;
        }
    }
    (waited, unchanged >= quiet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_late_disk_then_a_quiet_period() {
        // sda at once, sdb appears after one second: the wait ends 3 s after sdb.
        let mut t = Duration::ZERO;
        let clock = std::cell::Cell::new(Duration::ZERO);
        let list = || if clock.get() >= Duration::from_secs(1) { vec!["sda".to_string(), "sdb".into()] } else { vec!["sda".to_string()] };
        let (waited, settled) = settle_with(list, Duration::from_secs(3), Duration::from_secs(30), Duration::from_millis(250), |d| {
            t += d;
            clock.set(t);
        });
        assert!(settled);
        assert_eq!(waited, Duration::from_secs(4));
        // A list that never settles gives up at the maximum.
        let mut n = 0;
        let (waited, settled) = settle_with(
            || {
                n += 1;
                vec![format!("sd{n}")]
            },
            Duration::from_secs(3),
            Duration::from_secs(5),
            Duration::from_millis(500),
            |_| {},
        );
        assert_eq!((waited, settled), (Duration::from_secs(5), false));
    }
}
