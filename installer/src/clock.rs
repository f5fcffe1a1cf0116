//! The system clock in the installer. The kernel starts from the RTC, which may be wrong
//! (a flat battery, a board reset to its epoch, a virtual machine started in the past), and
//! a wrong clock breaks what the install checks: TLS certificates and the `Valid-Until` of
//! signed indexes. Two corrections, both only in the init (PID 1):
//!
//! - the **floor**: the payload records when it was packed (the workstation's clock,
//!   [`crate::payload::PACKED_AT_FILE`]) and its newest input ([`crate::payload::BUILD_TIME_FILE`]);
//!   a clock earlier than either is certainly wrong and is set to the later one ([`floor`]);
//! - the **mirror's `Date`**: before the first index is fetched, the mirror's HTTP `Date`
//!   header is read (without certificate checks: it must work while the clock is wrong), and
//!   if it is more than [`THRESHOLD`] *ahead* of the clock, the clock takes it
//!   ([`from_server`]). It never takes the clock back: an unauthenticated `Date` could
//!   otherwise rewind it to replay signed indexes that have expired since.
//!
//! The decisions are pure functions of the times involved (unit-tested); [`set`] does the
//! system call and refuses outside PID 1, so a host tool can never change its host's clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// How far the mirror's `Date` may differ from the clock before the clock is corrected.
/// HTTP dates have one-second resolution and the answer took some time to arrive; a
/// minute is far inside any certificate's or index's validity and far above that noise.
pub const THRESHOLD: Duration = Duration::from_secs(60);

/// The time to set when the clock (`now`) is earlier than the payload's floor.
pub fn floor(now: SystemTime, built: SystemTime) -> Option<SystemTime> {
    (now < built).then_some(built)
}

/// What to do with a server's `Date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromServer {
    /// Within [`THRESHOLD`] of the clock: nothing to do.
    Keep,
    /// Set the clock to this (later) time.
    Set(SystemTime),
    /// The server's time is behind the clock: the clock is never taken back.
    Behind,
}

/// Decides from the clock (`now`) and the server's `Date`: only forward, and only beyond
/// [`THRESHOLD`]. (The clock is already at or above the payload's floor when this runs, so
/// a `Date` before the payload existed is always behind.)
pub fn from_server(now: SystemTime, server: SystemTime) -> FromServer {
    match server.duration_since(now) {
        Ok(ahead) if ahead > THRESHOLD => FromServer::Set(server),
        Ok(_) => FromServer::Keep,
        Err(e) if e.duration() > THRESHOLD => FromServer::Behind,
        Err(_) => FromServer::Keep,
    }
}

/// Applies the floor: if the clock is earlier than `built`, sets it there and logs both.
/// Returns the time set, if any.
pub fn raise_to_floor(built: SystemTime) -> Result<Option<SystemTime>> {
    let now = SystemTime::now();
    let Some(to) = floor(now, built) else {
        log::debug!("clock: {} is not before the payload was packed ({})", format(now), format(built));
        return Ok(None);
    };
    set(to)?;
    log::info!("clock: {} is before the payload was packed; set to {}", format(now), format(to));
    Ok(Some(to))
}

/// Applies a server's `Date` (`source` names the server for the log): moves the clock
/// forward beyond [`THRESHOLD`], never back. Returns the time set, if any.
pub fn correct_from_server(server: SystemTime, source: &str) -> Result<Option<SystemTime>> {
    let now = SystemTime::now();
    match from_server(now, server) {
        FromServer::Keep => {
            log::debug!("clock: {} agrees with {source} ({})", format(now), format(server));
            Ok(None)
        }
        FromServer::Behind => {
            log::warn!(
                "clock: {source} says it is {}, behind this clock ({}); the clock is never taken back (an unauthenticated Date could replay expired indexes), so it stays",
                format(server),
                format(now)
            );
            Ok(None)
        }
        FromServer::Set(to) => {
            set(to)?;
            log::info!("clock: {} → {} (the Date of {source})", format(now), format(to));
            Ok(Some(to))
        }
    }
}

/// Sets the system clock (CLOCK_REALTIME). Only PID 1 may: the installer owns its
/// machine, a host tool must never change the clock of the host it runs on.
pub fn set(to: SystemTime) -> Result<()> {
    if !rustix::process::getpid().is_init() {
        bail!("setting the clock: only the installer (PID 1) changes the clock; this process is not PID 1");
    }
    let since = to.duration_since(UNIX_EPOCH).context("setting the clock: the time is before 1970")?;
    let ts = rustix::time::Timespec { tv_sec: since.as_secs() as i64, tv_nsec: since.subsec_nanos() as _ };
    rustix::time::clock_settime(rustix::time::ClockId::Realtime, ts).with_context(|| format!("setting the clock to {} (clock_settime)", format(to)))
}

/// 9999-12-31 23:59:59 UTC: the latest time anemos handles (dates have four-digit years).
pub const MAX_UNIX: u64 = 253_402_300_799;

/// Seconds since the epoch, as the payload's `build-time` file holds them, capped at
/// [`MAX_UNIX`] so that no value can make the time arithmetic panic.
pub fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.min(MAX_UNIX))
}

/// `2024-01-31 12:00:00 UTC`, for logs.
pub fn format(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Parses an HTTP date (RFC 7231 §7.1.1.1): the IMF-fixdate every current server sends
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), and the two obsolete forms recipients must accept,
/// RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
/// The day name is not checked against the date (the RFC lets recipients ignore it).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (y, mo, d, time) = if let Some((day, rest)) = s.split_once(", ") {
        if DAYS.contains(&day) {
            imf_fixdate(rest)?
        } else if DAYS.iter().any(|short| day.len() > 3 && day.starts_with(short) && day.ends_with("day")) {
            rfc850(rest)?
        } else {
            return None;
        }
    } else {
        asctime(s)?
    };
    let (h, mi, sec) = time;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + sec.min(59));
    (secs >= 0).then(|| UNIX_EPOCH + Duration::from_secs(secs as u64))
}

type Civil = (i64, u32, u32, (u32, u32, u32));

/// `06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(rest: &str) -> Option<Civil> {
    let f: Vec<&str> = rest.split(' ').collect();
    let [d, mo, y, t, "GMT"] = f[..] else { return None };
    if d.len() != 2 || y.len() != 4 {
        return None;
    }
    Some((number(y)?.into(), month(mo)?, number(d)?, time(t)?))
}

/// `06-Nov-94 08:49:37 GMT`; a two-digit year is taken in 1970–2069.
fn rfc850(rest: &str) -> Option<Civil> {
    let f: Vec<&str> = rest.split(' ').collect();
    let [date, t, "GMT"] = f[..] else { return None };
    let p: Vec<&str> = date.split('-').collect();
    let [d, mo, y] = p[..] else { return None };
    if d.len() != 2 || y.len() != 2 {
        return None;
    }
    let yy = i64::from(number(y)?);
    Some((if yy < 70 { 2000 + yy } else { 1900 + yy }, month(mo)?, number(d)?, time(t)?))
}

/// `Sun Nov  6 08:49:37 1994` (the day padded with a space)
fn asctime(s: &str) -> Option<Civil> {
    let (day, rest) = s.split_once(' ')?;
    if !DAYS.contains(&day) {
        return None;
    }
    let f: Vec<&str> = rest.split(' ').filter(|w| !w.is_empty()).collect();
    let [mo, d, t, y] = f[..] else { return None };
    if d.is_empty() || d.len() > 2 || y.len() != 4 {
        return None;
    }
    Some((number(y)?.into(), month(mo)?, number(d)?, time(t)?))
}

fn time(t: &str) -> Option<(u32, u32, u32)> {
    let p: Vec<&str> = t.split(':').collect();
    let [h, m, s] = p[..] else { return None };
    if h.len() != 2 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    Some((number(h)?, number(m)?, number(s)?))
}

/// Digits only (no sign, no spaces, as `str::parse` would allow a `+`).
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month(s: &str) -> Option<u32> {
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        from_unix(secs)
    }

    #[test]
    fn the_three_http_date_forms() {
        // RFC 7231's own example, 784111777 = 1994-11-06 08:49:37 UTC.
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t(784_111_777)));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t(784_111_777)));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(t(784_111_777)));
        assert_eq!(parse_http_date("  Thu, 01 Jan 1970 00:00:00 GMT "), Some(t(0)));
        // After 2038 and on a leap day; GNU date agrees (date -ud 2096-02-29 +%s).
        assert_eq!(parse_http_date("Tue, 29 Feb 2100 00:00:00 GMT"), None, "2100 is no leap year");
        assert_eq!(parse_http_date("Thu, 29 Feb 2096 00:00:00 GMT"), Some(t(3_981_312_000)));
        assert_eq!(parse_http_date("Wed, 31 Dec 2025 23:59:59 GMT"), Some(t(1_767_225_599)));
        // A two-digit year below 70 is in this century.
        assert_eq!(parse_http_date("Wednesday, 02-Jan-30 03:04:05 GMT"), parse_http_date("Wed, 02 Jan 2030 03:04:05 GMT"));
        // A leap second is read as the second before it.
        assert_eq!(parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT"), Some(t(1_483_228_799)));
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
            "Sun, 01 Jan 1969 00:00:00 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?} was accepted");
        }
    }

    #[test]
    fn dates_round_trip_through_the_calendar() {
        // Every day from 1970 to past 2400 maps to a valid date and back.
        for days in (0..160_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m), "{days}: {y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), days);
            let text = format!("Mon, {d:02} {} {y:04} 12:00:00 GMT", MONTHS[m as usize - 1]);
            assert_eq!(parse_http_date(&text), Some(t(days as u64 * 86_400 + 43_200)), "{text}");
        }
        assert_eq!(format(t(784_111_777)), "1994-11-06 08:49:37 UTC");
        assert_eq!(format(t(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(format(t(MAX_UNIX)), "9999-12-31 23:59:59 UTC");
        assert_eq!(t(u64::MAX), t(MAX_UNIX), "capped, not a panic");
    }

    #[test]
    fn the_floor_only_moves_the_clock_forward() {
        let built = t(1_700_000_000);
        assert_eq!(floor(t(946_684_800), built), Some(built), "a clock in 2000 goes to the build time");
        assert_eq!(floor(t(1_699_999_999), built), Some(built));
        assert_eq!(floor(built, built), None);
        assert_eq!(floor(t(1_800_000_000), built), None, "a later clock is not taken back");
    }

    #[test]
    fn the_server_date_only_moves_the_clock_forward_beyond_the_threshold() {
        let now = t(1_700_000_000);
        assert_eq!(from_server(now, t(1_700_000_060)), FromServer::Keep, "60 s is within the threshold");
        assert_eq!(from_server(now, t(1_699_999_940)), FromServer::Keep);
        assert_eq!(from_server(now, t(1_700_000_061)), FromServer::Set(t(1_700_000_061)));
        assert_eq!(from_server(now, t(1_800_000_000)), FromServer::Set(t(1_800_000_000)));
        // Never back, however far: a hostile Date cannot rewind the clock to replay an
        // index that expired since the payload was packed.
        assert_eq!(from_server(now, t(1_699_999_939)), FromServer::Behind);
        assert_eq!(from_server(now, t(1_000)), FromServer::Behind);
    }

    #[test]
    fn only_pid_1_sets_the_clock() {
        let err = set(SystemTime::now()).unwrap_err().to_string();
        assert!(err.contains("not PID 1"), "{err}");
    }
}
