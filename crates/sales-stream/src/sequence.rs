//! Kinesis sequence numbers: decimal strings of up to 128 digits, ordered as numbers.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A record's position in its shard. Kinesis' are 56-digit decimal strings, too long for any
/// integer type, so they are kept as text and compared as numbers: never as plain strings,
/// where `"9" > "10"`.
#[derive(Debug, Clone, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Parses a sequence number: one or more ASCII digits.
    pub fn parse(text: &str) -> Option<Self> {
        Self::canonical(text).map(|digits| Self(digits.to_owned()))
    }

    /// [`parse`](Self::parse), keeping `text`'s allocation when it is already canonical (no
    /// leading zeros, as Kinesis writes them); gives `text` back if it is not a sequence number.
    pub fn parse_owned(text: String) -> Result<Self, String> {
        match Self::canonical(&text) {
            Some(digits) if digits.len() == text.len() => Ok(Self(text)),
            Some(digits) => Ok(Self(digits.to_owned())),
            None => Err(text),
        }
    }

    /// `text` without its leading zeros, if it is one or more ASCII digits.
    fn canonical(text: &str) -> Option<&str> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = text.trim_start_matches('0');
        Some(if trimmed.is_empty() { "0" } else { trimmed })
    }

    pub fn from_u64(value: u64) -> Self {
        Self(value.to_string())
    }

    /// The value as a `u64`, when it fits (always, for the embedded stream).
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for SequenceNumber {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Both are stored without leading zeros, so the longer is the larger.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for SequenceNumber {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SequenceNumber {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse_owned(value).map_err(|value| format!("not a sequence number: {value:?}"))
    }
}

impl From<SequenceNumber> for String {
    fn from(value: SequenceNumber) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(text: &str) -> SequenceNumber {
        SequenceNumber::parse(text).expect("valid")
    }

    #[test]
    fn compares_as_numbers_not_strings() {
        assert!(seq("9") < seq("10"));
        assert!(
            seq("49590338271490256608559692538361571095921575989136588898")
                > seq("49590338271490256608559692538361571095921575989136588897")
        );
        assert!(seq("100000000000000000000000000000000000000000000000000000000") > seq("9"));
        assert_eq!(seq("007"), seq("7"));
        assert_eq!(seq("0").to_string(), "0");
    }

    #[test]
    fn refuses_non_digits() {
        for bad in ["", "-1", "1e5", " 1", "12a"] {
            assert!(SequenceNumber::parse(bad).is_none(), "{bad:?}");
            assert_eq!(SequenceNumber::parse_owned(bad.into()), Err(bad.into()));
        }
    }

    #[test]
    fn parsing_owned_text_gives_the_same_number() {
        for text in ["42", "007", "0", "000"] {
            let owned = SequenceNumber::parse_owned(text.into()).expect("digits");
            assert_eq!(owned.as_str(), seq(text).as_str(), "{text}");
        }
    }

    #[test]
    fn serialises_as_a_string() {
        let json = serde_json::to_string(&seq("42")).expect("json");
        assert_eq!(json, "\"42\"");
        let back: SequenceNumber = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, seq("42"));
        assert!(serde_json::from_str::<SequenceNumber>("\"x\"").is_err());
    }
}
