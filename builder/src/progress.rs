//! Progress events as lines, for the commands that follow an installer (`image`, `test`,
//! `deploy`): downloads as `n/N packages, x/y MiB`, an image as `x MiB streamed`, other
//! counts as `n/N UNIT`; at most one line per 5 s per phase, and always the last.

use std::time::{Duration, Instant};

/// Progress events as lines: downloads as `n/N packages, x/y MiB` (the byte count arrives
/// as a second event right after the package count), others as `n/N UNIT`; at most one line
/// per 5 s per phase, and always the last.
#[derive(Default)]
pub struct ProgressLines {
    items: Option<(u64, u64)>,
    last: std::collections::HashMap<String, Instant>,
}

impl ProgressLines {
    /// The line to show for this event, if one is due.
    pub fn line(&mut self, phase: &str, done: u64, total: u64, unit: &str) -> Option<String> {
        let text = match unit {
            // A stream of unknown length (an image): how much so far, at most every 5 s.
            "bytes" if total == 0 => (0, 1, format!("{:.1} MiB streamed", done as f64 / 1048576.0)),
            "bytes" => {
                let (n, of) = self.items.take().unwrap_or_default();
                let mib = |b: u64| b as f64 / 1048576.0;
                (n, of, format!("{n}/{of} packages, {:.1}/{:.1} MiB", mib(done), mib(total)))
            }
            "packages" if phase == "packages" => {
                self.items = Some((done, total));
                return None;
            }
            _ => (done, total, format!("{done}/{total} {unit}")),
        };
        let (n, of, line) = text;
        let due = self.last.get(phase).is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if n == of || due {
            self.last.insert(phase.to_string(), Instant::now());
            return Some(line);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn packages_then_bytes_make_one_line_and_images_their_own() {
        let mut p = super::ProgressLines::default();
        assert_eq!(p.line("packages", 3, 10, "packages"), None);
        assert_eq!(p.line("packages", 1048576, 4194304, "bytes").as_deref(), Some("3/10 packages, 1.0/4.0 MiB"));
        assert_eq!(p.line("image", 10 << 20, 0, "bytes").as_deref(), Some("10.0 MiB streamed"));
        assert_eq!(p.line("image", 20 << 20, 0, "bytes"), None, "at most every 5 s");
        assert_eq!(p.line("configure", 5, 5, "packages").as_deref(), Some("5/5 packages"));
    }
}
