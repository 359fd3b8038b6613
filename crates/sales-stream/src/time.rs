//! `event_time` on the wire: `2010-12-01T08:26:00`, as chrono writes a `NaiveDateTime`, read and
//! written without chrono's general formatter for the one layout every event uses. Anything else
//! chrono accepts (fractions of a second, years beyond four digits) goes through chrono.

use std::borrow::Cow;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde::{Deserialize, Deserializer, Serializer};

/// Length of `YYYY-MM-DDTHH:MM:SS`.
const LAYOUT_LEN: usize = 19;

pub fn serialize<S: Serializer>(time: &NaiveDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0_u8; LAYOUT_LEN];
    match format(time, &mut buffer) {
        Some(text) => serializer.serialize_str(text),
        None => serializer.collect_str(&format_args!("{time:?}")),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveDateTime, D::Error> {
    let text = <Cow<'de, str>>::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// Writes `time` in the common layout; `None` if it needs more (a fraction, a year past 9999).
fn format<'a>(time: &NaiveDateTime, buffer: &'a mut [u8; LAYOUT_LEN]) -> Option<&'a str> {
    if time.nanosecond() != 0 || !(0..=9999).contains(&time.year()) {
        return None;
    }
    let digits = |out: &mut [u8], value: u32| {
        let mut value = value;
        for byte in out.iter_mut().rev() {
            *byte = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(&mut buffer[0..4], time.year() as u32);
    digits(&mut buffer[5..7], time.month());
    digits(&mut buffer[8..10], time.day());
    digits(&mut buffer[11..13], time.hour());
    digits(&mut buffer[14..16], time.minute());
    digits(&mut buffer[17..19], time.second());
    buffer[4] = b'-';
    buffer[7] = b'-';
    buffer[10] = b'T';
    buffer[13] = b':';
    buffer[16] = b':';
    std::str::from_utf8(buffer).ok()
}

/// Reads an event time: the common layout directly, anything else through chrono.
pub fn parse(text: &str) -> Result<NaiveDateTime, chrono::ParseError> {
    parse_layout(text.as_bytes()).map_or_else(|| NaiveDateTime::from_str(text), Ok)
}

fn parse_layout(bytes: &[u8]) -> Option<NaiveDateTime> {
    if bytes.len() != LAYOUT_LEN
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range].iter().try_fold(0_u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?.and_hms_opt(
        number(11..13)?,
        number(14..16)?,
        number(17..19)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_and_writes_what_chrono_does() {
        let time = NaiveDateTime::from_str("2010-12-01T08:26:05").expect("time");
        let mut buffer = [0; LAYOUT_LEN];
        assert_eq!(format(&time, &mut buffer), Some("2010-12-01T08:26:05"));
        assert_eq!(parse("2010-12-01T08:26:05"), Ok(time));
        // Not the common layout: chrono decides.
        let fraction = NaiveDateTime::from_str("2010-12-01T08:26:05.250").expect("time");
        assert_eq!(format(&fraction, &mut buffer), None);
        assert_eq!(parse("2010-12-01T08:26:05.250"), Ok(fraction));
        assert!(parse("2010-13-01T08:26:05").is_err());
        assert!(parse("2010-12-01T24:00:00").is_err());
        assert!(parse("2010-12-01 08:26:05x").is_err());
        assert!(parse("2010-1a-01T08:26:05").is_err());
    }

    proptest! {
        #[test]
        fn agrees_with_chrono(seconds in -62_000_000_000_i64..250_000_000_000, nanos in prop_oneof![Just(0_u32), 0..1_000_000_000_u32]) {
            let time = chrono::DateTime::from_timestamp(seconds, nanos).expect("in range").naive_utc();
            let chrono_text = format!("{time:?}");
            let mut buffer = [0; LAYOUT_LEN];
            if let Some(text) = format(&time, &mut buffer) {
                prop_assert_eq!(text, chrono_text.as_str());
            }
            prop_assert_eq!(parse(&chrono_text), Ok(time));
        }

        #[test]
        fn never_panics_on_text(text in "\\\\PC{0,25}") {
            let _ = parse(&text);
        }
    }
}
