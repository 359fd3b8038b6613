//! Sale timestamps. They carry no time zone and come in the forms real exports use, mixed
//! within one file: `12/1/2010 8:26`, `12/1/10 8:26`, `12-01-11 08:33` (month first) and
//! `2010-12-01 08:26:00`. An explicit `strftime` format overrides the detection.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// Parses sale timestamps.
#[derive(Debug, Clone, Default)]
pub struct DateParser {
    format: Option<String>,
}

impl DateParser {
    /// With `format` (chrono `strftime` syntax), only that format is accepted.
    pub fn new(format: Option<String>) -> Self {
        Self { format }
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
            None => parse_detected(text),
        }
    }
}

fn number(text: &str, max_digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Two-digit years pivot as POSIX `strptime` does: 69-99 are 19xx, 00-68 are 20xx.
fn full_year(text: &str) -> Option<i32> {
    let year = i32::try_from(number(text, 4)?).ok()?;
    match text.len() {
        2 if year >= 69 => Some(1900 + year),
        2 => Some(2000 + year),
        4 => Some(year),
        _ => None,
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    let separator = if text.contains('/') { '/' } else { '-' };
    let mut parts = text.split(separator);
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    if a.len() == 4 {
        // ISO order: year-month-day.
        NaiveDate::from_ymd_opt(full_year(a)?, number(b, 2)?, number(c, 2)?)
    } else {
        // Month first, as the Online Retail exports are.
        NaiveDate::from_ymd_opt(full_year(c)?, number(a, 2)?, number(b, 2)?)
    }
}

fn parse_time(text: &str) -> Option<NaiveTime> {
    let mut parts = text.split(':');
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

fn parse_detected(text: &str) -> Option<NaiveDateTime> {
    let (date, time) = match text.split_once([' ', 'T']) {
        Some((date, time)) => (date, Some(time.trim())),
        None => (text, None),
    };
    let date = parse_date(date)?;
    let time = match time {
        Some(time) => parse_time(time)?,
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
}
