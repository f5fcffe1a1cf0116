//! A small bounded pool: run a job per item on at most N threads, stop handing out work at
//! the first failure, return the results in item order or the first error. Downloads are
//! I/O bound and decompression is CPU bound; a few threads cover both on a small machine.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, Result};

/// Runs `job` on every item with `workers` threads (at least one).
pub fn run<T: Sync, R: Send>(items: &[T], workers: usize, job: impl Fn(&T) -> Result<R> + Sync) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { return };
                match job(item) {
                    Ok(r) => {
                        if let Ok(mut res) = results.lock() {
                            res[i] = Some(r);
                        }
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        if let Ok(mut first) = first_error.lock() {
                            match first.as_ref() {
                                None => *first = Some(e),
                                Some(_) => log::error!("also failed: {e:#}"),
                            }
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().map_err(|_| anyhow!("a download thread panicked"))? {
        return Err(e);
    }
    let results = results.into_inner().map_err(|_| anyhow!("a download thread panicked"))?;
    results.into_iter().map(|r| r.ok_or_else(|| anyhow!("a download job did not run"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_in_order_and_first_error_wins() {
        let items: Vec<u32> = (0..50).collect();
        assert_eq!(run(&items, 4, |&i| Ok(i * 2)).unwrap(), (0..50).map(|i| i * 2).collect::<Vec<_>>());
        let err = run(&items, 3, |&i| if i == 7 { anyhow::bail!("item {i} broke") } else { Ok(i) }).unwrap_err();
        assert_eq!(err.to_string(), "item 7 broke");
        assert!(run(&[] as &[u32], 4, |&i| Ok(i)).unwrap().is_empty());
    }
}
