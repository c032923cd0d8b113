//! Wall-clock timestamps and their RFC 3339 form.
//!
//! A [`Timestamp`] is nanoseconds since the Unix epoch (UTC) in a `u64`
//! (enough until the year 2554). In JSON it is an RFC 3339 string in UTC
//! with all nine fractional digits, `2026-11-25T21:07:08.123456789Z`, so
//! lines sort by time as text. The calendar arithmetic is Howard Hinnant's
//! `civil_from_days` / `days_from_civil`, written out here rather than
//! pulling in a date crate for two functions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: u64 = 86_400;

/// Nanoseconds since 1970-01-01T00:00:00Z.
///
/// # Examples
///
/// ```
/// use distlogd::timestamp::Timestamp;
/// let t = Timestamp(1_700_000_000_123_456_789);
/// assert_eq!(t.to_string(), "2023-11-14T22:13:20.123456789Z");
/// assert_eq!("2023-11-14T22:13:20.123456789Z".parse::<Timestamp>().unwrap(), t);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current `CLOCK_REALTIME`.
    pub fn now() -> Timestamp {
        Timestamp(crate::clock::realtime_ns())
    }
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64; // [0, 399]
    let mp = u64::from(if m > 2 { m - 3 } else { m + 9 }); // [0, 11]
    let doy = (153 * mp + 2) / 5 + u64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe as i64 - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / NS_PER_SEC;
        let nanos = self.0 % NS_PER_SEC;
        let (y, mo, d) = civil_from_days((secs / SECS_PER_DAY) as i64);
        let sod = secs % SECS_PER_DAY;
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    }
}

/// Why a string is not an RFC 3339 UTC timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 UTC timestamp (want 2026-11-25T21:07:08.123456789Z): {0}")]
pub struct ParseTimestampError(&'static str);

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// `YYYY-MM-DDTHH:MM:SS[.fraction]` followed by `Z` or `+00:00`; from
    /// 1970 to 2554.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Result<u64, ParseTimestampError> {
            let part = b.get(r).ok_or(ParseTimestampError("too short"))?;
            part.iter().try_fold(0u64, |acc, c| {
                if c.is_ascii_digit() {
                    Ok(acc * 10 + u64::from(c - b'0'))
                } else {
                    Err(ParseTimestampError("digit expected"))
                }
            })
        };
        let sep = |i: usize, c: &[u8]| -> Result<(), ParseTimestampError> {
            match b.get(i) {
                Some(x) if c.contains(x) => Ok(()),
                _ => Err(ParseTimestampError("separator")),
            }
        };
        let y = num(0..4)?;
        sep(4, b"-")?;
        let mo = num(5..7)? as u32;
        sep(7, b"-")?;
        let d = num(8..10)? as u32;
        sep(10, b"Tt ")?;
        let h = num(11..13)?;
        sep(13, b":")?;
        let mi = num(14..16)?;
        sep(16, b":")?;
        let sec = num(17..19)?;
        let mut i = 19;
        let mut nanos = 0u64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos = nanos * 10 + u64::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return Err(ParseTimestampError("empty fraction"));
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
        match &b[i..] {
            b"Z" | b"z" | b"+00:00" | b"-00:00" => {}
            _ => return Err(ParseTimestampError("UTC offset (Z) expected")),
        }
        if !(1970..=2554).contains(&y) || !(1..=12).contains(&mo) || h > 23 || mi > 59 || sec > 60 {
            return Err(ParseTimestampError("field out of range"));
        }
        if d == 0 || d > days_in_month(y as i64, mo) {
            return Err(ParseTimestampError("day out of range"));
        }
        let days = days_from_civil(y as i64, mo, d) as u64;
        let secs = days * SECS_PER_DAY + h * 3600 + mi * 60 + sec;
        secs.checked_mul(NS_PER_SEC)
            .and_then(|n| n.checked_add(nanos))
            .map(Timestamp)
            .ok_or(ParseTimestampError("after 2554"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            Timestamp(951_782_400 * NS_PER_SEC).to_string(),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            Timestamp(4_102_444_799 * NS_PER_SEC + 1).to_string(),
            "2099-12-31T23:59:59.000000001Z"
        );
        assert_eq!(
            Timestamp(u64::MAX).to_string(),
            "2554-07-21T23:34:33.709551615Z"
        );
    }

    #[test]
    fn roundtrip_every_week_for_575_years() {
        for i in 0..30_000u64 {
            let day = i * 7 * SECS_PER_DAY * NS_PER_SEC;
            let ts = Timestamp(day + (i * 3_723_000_000_017) % (SECS_PER_DAY * NS_PER_SEC));
            assert_eq!(ts.to_string().parse::<Timestamp>(), Ok(ts), "{ts}");
        }
    }

    #[test]
    fn parse_variants_and_errors() {
        let t: Timestamp = "2026-11-25T21:07:08.5Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-25T21:07:08.500000000Z");
        let u: Timestamp = "2026-11-25T21:07:08+00:00".parse().unwrap();
        assert_eq!(u.to_string(), "2026-11-25T21:07:08.000000000Z");
        for bad in [
            "",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-25T21:07:08.Z",
            "2026-11-25T21:07:08+01:00",
            "1969-12-31T23:59:59Z",
            "2026-11-25T24:00:00Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn json() {
        let t = Timestamp(1_764_104_828_123_456_789);
        let j = serde_json::to_string(&t).unwrap();
        assert_eq!(j, "\"2025-11-25T21:07:08.123456789Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&j).unwrap(), t);
    }
}
