//! HTTP(S) downloads for every distribution: one blocking client (ureq with rustls/ring and
//! the bundled webpki roots, plus any CA the plan adds), a proxy from the plan or the
//! environment, per-phase timeouts instead of one deadline (a 200 MB package on a slow
//! link is fine, a connection that stalls is not), retries with backoff, resumption of a
//! broken body with `Range`, and verification while streaming (size and SHA-256 checked as
//! the bytes pass) into a [`Spool`]: nothing is decompressed, parsed or unpacked before
//! the whole download matched what the signed index promised.
//!
//! Distro-neutral: callers give URLs and the expected size/digest; they get a `Read`
//! ([`Fetcher::open`]) or bytes ([`Fetcher::get_bytes`]). [`pool`] runs several downloads at
//! once, [`progress`] reports them.

pub mod pool;
pub mod progress;
pub mod spool;
mod stream;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ureq::http::StatusCode;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;

pub use spool::Spool;
pub use stream::{Expected, VerifiedReader};

/// How to reach the mirrors.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// `http://host:port` of an HTTP proxy; `None` takes ALL_PROXY/HTTPS_PROXY/HTTP_PROXY
    /// (and NO_PROXY) from the environment, `Some("")` disables proxies.
    pub proxy: Option<String>,
    /// Extra trusted CA certificates (PEM), added to the bundled webpki roots.
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// Time allowed to resolve and connect.
    pub connect_timeout: Duration,
    /// Longest silence while waiting for a response or for the next body bytes (stall).
    pub read_timeout: Duration,
    /// Attempts per request after the first one (each broken body resumes where it broke).
    pub retries: u32,
    /// First backoff delay; doubled per retry.
    pub backoff: Duration,
    /// Downloads running at once in [`pool`].
    pub parallel: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            proxy: None,
            extra_ca_pem: Vec::new(),
            connect_timeout: Duration::from_secs(20),
            read_timeout: Duration::from_secs(30),
            retries: 5,
            backoff: Duration::from_millis(500),
            parallel: 4,
        }
    }
}

/// A configured HTTP client; cheap to share between threads (`&Fetcher` is `Sync`).
pub struct Fetcher {
    agent: Agent,
    pub config: FetchConfig,
}

/// The answer to [`Fetcher::probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub length: Option<u64>,
    pub ranges: bool,
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Result<Fetcher> {
        Ok(Fetcher { agent: agent(&config, true)?, config })
    }

    /// Sends one GET (optionally from byte `offset`), retrying connection failures and
    /// server errors (5xx, 408, 429) with backoff. A 404 or other client error is final.
    pub(crate) fn request(&self, url: &str, offset: u64) -> Result<ureq::http::Response<ureq::Body>> {
        let mut delay = self.config.backoff;
        let mut attempt = 0;
        loop {
            let mut req = self.agent.get(url);
            if offset > 0 {
                req = req.header("Range", format!("bytes={offset}-"));
            }
            let err = match req.call() {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) if retryable(resp.status()) => anyhow::anyhow!("the server answered {}", resp.status()),
                Ok(resp) => bail!("GET {url}: the server answered {} (check the mirror URL and suite)", resp.status()),
                Err(e) => anyhow::Error::new(e),
            };
            if attempt >= self.config.retries {
                return Err(err.context(format!("GET {url}: giving up after {} attempts", attempt + 1)));
            }
            attempt += 1;
            log::warn!("GET {url}: {err:#}; retry {attempt}/{} in {delay:?}", self.config.retries);
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Opens `url` as a verifying, resuming stream (see [`VerifiedReader`]).
    pub fn open(&self, url: &str, expected: Expected) -> Result<VerifiedReader<'_>> {
        VerifiedReader::open(self, url, expected)
    }

    /// Downloads a small file (an index or signature) into memory, refusing more than
    /// `limit` bytes; `Ok(None)` if the server says 404 (optional files like `InRelease`).
    pub fn get_optional(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let head = self.agent.head(url).call();
        if let Ok(resp) = &head {
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
        }
        self.get_bytes(url, limit).map(Some)
    }

    /// Downloads a small file into memory, with the retries and resumption of [`open`].
    pub fn get_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>> {
        let mut reader = self.open(url, Expected { size: None, sha256: None, limit: Some(limit) })?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).with_context(|| format!("downloading {url}"))?;
        Ok(out)
    }

    /// Checks that `url` exists without downloading it: HEAD, or a ranged GET of the first
    /// bytes where a server refuses HEAD.
    pub fn probe(&self, url: &str) -> Result<Probe> {
        let resp = match self.agent.head(url).call() {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status() == StatusCode::NOT_FOUND => bail!("{url} does not exist on the mirror (404)"),
            _ => {
                let r = self.agent.get(url).header("Range", "bytes=0-15").call().with_context(|| format!("probing {url}"))?;
                if !r.status().is_success() {
                    bail!("probing {url}: the server answered {}", r.status());
                }
                r
            }
        };
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok(Probe {
            length: header("content-length").and_then(|l| l.parse().ok()),
            ranges: header("accept-ranges").is_some_and(|r| r.contains("bytes")) || resp.status() == StatusCode::PARTIAL_CONTENT,
        })
    }
}

/// The client for `config`. `verify: false` turns certificate checks off: only for
/// [`server_date`], which must work while the clock (and with it every certificate's
/// validity period) is still wrong.
fn agent(config: &FetchConfig, verify: bool) -> Result<Agent> {
    let mut builder = Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(config.connect_timeout))
        .timeout_resolve(Some(config.connect_timeout))
        .timeout_recv_response(Some(config.read_timeout))
        .timeout_per_read(Some(config.read_timeout))
        .timeout_recv_body(None)
        .timeout_global(None)
        .user_agent(concat!("anemos/", env!("CARGO_PKG_VERSION")))
        .max_redirects(5);
    builder = match config.proxy.as_deref() {
        None => builder.proxy(ureq::Proxy::try_from_env()),
        Some("") => builder.proxy(None),
        Some(p) => builder.proxy(Some(ureq::Proxy::new(p).with_context(|| format!("bad proxy URL {p:?}"))?)),
    };
    // One crypto stack for TLS, named here: ring, which rustls also verifies with.
    let provider = rustls::crypto::CryptoProvider { key_provider: &NoClientKeys, ..rustls::crypto::ring::default_provider() };
    let tls = TlsConfig::builder().unversioned_rustls_crypto_provider(Arc::new(provider));
    let tls = if verify { tls.root_certs(roots_with(&config.extra_ca_pem)?) } else { tls.disable_verification(true) };
    Ok(builder.tls_config(tls.build()).build().new_agent())
}

/// The server's clock: the `Date` header of a HEAD request for `url`, whatever the status
/// (a 404 carries a Date too). `Ok(None)` when the server sends none or one that does not
/// parse. Certificates are not checked — a wrong clock is what this is for, and the
/// answer's body is never used; the `Date` is as trustworthy as any plain-HTTP answer, and
/// [`crate::clock`] never lets it take the clock back.
pub fn server_date(config: &FetchConfig, url: &str) -> Result<Option<std::time::SystemTime>> {
    let resp = agent(config, false)?.head(url).call().with_context(|| format!("HEAD {url}"))?;
    let date = resp.headers().get("date").and_then(|v| v.to_str().ok());
    Ok(date.and_then(crate::clock::parse_http_date))
}

/// `scheme://host[:port]/` of a URL, or `None` if it has no `scheme://host`.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if scheme.is_empty() || host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{host}/"))
}

fn retryable(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS
}

/// The bundled webpki roots (Mozilla's, from webpki-root-certs: the one copy of them in the
/// init) plus the given PEM certificates.
fn roots_with(pems: &[Vec<u8>]) -> Result<RootCerts> {
    let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect();
    for pem in pems {
        let mut n = 0;
        for item in ureq::tls::parse_pem(pem) {
            if let ureq::tls::PemItem::Certificate(c) = item.context("reading a CA certificate (PEM)")? {
                certs.push(c);
                n += 1;
            }
        }
        if n == 0 {
            bail!("a CA file given for HTTPS holds no PEM certificate");
        }
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// The fetcher never presents a client certificate, so it loads no private keys: without
/// ring's key loader, its RSA, ECDSA and Ed25519 signing code stays out of the init.
#[derive(Debug)]
struct NoClientKeys;

impl rustls::crypto::KeyProvider for NoClientKeys {
    fn load_private_key(&self, _key: rustls::pki_types::PrivateKeyDer<'static>) -> std::result::Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General("anemos presents no client certificate".into()))
    }
}

#[cfg(test)]
mod tests;
