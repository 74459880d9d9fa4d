//! [`CalendarDate`]: the one calendar-date type of musubi. Every date read from a
//! document or from user input (`YYYY-MM-DD`), every day count of the care rules and every
//! Japanese era date printed goes through it, so they all follow one rule.

use std::fmt;
use std::str::FromStr;

/// The first year a date read from outside may have: 1868, the first year of 明治, so
/// every accepted date has a Japanese era.
pub const FIRST_YEAR: u16 = 1868;

/// A day of the (proleptic) Gregorian calendar, years 1 to 9999, written `YYYY-MM-DD`.
/// [`CalendarDate::parse`] accepts only real days from [`FIRST_YEAR`] on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalendarDate {
    year: u16,
    month: u8,
    day: u8,
}

/// Why a text is not a date. The messages never echo the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DateError {
    /// Not written `YYYY-MM-DD` with ASCII digits.
    #[error("日付は YYYY-MM-DD で入力してください")]
    Format,
    /// Written right, but no such day (month 13, February 30).
    #[error("実在しない日付です")]
    NoSuchDay,
    /// Before [`FIRST_YEAR`].
    #[error("1868年（明治元年）より前の日付は入力できません")]
    TooEarly,
}

/// Days of `month` (1–12) in `year`.
fn days_in_month(year: u16, month: u8) -> u8 {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    }
}

impl CalendarDate {
    /// 0001-01-01, the earliest date the type holds.
    pub const MIN: CalendarDate = CalendarDate {
        year: 1,
        month: 1,
        day: 1,
    };
    /// 9999-12-31, the latest date the type holds.
    pub const MAX: CalendarDate = CalendarDate {
        year: 9999,
        month: 12,
        day: 31,
    };

    /// The date `year-month-day`, if that day exists (years 1 to 9999).
    pub fn new(year: u16, month: u8, day: u8) -> Option<CalendarDate> {
        ((1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month))
        .then_some(CalendarDate { year, month, day })
    }

    /// Parses a date from a document or from user input: exactly `YYYY-MM-DD` in ASCII
    /// digits, a real day, from [`FIRST_YEAR`] on.
    pub fn parse(s: &str) -> Result<CalendarDate, DateError> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(DateError::Format);
        }
        let num = |r: std::ops::Range<usize>| -> Result<u16, DateError> {
            let part = s.get(r).ok_or(DateError::Format)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(DateError::Format);
            }
            part.parse().map_err(|_| DateError::Format)
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (Ok(month), Ok(day)) = (u8::try_from(month), u8::try_from(day)) else {
            return Err(DateError::NoSuchDay);
        };
        let date = CalendarDate::new(year, month, day).ok_or(DateError::NoSuchDay)?;
        if year < FIRST_YEAR {
            return Err(DateError::TooEarly);
        }
        Ok(date)
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1–12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, 1–31.
    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01, if its year is 1 to 9999.
    pub fn from_days_since_epoch(days: i64) -> Option<CalendarDate> {
        // Howard Hinnant's civil_from_days.
        let z = days.checked_add(719_468)?;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe.checked_add(era.checked_mul(400)?)? + i64::from(m <= 2);
        CalendarDate::new(
            u16::try_from(y).ok()?,
            u8::try_from(m).ok()?,
            u8::try_from(d).ok()?,
        )
    }

    /// The date `n` days later (earlier for a negative `n`), if its year is 1 to 9999.
    pub fn add_days(self, n: i64) -> Option<CalendarDate> {
        CalendarDate::from_days_since_epoch(self.days_since_epoch().checked_add(n)?)
    }

    /// The date as the Japanese era date forms print, e.g. 令和8年10月14日 (令和元年 for
    /// an era's first year); dates before 明治 in Gregorian years (1867年…).
    pub fn japanese_era(self) -> String {
        const ERAS: [(&str, (u16, u8, u8)); 5] = [
            ("令和", (2019, 5, 1)),
            ("平成", (1989, 1, 8)),
            ("昭和", (1926, 12, 25)),
            ("大正", (1912, 7, 30)),
            ("明治", (1868, 1, 25)),
        ];
        let (y, m, d) = (self.year, self.month, self.day);
        for (name, start) in ERAS {
            if (y, m, d) >= start {
                let n = y - start.0 + 1;
                let year = if n == 1 {
                    "元".to_owned()
                } else {
                    n.to_string()
                };
                return format!("{name}{year}年{m}月{d}日");
            }
        }
        format!("{y}年{m}月{d}日")
    }

    /// Full years from `self` (a birth date) to `on`; `None` if `on` is earlier.
    pub fn years_until(self, on: CalendarDate) -> Option<u16> {
        let mut age = on.year.checked_sub(self.year)?;
        if (on.month, on.day) < (self.month, self.day) {
            age = age.checked_sub(1)?;
        }
        Some(age)
    }
}

impl fmt::Display for CalendarDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for CalendarDate {
    type Err = DateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CalendarDate::parse(s)
    }
}

impl serde::Serialize for CalendarDate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CalendarDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        CalendarDate::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(s: &str) -> CalendarDate {
        CalendarDate::parse(s).unwrap()
    }

    #[test]
    fn parse_accepts_real_days_written_yyyy_mm_dd_only() {
        assert_eq!(date("2024-02-29").to_string(), "2024-02-29");
        assert_eq!(CalendarDate::parse("2023-02-29"), Err(DateError::NoSuchDay));
        assert_eq!(CalendarDate::parse("2023-13-01"), Err(DateError::NoSuchDay));
        assert_eq!(CalendarDate::parse("2023-04-00"), Err(DateError::NoSuchDay));
        assert_eq!(CalendarDate::parse("2023-1-01"), Err(DateError::Format));
        assert_eq!(
            CalendarDate::parse("２０２３-01-01"),
            Err(DateError::Format)
        );
        assert_eq!(CalendarDate::parse("2023-01-01 "), Err(DateError::Format));
        assert_eq!(CalendarDate::parse("+023-01-01"), Err(DateError::Format));
        assert_eq!(CalendarDate::parse("20230101"), Err(DateError::Format));
        assert_eq!(CalendarDate::parse("1867-12-31"), Err(DateError::TooEarly));
        assert!(CalendarDate::parse("1868-01-01").is_ok());
        assert!(CalendarDate::parse("1900-02-29").is_err());
        assert!(CalendarDate::parse("2000-02-29").is_ok());
    }

    #[test]
    fn day_numbers_match_known_days() {
        assert_eq!(date("1970-01-01").days_since_epoch(), 0);
        assert_eq!(
            date("2026-10-18").days_since_epoch() - date("2026-09-18").days_since_epoch(),
            30
        );
        assert_eq!(
            CalendarDate::from_days_since_epoch(19_723),
            Some(date("2024-01-01"))
        );
        assert_eq!(date("2024-12-31").add_days(1), Some(date("2025-01-01")));
        assert_eq!(CalendarDate::from_days_since_epoch(i64::MAX), None);
        assert_eq!(CalendarDate::from_days_since_epoch(i64::MIN), None);
    }

    #[test]
    fn era_dates_and_ages() {
        assert_eq!(date("2026-10-14").japanese_era(), "令和8年10月14日");
        assert_eq!(date("2019-05-01").japanese_era(), "令和元年5月1日");
        assert_eq!(date("1868-01-24").japanese_era(), "1868年1月24日");
        assert_eq!(date("1944-05-12").years_until(date("2026-10-14")), Some(82));
        assert_eq!(date("1944-10-15").years_until(date("2026-10-14")), Some(81));
        assert_eq!(date("2030-01-01").years_until(date("2026-10-14")), None);
    }

    #[test]
    fn serde_is_the_text_and_refuses_non_dates() {
        let d: CalendarDate = serde_json::from_str("\"2026-04-01\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"2026-04-01\"");
        let e = serde_json::from_str::<CalendarDate>("\"2026-04-31\"").unwrap_err();
        assert!(!e.to_string().contains("2026"), "{e}");
    }

    proptest! {
        #[test]
        fn day_numbers_round_trip(days in -36_000i64..2_900_000) {
            let d = CalendarDate::from_days_since_epoch(days).unwrap();
            prop_assert_eq!(d.days_since_epoch(), days);
            prop_assert_eq!(CalendarDate::parse(&d.to_string()), Ok(d));
            prop_assert_eq!(d.add_days(1).map(|n| n > d), Some(true));
        }
    }
}
