//! A download as a `Read` that verifies and survives breaks: bytes are hashed as they pass,
//! a read error or a premature end reconnects with `Range: bytes=N-` (or, if the server
//! ignores ranges, re-reads and discards the first N bytes), and the end of the stream is
//! only reported once the size and SHA-256 match what the index promised.

use std::io::{self, Read};
use std::time::Duration;

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use ureq::http::StatusCode;
use ureq::BodyReader;

use super::progress::Progress;
use super::Fetcher;

/// What the downloaded bytes must be.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Exact size in bytes.
    pub size: Option<u64>,
    /// Lowercase hex SHA-256.
    pub sha256: Option<String>,
    /// Refuse bodies larger than this (for files of unknown size kept in memory).
    pub limit: Option<u64>,
}

/// See the module documentation. Errors name the URL; callers add the package.
pub struct VerifiedReader<'f> {
    fetcher: &'f Fetcher,
    url: String,
    expected: Expected,
    body: Option<BodyReader<'static>>,
    pos: u64,
    hasher: Sha256,
    breaks: u32,
    done: bool,
    progress: Option<&'f Progress>,
}

impl<'f> VerifiedReader<'f> {
    pub(super) fn open(fetcher: &'f Fetcher, url: &str, expected: Expected) -> Result<Self> {
        let mut r = VerifiedReader { fetcher, url: url.to_string(), expected, body: None, pos: 0, hasher: Sha256::new(), breaks: 0, done: false, progress: None };
        r.connect()?;
        Ok(r)
    }

    /// Counts the bytes of this download into `progress`.
    pub fn with_progress(mut self, progress: &'f Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Bytes delivered so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads whatever the consumer left unread (archive padding, trailing members) so that
    /// the size and digest are checked; returns the total size.
    pub fn finish(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())?;
        Ok(self.pos)
    }

    fn connect(&mut self) -> Result<()> {
        let resp = self.fetcher.request(&self.url, self.pos)?;
        let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
        if partial {
            let range = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
            let start = range.strip_prefix("bytes ").and_then(|r| r.split('-').next()).and_then(|s| s.parse::<u64>().ok());
            if start != Some(self.pos) {
                bail!("GET {}: asked for bytes from {}, the server sent the range {range:?}", self.url, self.pos);
            }
        }
        let mut body = resp.into_body().into_reader();
        if !partial && self.pos > 0 {
            // The server ignored the range: skip what we already have.
            let skipped = io::copy(&mut (&mut body).take(self.pos), &mut io::sink())?;
            if skipped != self.pos {
                bail!("GET {}: the file is shorter ({skipped} bytes) than what was already received", self.url);
            }
        }
        self.body = Some(body);
        Ok(())
    }

    /// After a break: reconnect from the current position, with backoff.
    fn resume(&mut self, why: &str) -> io::Result<()> {
        self.body = None;
        if self.breaks >= self.fetcher.config.retries {
            return Err(io::Error::other(format!("GET {}: the transfer broke {} times, last after {} bytes: {why}", self.url, self.breaks + 1, self.pos)));
        }
        self.breaks += 1;
        let delay = self.fetcher.config.backoff * 2u32.pow(self.breaks.min(6) - 1);
        log::warn!("GET {}: {why} after {} bytes; resuming ({}/{}) in {delay:?}", self.url, self.pos, self.breaks, self.fetcher.config.retries);
        let t = std::time::Instant::now();
        std::thread::sleep(delay.min(Duration::from_secs(30)));
        let connected = self.connect().map_err(|e| io::Error::other(format!("{e:#}")));
        if let Some(p) = self.progress {
            p.add_wait(t.elapsed());
        }
        connected
    }

    fn check_end(&mut self) -> io::Result<()> {
        let fail = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidData, msg));
        if let Some(size) = self.expected.size {
            if self.pos != size {
                return fail(format!("GET {}: got {} bytes, the index says {size}", self.url, self.pos));
            }
        }
        if let Some(want) = &self.expected.sha256 {
            let got = hex::encode(std::mem::take(&mut self.hasher).finalize());
            if &got != want {
                return fail(format!("GET {}: SHA-256 mismatch: the index says {want}, the download is {got}", self.url));
            }
        }
        Ok(())
    }
}

impl Read for VerifiedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            let Some(body) = self.body.as_mut() else {
                self.resume("no connection")?;
                continue;
            };
            let t = std::time::Instant::now();
            let got = body.read(buf);
            if let Some(p) = self.progress {
                p.add_wait(t.elapsed());
            }
            match got {
                Ok(0) if self.expected.size.is_some_and(|s| self.pos < s) => self.resume("the body ended early")?,
                Ok(0) => {
                    self.check_end()?;
                    self.done = true;
                    return Ok(0);
                }
                Ok(n) => {
                    let cap = self.expected.size.or(self.expected.limit);
                    if cap.is_some_and(|c| self.pos + n as u64 > c) {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("GET {}: more than the expected {} bytes", self.url, cap.unwrap_or(0))));
                    }
                    self.hasher.update(&buf[..n]);
                    self.pos += n as u64;
                    if let Some(p) = self.progress {
                        p.add_bytes(n as u64);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.resume(&e.to_string())?,
            }
        }
    }
}
