//! The rules that turn the vault's wall-clock texts into instants.
//!
//! The vault writes local wall-clock times without a zone. They are read in the configured
//! IANA zone. A time that falls in a DST fold (it happened twice) takes the earlier instant
//! (the offset in force before the change); a time in a DST gap (it never happened on the
//! clock) is moved forward by the gap's length, i.e. read with the offset in force before the
//! gap. This is the rule of java.time's `ZonedDateTime.ofLocal` and Python's `fold=0`.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// The years a vault time may carry. Earlier than the Unix epoch or past 9999 is not a session
/// time but a broken or hostile record: ECS and Elasticsearch dates are four-digit years, and
/// bounding the year keeps every later time computation far from chrono's limits.
pub const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// Parse a vault wall-clock text (`YYYY-MM-DD HH:MM:SS`, also with `T` or fractional seconds).
/// Zero dates and other unusable values give `None`, and so do years outside [`YEARS`] and
/// leap seconds (`23:59:60`: the vault's clock does not write them; chrono would carry them as
/// a 61st second that no receiver accepts).
pub fn parse_wall_clock(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    if t.starts_with("0000") {
        return None;
    }
    let parsed = parse_fixed(t.as_bytes()).or_else(|| {
        NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f"))
            .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S"))
            .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f"))
            .ok()
            .or_else(|| {
                NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
    })?;
    let leap_second = parsed.nanosecond() >= 1_000_000_000;
    (YEARS.contains(&parsed.year()) && !leap_second).then_some(parsed)
}

/// The documented `YYYY-MM-DD HH:MM:SS` form, read without the general parser (it is on the
/// per-record path of every poll).
fn parse_fixed(b: &[u8]) -> Option<NaiveDateTime> {
    if b.len() != 19
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b' ' | b'T'))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    // At most four ASCII digits: no overflow.
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |acc, &c| {
            let digit = u32::from(c.checked_sub(b'0').filter(|d| *d < 10)?);
            acc.checked_mul(10)?.checked_add(digit)
        })
    };
    NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)?.and_hms_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )
}

/// Convert a wall-clock time in `tz` to UTC by the module's gap/fold rule. `None` when the
/// instant's UTC year is outside [`YEARS`] (`9999-12-31 23:59:59` east of Greenwich is in
/// 10000 UTC; `1970-01-01 00:00:00` west of it in 1969).
pub fn to_utc(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    to_utc_unbounded(local, tz).filter(|t| YEARS.contains(&t.year()))
}

fn to_utc_unbounded(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, _) => Some(earlier.with_timezone(&Utc)),
        LocalResult::None => {
            // In a gap: read it with the offset in force just before the gap, which moves it
            // forward by the gap's length. Gaps are at most a few hours; step back to find it.
            let mut probe = local;
            for _ in 0..48 {
                probe = probe.checked_sub_signed(chrono::Duration::minutes(30))?;
                if let Some(before) = tz.from_local_datetime(&probe).earliest() {
                    let offset = chrono::Offset::fix(before.offset()).local_minus_utc();
                    let utc = local.checked_sub_signed(chrono::Duration::seconds(i64::from(offset)))?;
                    return Some(Utc.from_utc_datetime(&utc));
                }
            }
            Some(Utc.from_utc_datetime(&local))
        }
    }
}

/// The vault's wall-clock texts read in its zone ([`parse_wall_clock`] then [`to_utc`]), with
/// the last start and the last end text remembered with their instants: a listing comes in start
/// order, so in a dense one hundreds of records in a row share a start second, and each of them
/// would be parsed and placed in the zone again. The same text in the same zone is the same
/// instant, so nothing is guessed.
#[derive(Debug, Clone)]
pub struct WallClock {
    tz: Tz,
    last: [Remembered; 2],
}

/// One field's last text (up to 32 bytes; longer ones are not remembered) and its instant.
#[derive(Debug, Clone, Copy, Default)]
struct Remembered {
    text: [u8; 32],
    /// 0: nothing remembered.
    len: usize,
    value: Option<DateTime<Utc>>,
}

/// Which remembered text [`WallClock::read`] compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    /// A session's start.
    Start = 0,
    /// A session's end.
    End = 1,
}

impl WallClock {
    /// A clock reading times in `tz`.
    pub fn new(tz: Tz) -> WallClock {
        WallClock {
            tz,
            last: [Remembered::default(); 2],
        }
    }

    /// `text` (a `field` value) as an instant, as `parse_wall_clock(text).and_then(|t|
    /// to_utc(t, zone))` gives it.
    pub fn read(&mut self, field: TimeField, text: &str) -> Option<DateTime<Utc>> {
        let last = &mut self.last[field as usize];
        let bytes = text.as_bytes();
        if last.len != 0 && last.text.get(..last.len) == Some(bytes) {
            return last.value;
        }
        let value = parse_wall_clock(text).and_then(|t| to_utc(t, self.tz));
        if let Some(slot) = last.text.get_mut(..bytes.len()) {
            slot.copy_from_slice(bytes);
            last.len = bytes.len();
            last.value = value;
        }
        value
    }
}

/// Parse `HH:MM:SS` (hours may exceed 24) into seconds.
pub fn parse_hms(text: &str) -> Option<i64> {
    let mut parts = text.trim().split(':');
    let h: i64 = parts.next()?.trim().parse().ok()?;
    let m: i64 = parts.next()?.trim().parse().ok()?;
    let s: i64 = parts.next()?.trim().parse().ok()?;
    if parts.next().is_some() || h < 0 || !(0..60).contains(&m) || !(0..60).contains(&s) {
        return None;
    }
    h.checked_mul(3600)?.checked_add(m.checked_mul(60)?.checked_add(s)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_reads_as_parse_and_zone_do_whatever_it_remembers() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let texts = [
            "2024-03-31 02:30:00", // in the spring gap
            "2024-03-31 02:30:00",
            "2024-10-27 02:30:00", // in the autumn fold
            "2024-10-27 02:30:00",
            "2024-03-31 02:30:00",
            " 2024-05-06 19:07:59 ",
            "2024-05-06 19:07:59",
            "2024-05-06T19:07:59.123456789012345678", // longer than what is remembered
            "2024-05-06T19:07:59.123456789012345678",
            "",
            "0000-00-00 00:00:00",
            "garbage",
            "2024-05-06 19:07:59",
        ];
        let mut clock = WallClock::new(tz);
        for (i, text) in texts.iter().enumerate() {
            let expected = parse_wall_clock(text).and_then(|t| to_utc(t, tz));
            // Start and end remembered apart: read each text as both, in turns.
            let (first, second) = match i % 2 {
                0 => (TimeField::Start, TimeField::End),
                _ => (TimeField::End, TimeField::Start),
            };
            assert_eq!(clock.read(first, text), expected, "{text:?}");
            assert_eq!(clock.read(second, text), expected, "{text:?}");
            assert!(clock.read(first, "2024-01-01 00:00:00").is_some());
            assert_eq!(clock.read(first, text), expected, "{text:?} again");
        }
        // Another zone, same texts: other instants.
        let mut utc = WallClock::new(Tz::UTC);
        assert_ne!(
            utc.read(TimeField::Start, "2024-05-06 19:07:59"),
            clock.read(TimeField::Start, "2024-05-06 19:07:59")
        );
    }

    fn utc(tz: Tz, text: &str) -> String {
        to_utc(parse_wall_clock(text).unwrap(), tz).unwrap().to_rfc3339()
    }

    #[test]
    fn wall_clock_to_utc_with_gaps_and_folds() {
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        assert_eq!(utc(sp, "2024-05-06 16:07:59"), "2024-05-06T19:07:59+00:00");
        let ny: Tz = "America/New_York".parse().unwrap();
        // Gap: 2024-03-10 02:30 never happened; read with EST (-5) → 07:30Z (= 03:30 EDT).
        assert_eq!(utc(ny, "2024-03-10 02:30:00"), "2024-03-10T07:30:00+00:00");
        // Fold: 2024-11-03 01:30 happened twice; the earlier (EDT, -4) is taken.
        assert_eq!(utc(ny, "2024-11-03 01:30:00"), "2024-11-03T05:30:00+00:00");
    }

    /// DST rules around real switch dates: (zone, wall time, expected UTC).
    #[test]
    fn dst_switches_in_three_zones() {
        let cases = [
            // São Paulo had DST until 2019. Summer time (-02) and standard time (-03).
            ("America/Sao_Paulo", "2018-01-15 12:00:00", "2018-01-15T14:00:00+00:00"),
            ("America/Sao_Paulo", "2018-07-15 12:00:00", "2018-07-15T15:00:00+00:00"),
            // 2018-11-04: 00:00 jumped to 01:00. 00:30 is in the gap: read at -03.
            ("America/Sao_Paulo", "2018-11-03 23:59:59", "2018-11-04T02:59:59+00:00"),
            ("America/Sao_Paulo", "2018-11-04 00:30:00", "2018-11-04T03:30:00+00:00"),
            ("America/Sao_Paulo", "2018-11-04 01:00:00", "2018-11-04T03:00:00+00:00"),
            // 2019-02-17 00:00 (-02) went back to 2019-02-16 23:00 (-03): 23:30 happened twice.
            ("America/Sao_Paulo", "2019-02-16 23:30:00", "2019-02-17T01:30:00+00:00"),
            ("America/Sao_Paulo", "2019-02-17 00:30:00", "2019-02-17T03:30:00+00:00"),
            // Since 2019 no DST: -03 all year.
            ("America/Sao_Paulo", "2024-01-15 12:00:00", "2024-01-15T15:00:00+00:00"),
            // New York 2024-03-10 02:00 EST → 03:00 EDT; 2024-11-03 02:00 EDT → 01:00 EST.
            ("America/New_York", "2024-03-10 01:59:59", "2024-03-10T06:59:59+00:00"),
            ("America/New_York", "2024-03-10 02:30:00", "2024-03-10T07:30:00+00:00"),
            ("America/New_York", "2024-03-10 03:00:00", "2024-03-10T07:00:00+00:00"),
            ("America/New_York", "2024-11-03 00:59:59", "2024-11-03T04:59:59+00:00"),
            ("America/New_York", "2024-11-03 01:30:00", "2024-11-03T05:30:00+00:00"),
            ("America/New_York", "2024-11-03 02:00:00", "2024-11-03T07:00:00+00:00"),
            // Berlin 2024-03-31 02:00 CET → 03:00 CEST; 2024-10-27 03:00 CEST → 02:00 CET.
            ("Europe/Berlin", "2024-03-31 01:59:59", "2024-03-31T00:59:59+00:00"),
            ("Europe/Berlin", "2024-03-31 02:30:00", "2024-03-31T01:30:00+00:00"),
            ("Europe/Berlin", "2024-03-31 03:00:00", "2024-03-31T01:00:00+00:00"),
            ("Europe/Berlin", "2024-10-27 02:30:00", "2024-10-27T00:30:00+00:00"),
            ("Europe/Berlin", "2024-10-27 03:00:00", "2024-10-27T02:00:00+00:00"),
        ];
        for (zone, wall, expected) in cases {
            let tz: Tz = zone.parse().unwrap();
            assert_eq!(utc(tz, wall), expected, "{zone} {wall}");
        }
    }

    #[test]
    fn zero_dates_and_hms() {
        assert_eq!(parse_wall_clock("0000-00-00 00:00:00"), None);
        assert_eq!(parse_hms("9223372036854775807:00:00"), None, "no overflow");
        assert_eq!(parse_hms("27:00:05"), Some(27 * 3600 + 5));
        assert_eq!(parse_hms("1:75:00"), None);
    }

    /// Far years and leap seconds are not session times; nothing on the way panics.
    #[test]
    fn years_outside_the_range_and_leap_seconds_are_refused() {
        for text in [
            "+262142-12-31 23:59:59",
            "-262143-01-01 00:00:00",
            "+12026-01-01 00:00:00",
            "10000-01-01 00:00:00",
            "1969-12-31 23:59:59",
            "2024-06-30 23:59:60",
            "2024-06-30T23:59:60.5",
        ] {
            assert_eq!(parse_wall_clock(text), None, "{text}");
        }
        assert!(parse_wall_clock("1970-01-01 00:00:00").is_some());
        // In range on the wall clock, out of it in UTC.
        let edge = |text: &str, tz: Tz| to_utc(parse_wall_clock(text).unwrap(), tz);
        assert_eq!(edge("9999-12-31 23:59:59", chrono_tz::Pacific::Pago_Pago), None);
        assert_eq!(edge("1970-01-01 00:00:00", chrono_tz::Asia::Tokyo), None);
        assert!(edge("9999-12-31 23:59:59", chrono_tz::Asia::Tokyo).is_some());
        let far = parse_wall_clock("9999-12-31 23:59:59").unwrap();
        for (zone, in_range) in [
            ("America/Sao_Paulo", false),
            ("Pacific/Kiritimati", true),
            ("Etc/GMT+12", false),
        ] {
            let tz: Tz = zone.parse().unwrap();
            assert_eq!(to_utc(far, tz).is_some(), in_range, "{zone}");
        }
        // chrono's extremes do not panic either, whatever the zone.
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        let _ = to_utc(NaiveDateTime::MAX, sp);
        let _ = to_utc(NaiveDateTime::MIN, sp);
    }
}
