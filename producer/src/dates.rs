//! Sale timestamps. They carry no time zone and come in the forms real exports use, mixed
//! within one file: `12/1/2010 8:26`, `12/1/10 8:26`, `12-01-11 08:33` and
//! `2010-12-01 08:26:00`. Slashed and dashed dates are month first (as the Online Retail exports
//! are) or day first (as UK exports are): [`OrderDetector`] tells which from a file's dates. An
//! explicit `strftime` format overrides the detection.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// The order of day and month in slashed and dashed dates (ISO dates have their own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DateOrder {
    #[default]
    MonthFirst,
    DayFirst,
}

impl fmt::Display for DateOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MonthFirst => "month first",
            Self::DayFirst => "day first",
        })
    }
}

/// Why the order of a file's dates cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateOrderError {
    /// Some dates can only be day first and others only month first.
    #[error(
        "InvoiceDate holds dates that can only be day first ({day_first:?}, line {day_first_line}) \
         and dates that can only be month first ({month_first:?}, line {month_first_line}): \
         pass the one format with --date-format, e.g. --date-format '%d/%m/%Y %H:%M'"
    )]
    Mixed {
        day_first: String,
        day_first_line: u64,
        month_first: String,
        month_first_line: u64,
    },
}

/// Watches a file's dates for the one that settles their order: a first field above 12 can only
/// be a day, a second field above 12 only a day in the second place.
#[derive(Debug, Clone, Default)]
pub struct OrderDetector {
    day_first: Option<(String, u64)>,
    month_first: Option<(String, u64)>,
    /// Dates seen whose order matters (not ISO).
    ordered: u64,
}

/// What a file's dates said about their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectedOrder {
    pub order: DateOrder,
    /// Some dates needed an order and none settled it (every day was 12 or less): month first
    /// was assumed.
    pub ambiguous: bool,
}

impl OrderDetector {
    /// Looks at the date of data line `line`.
    pub fn observe(&mut self, text: &str, line: u64) {
        // Bytes, not `str` patterns: this runs on every line of the file before any is sent,
        // and `str`'s char searches were most of that pass.
        let text = text.trim();
        let date = text
            .as_bytes()
            .split(|&b| b == b' ' || b == b'T')
            .next()
            .unwrap_or_default();
        let separator = if date.contains(&b'/') { b'/' } else { b'-' };
        let mut parts = date.split(|&b| b == separator);
        let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
            return;
        };
        if a.len() == 4 {
            return; // ISO: year first.
        }
        let (Some(a), Some(b)) = (number(a, 2), number(b, 2)) else {
            return;
        };
        self.ordered += 1;
        if a > 12 && self.day_first.is_none() {
            self.day_first = Some((text.to_owned(), line));
        }
        if b > 12 && self.month_first.is_none() {
            self.month_first = Some((text.to_owned(), line));
        }
    }

    /// The order the dates seen so far say.
    pub fn verdict(&self) -> Result<DetectedOrder, DateOrderError> {
        match (&self.day_first, &self.month_first) {
            (Some((day_first, day_first_line)), Some((month_first, month_first_line))) => {
                Err(DateOrderError::Mixed {
                    day_first: day_first.clone(),
                    day_first_line: *day_first_line,
                    month_first: month_first.clone(),
                    month_first_line: *month_first_line,
                })
            }
            (Some(_), None) => Ok(DetectedOrder {
                order: DateOrder::DayFirst,
                ambiguous: false,
            }),
            (None, Some(_)) => Ok(DetectedOrder {
                order: DateOrder::MonthFirst,
                ambiguous: false,
            }),
            (None, None) => Ok(DetectedOrder {
                order: DateOrder::MonthFirst,
                ambiguous: self.ordered > 0,
            }),
        }
    }
}

/// Parses sale timestamps.
#[derive(Debug, Clone, Default)]
pub struct DateParser {
    format: Option<String>,
    order: DateOrder,
}

impl DateParser {
    /// With `format` (chrono `strftime` syntax), only that format is accepted.
    pub fn new(format: Option<String>) -> Self {
        Self {
            format,
            order: DateOrder::default(),
        }
    }

    /// Slashed and dashed dates in `order`.
    pub fn with_order(mut self, order: DateOrder) -> Self {
        self.order = order;
        self
    }

    pub fn order(&self) -> DateOrder {
        self.order
    }

    pub fn parse(&self, text: &str) -> Option<NaiveDateTime> {
        let text = text.trim();
        match &self.format {
            Some(format) => NaiveDateTime::parse_from_str(text, format)
                .ok()
                .or_else(|| {
                    NaiveDate::parse_from_str(text, format)
                        .ok()
                        .map(|d| d.and_time(NaiveTime::MIN))
                }),
            None => parse_detected(text, self.order),
        }
    }
}

/// A field of one to `max_digits` ASCII digits (at most 4: no overflow), as a number.
fn number(text: &[u8], max_digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits {
        return None;
    }
    text.iter().try_fold(0, |value, &b| {
        b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
    })
}

/// Two-digit years pivot as POSIX `strptime` does: 69-99 are 19xx, 00-68 are 20xx.
fn full_year(text: &[u8]) -> Option<i32> {
    let year = i32::try_from(number(text, 4)?).ok()?;
    match text.len() {
        2 if year >= 69 => Some(1900 + year),
        2 => Some(2000 + year),
        4 => Some(year),
        _ => None,
    }
}

/// The three fields of `text` split at `separator`; `None` for any other count. (Bytes, not
/// `str::split`: a timestamp is parsed for every row, and a `char` pattern is searched for as
/// UTF-8 where every separator here is one ASCII byte.)
fn three_fields(text: &[u8], separator: u8) -> Option<(&[u8], &[u8], &[u8])> {
    let mut parts = text.split(|&b| b == separator);
    let fields = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some(fields)
}

fn parse_date(text: &[u8], order: DateOrder) -> Option<NaiveDate> {
    let separator = if text.contains(&b'/') { b'/' } else { b'-' };
    let (a, b, c) = three_fields(text, separator)?;
    if a.len() == 4 {
        // ISO order: year-month-day.
        NaiveDate::from_ymd_opt(full_year(a)?, number(b, 2)?, number(c, 2)?)
    } else {
        let (month, day) = match order {
            DateOrder::MonthFirst => (a, b),
            DateOrder::DayFirst => (b, a),
        };
        NaiveDate::from_ymd_opt(full_year(c)?, number(month, 2)?, number(day, 2)?)
    }
}

fn parse_time(text: &[u8]) -> Option<NaiveTime> {
    let mut parts = text.split(|&b| b == b':');
    let hour = number(parts.next()?, 2)?;
    let minute = number(parts.next()?, 2)?;
    let second = match parts.next() {
        Some(s) => number(s, 2)?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    NaiveTime::from_hms_opt(hour, minute, second)
}

fn parse_detected(text: &str, order: DateOrder) -> Option<NaiveDateTime> {
    // Both are ASCII: `at` and `at + 1` are character boundaries.
    let (date, time) = match text.bytes().position(|b| b == b' ' || b == b'T') {
        Some(at) => (&text[..at], Some(text[at + 1..].trim())),
        None => (text, None),
    };
    let date = parse_date(date.as_bytes(), order)?;
    let time = match time {
        Some(time) => parse_time(time.as_bytes())?,
        None => NaiveTime::MIN,
    };
    Some(date.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, min, s))
            .expect("valid")
    }

    #[test]
    fn parses_every_documented_form() {
        let parser = DateParser::default();
        assert_eq!(
            parser.parse("12/1/2010 8:26"),
            Some(at(2010, 12, 1, 8, 26, 0))
        );
        assert_eq!(
            parser.parse("12/1/10 8:26"),
            Some(at(2010, 12, 1, 8, 26, 0))
        );
        assert_eq!(
            parser.parse("12-01-11 08:33"),
            Some(at(2011, 12, 1, 8, 33, 0))
        );
        assert_eq!(
            parser.parse("11/25/11 11:02"),
            Some(at(2011, 11, 25, 11, 2, 0))
        );
        assert_eq!(
            parser.parse("2010-12-01 08:26:00"),
            Some(at(2010, 12, 1, 8, 26, 0))
        );
        assert_eq!(
            parser.parse("2010-12-01T08:26:00"),
            Some(at(2010, 12, 1, 8, 26, 0))
        );
        assert_eq!(parser.parse(" 2011-01-02 "), Some(at(2011, 1, 2, 0, 0, 0)));
        assert_eq!(
            parser.parse("1/2/99 23:59"),
            Some(at(1999, 1, 2, 23, 59, 0))
        );
    }

    #[test]
    fn refuses_what_is_not_a_timestamp() {
        let parser = DateParser::default();
        for bad in [
            "",
            "yesterday",
            "13/1/2010 8:26",
            "2/30/2010 8:26",
            "12/1/2010 25:00",
            "12/1/2010 8:61",
            "12/1 8:26",
            "12/1/2010/5 8:26",
            "12/1/20100 8:26",
            "2010-12-01 08:26:00:00",
            "1/2/123 1:00",
        ] {
            assert_eq!(parser.parse(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Every form, either order, any time whose two-digit year reads back (1969-2068).
        #[test]
        fn reads_any_valid_timestamp_in_every_form(
            seconds in -31_536_000_i64..3_124_137_600,
            form in 0_usize..5,
            day_first: bool,
        ) {
            let time = chrono::DateTime::from_timestamp(seconds, 0).expect("in range").naive_utc();
            let ordered = |month: &str, day: &str, year: &str| {
                if day_first {
                    format!("{day}/{month}/{year}")
                } else {
                    format!("{month}/{day}/{year}")
                }
            };
            let format = match form {
                0 => "%Y-%m-%d %H:%M:%S".to_owned(),
                1 => "%Y-%m-%dT%H:%M:%S".to_owned(),
                2 => ordered("%m", "%d", "%Y") + " %H:%M:%S",
                3 => ordered("%-m", "%-d", "%Y") + " %-H:%M",
                _ => ordered("%m", "%d", "%y").replace('/', "-") + "  %H:%M:%S",
            };
            let text = time.format(&format).to_string();
            // Without seconds, the minute.
            let expected = if form == 3 {
                chrono::Timelike::with_second(&time, 0).expect("valid")
            } else {
                time
            };
            let order = if day_first { DateOrder::DayFirst } else { DateOrder::MonthFirst };
            let parsed = DateParser::default().with_order(order).parse(&text);
            proptest::prop_assert_eq!(parsed, Some(expected), "{}", text);
        }

        #[test]
        fn never_panics(text in "\\PC{0,24}|[0-9/: T-]{0,24}") {
            let _ = DateParser::default().parse(&text);
            let _ = DateParser::default().with_order(DateOrder::DayFirst).parse(&text);
        }
    }

    #[test]
    fn an_explicit_format_overrides_detection() {
        let parser = DateParser::new(Some("%d/%m/%Y %H:%M".into()));
        assert_eq!(
            parser.parse("01/12/2010 08:26"),
            Some(at(2010, 12, 1, 8, 26, 0))
        );
        assert_eq!(parser.parse("12/31/2010 08:26"), None);
        let dates_only = DateParser::new(Some("%Y%m%d".into()));
        assert_eq!(dates_only.parse("20101201"), Some(at(2010, 12, 1, 0, 0, 0)));
    }

    #[test]
    fn day_first_dates_are_read_day_first() {
        let parser = DateParser::default().with_order(DateOrder::DayFirst);
        assert_eq!(
            parser.parse("01/12/2010 08:26"),
            Some(at(2010, 12, 1, 8, 26, 0))
        );
        assert_eq!(
            parser.parse("25/12/10 9:00"),
            Some(at(2010, 12, 25, 9, 0, 0))
        );
        assert_eq!(
            parser.parse("2010-12-01 08:26:00"),
            Some(at(2010, 12, 1, 8, 26, 0))
        );
        assert_eq!(parser.parse("12/25/2010 9:00"), None);
    }

    #[test]
    fn the_first_field_above_12_settles_the_order() {
        let verdict = |dates: &[&str]| {
            let mut detector = OrderDetector::default();
            for (i, date) in dates.iter().enumerate() {
                detector.observe(date, i as u64 + 2);
            }
            detector.verdict()
        };
        let day_first = verdict(&["01/12/2010 8:26", "2010-12-13 10:00", "13/12/2010 9:00"]);
        assert_eq!(
            day_first,
            Ok(DetectedOrder {
                order: DateOrder::DayFirst,
                ambiguous: false
            })
        );
        let month_first = verdict(&["12/1/2010 8:26", "12-13-10 09:00"]);
        assert_eq!(month_first.map(|d| d.order), Ok(DateOrder::MonthFirst));
        let ambiguous = verdict(&["01/12/2010 8:26", "2010-12-31 10:00", "12/1/2010 9:00"]);
        assert_eq!(
            ambiguous,
            Ok(DetectedOrder {
                order: DateOrder::MonthFirst,
                ambiguous: true
            })
        );
        let mixed = verdict(&["13/12/2010 9:00", "12/14/2010 9:00"]).expect_err("mixed");
        assert!(mixed.to_string().contains("line 2") && mixed.to_string().contains("line 3"));
    }
}
