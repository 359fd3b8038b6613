//! The sales event: one sales line, as the producer sends it and the consumer accepts it.

use std::borrow::Cow;

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use uuid::Uuid;

/// Namespace of the UUID v5 event ids. Fixed forever: changing it changes every id, and a
/// re-streamed file would no longer be recognised as a repeat.
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d3e_8a4b_4c5d_9e6f_7a8b_9c0d_1e2f);

/// Money has at most this many decimal places: the lake stores prices as `decimal(18,3)`.
pub const MAX_PRICE_SCALE: u32 = 3;

/// Largest absolute amount a `decimal(18,3)` column holds, in thousandths: the bound of a unit
/// price and of one line's `quantity × unit_price`. Sums of amounts are `decimal(38,3)` in the
/// lake, so no number of events a day could carry overflows them.
const MAX_DECIMAL_18_3_UNSCALED: i128 = 999_999_999_999_999_999;

/// Largest absolute quantity of one sales line. Quantities are summed into `bigint` columns; with
/// this bound it would take over nine billion lines of one product on one day to overflow one.
/// Real exports stay below 100,000.
pub const MAX_QUANTITY: i64 = 1_000_000_000;

/// The deterministic id of the sales line at `line` of the source `source_id`.
///
/// Streaming the same file twice yields the same ids, which is what lets the consumer count it once.
pub fn event_id(source_id: &str, line: u64) -> Uuid {
    EventIds::new(source_id).id(line)
}

/// The ids of one source's lines ([`event_id`]), with the hash of what they share (namespace,
/// source id, `:`) taken once: a compact record's reader derives thousands from one source.
#[derive(Clone)]
pub struct EventIds {
    source_id: String,
    /// SHA-1 over the namespace, the source id and `:`. `Uuid::new_v5` with a SHA-1 that uses
    /// the CPU's SHA instructions: the producer derives an id per row and a compact record's
    /// reader one per event, so this is on both hot paths.
    prefix: Sha1,
}

impl EventIds {
    pub fn new(source_id: &str) -> Self {
        let prefix = Sha1::new()
            .chain_update(EVENT_ID_NAMESPACE.as_bytes())
            .chain_update(source_id.as_bytes())
            .chain_update(b":");
        Self {
            source_id: source_id.to_owned(),
            prefix,
        }
    }

    /// The id of the line at `line`.
    pub fn id(&self, line: u64) -> Uuid {
        let digest = self
            .prefix
            .clone()
            .chain_update(itoa::Buffer::new().format(line).as_bytes())
            .finalize();
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_sha1_bytes(bytes).into_uuid()
    }
}

impl PartialEq for EventIds {
    fn eq(&self, other: &Self) -> bool {
        self.source_id == other.source_id
    }
}

impl Eq for EventIds {}

impl std::fmt::Debug for EventIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EventIds").field(&self.source_id).finish()
    }
}

/// The `source` of the sales line at `line` of the input named `name`: `name:line`. The
/// producer writes it into every event, and a compact record's reader derives it again.
pub fn event_source(name: &str, line: u64) -> String {
    let mut source = String::new();
    write_event_source(&mut source, name, line);
    source
}

/// [`event_source`] written into `source`, replacing what it held (no allocation once it has
/// room: a compact record's reader writes one per event).
pub fn write_event_source(source: &mut String, name: &str, line: u64) {
    let mut buffer = itoa::Buffer::new();
    let line = buffer.format(line);
    source.clear();
    source.reserve(name.len() + 1 + line.len());
    source.push_str(name);
    source.push(':');
    source.push_str(line);
}

/// One sales line on the stream. Field names and formats are the wire contract (DESIGN.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesEvent {
    pub event_id: Uuid,
    /// Local time of the sale; the source data has no time zone.
    #[serde(with = "crate::time")]
    pub event_time: NaiveDateTime,
    pub invoice_no: String,
    pub stock_code: String,
    pub description: Option<String>,
    pub quantity: i64,
    /// A decimal string on the wire: money is never a float.
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
    pub customer_id: Option<String>,
    pub country: String,
    /// Where the line came from, `file-name:line`.
    pub source: String,
}

/// Why an event is not a valid sales line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A required text field is empty.
    #[error("empty {0}")]
    EmptyField(&'static str),
    /// Prices are never negative; refunds are negative quantities.
    #[error("negative unit price {0}")]
    NegativePrice(Decimal),
    /// The lake keeps money as `decimal(18,3)`; more places would be rounded, so it is refused.
    #[error("unit price {0} has more than {MAX_PRICE_SCALE} decimal places")]
    PriceTooPrecise(Decimal),
    /// The unit price does not fit `decimal(18,3)`.
    #[error("unit price {0} is beyond 999999999999999.999")]
    PriceOutOfRange(Decimal),
    /// The quantity is beyond ±[`MAX_QUANTITY`].
    #[error("quantity {0} is beyond ±{MAX_QUANTITY}")]
    QuantityOutOfRange(i64),
    /// `quantity × unit_price` does not fit `decimal(18,3)`.
    #[error("amount {quantity} × {unit_price} does not fit decimal(18,3)")]
    AmountOutOfRange { quantity: i64, unit_price: Decimal },
}

/// A sales event borrowed from the bytes it was decoded from: the same fields as [`SalesEvent`],
/// with text that points into the record wherever the JSON needed no unescaping. The consumer
/// decodes into this, so a batch of events costs no allocation per field, and the producer
/// parses a row into one that borrows the row's text. It serialises as [`SalesEvent`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesEventRef<'a> {
    pub event_id: Uuid,
    #[serde(with = "crate::time")]
    pub event_time: NaiveDateTime,
    #[serde(borrow)]
    pub invoice_no: Cow<'a, str>,
    #[serde(borrow)]
    pub stock_code: Cow<'a, str>,
    #[serde(borrow)]
    pub description: Option<Cow<'a, str>>,
    pub quantity: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
    #[serde(borrow)]
    pub customer_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub country: Cow<'a, str>,
    #[serde(borrow)]
    pub source: Cow<'a, str>,
}

impl<'a> From<&'a SalesEvent> for SalesEventRef<'a> {
    fn from(event: &'a SalesEvent) -> Self {
        event.as_ref()
    }
}

impl<'a> From<&'a SalesEventRef<'_>> for SalesEventRef<'a> {
    /// A view of a view: every text borrowed, nothing copied.
    fn from(event: &'a SalesEventRef<'_>) -> Self {
        SalesEventRef {
            event_id: event.event_id,
            event_time: event.event_time,
            invoice_no: Cow::Borrowed(&event.invoice_no),
            stock_code: Cow::Borrowed(&event.stock_code),
            description: event.description.as_deref().map(Cow::Borrowed),
            quantity: event.quantity,
            unit_price: event.unit_price,
            customer_id: event.customer_id.as_deref().map(Cow::Borrowed),
            country: Cow::Borrowed(&event.country),
            source: Cow::Borrowed(&event.source),
        }
    }
}

impl SalesEvent {
    /// The event as a view, for code that reads decoded and owned events alike.
    pub fn as_ref(&self) -> SalesEventRef<'_> {
        SalesEventRef {
            event_id: self.event_id,
            event_time: self.event_time,
            invoice_no: Cow::Borrowed(&self.invoice_no),
            stock_code: Cow::Borrowed(&self.stock_code),
            description: self.description.as_deref().map(Cow::Borrowed),
            quantity: self.quantity,
            unit_price: self.unit_price,
            customer_id: self.customer_id.as_deref().map(Cow::Borrowed),
            country: Cow::Borrowed(&self.country),
            source: Cow::Borrowed(&self.source),
        }
    }

    /// Checks the rules every accepted event obeys, whoever produced it.
    pub fn validate(&self) -> Result<(), EventError> {
        self.as_ref().validate()
    }

    /// See [`SalesEventRef::unit_price_thousandths`].
    pub fn unit_price_thousandths(&self) -> Option<i128> {
        self.as_ref().unit_price_thousandths()
    }

    /// See [`SalesEventRef::amount_thousandths`].
    pub fn amount_thousandths(&self) -> Option<i128> {
        self.as_ref().amount_thousandths()
    }
}

impl SalesEventRef<'_> {
    /// The event with its text copied out of the record.
    pub fn into_owned(self) -> SalesEvent {
        SalesEvent {
            event_id: self.event_id,
            event_time: self.event_time,
            invoice_no: self.invoice_no.into_owned(),
            stock_code: self.stock_code.into_owned(),
            description: self.description.map(Cow::into_owned),
            quantity: self.quantity,
            unit_price: self.unit_price,
            customer_id: self.customer_id.map(Cow::into_owned),
            country: self.country.into_owned(),
            source: self.source.into_owned(),
        }
    }

    /// Checks the rules every accepted event obeys, whoever produced it.
    pub fn validate(&self) -> Result<(), EventError> {
        for (name, value) in [
            ("invoice_no", &self.invoice_no),
            ("stock_code", &self.stock_code),
            ("country", &self.country),
        ] {
            if value.trim().is_empty() {
                return Err(EventError::EmptyField(name));
            }
        }
        if self.unit_price.is_sign_negative() && !self.unit_price.is_zero() {
            return Err(EventError::NegativePrice(self.unit_price));
        }
        // Trailing zeros do not count (`1.2500` is `1.25`); most prices need no normalizing.
        if self.unit_price.scale() > MAX_PRICE_SCALE
            && self.unit_price.normalize().scale() > MAX_PRICE_SCALE
        {
            return Err(EventError::PriceTooPrecise(self.unit_price));
        }
        let price = self
            .unit_price_thousandths()
            .filter(|&price| price <= MAX_DECIMAL_18_3_UNSCALED)
            .ok_or(EventError::PriceOutOfRange(self.unit_price))?;
        if self.quantity.unsigned_abs() > MAX_QUANTITY.unsigned_abs() {
            return Err(EventError::QuantityOutOfRange(self.quantity));
        }
        // The amount of the price just checked: not computed from the decimal again.
        price
            .checked_mul(i128::from(self.quantity))
            .filter(|amount| amount.abs() <= MAX_DECIMAL_18_3_UNSCALED)
            .ok_or(EventError::AmountOutOfRange {
                quantity: self.quantity,
                unit_price: self.unit_price,
            })?;
        Ok(())
    }

    /// The unit price in thousandths, exactly (`2.55` is `2550`). `None` if it has more than
    /// three decimal places or does not fit.
    pub fn unit_price_thousandths(&self) -> Option<i128> {
        let mut price = self.unit_price;
        if price.scale() > MAX_PRICE_SCALE {
            // Drop trailing zeros only where they matter: normalizing costs a division a digit.
            price = price.normalize();
            if price.scale() > MAX_PRICE_SCALE {
                return None;
            }
        }
        let factor = 10_i128.pow(MAX_PRICE_SCALE - price.scale());
        price.mantissa().checked_mul(factor)
    }

    /// `quantity × unit_price` in thousandths, exactly.
    pub fn amount_thousandths(&self) -> Option<i128> {
        self.unit_price_thousandths()?
            .checked_mul(i128::from(self.quantity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    pub(crate) fn sample() -> SalesEvent {
        SalesEvent {
            event_id: event_id("online-retail.csv", 2),
            event_time: NaiveDateTime::from_str("2010-12-01T08:26:00").expect("valid time"),
            invoice_no: "536365".into(),
            stock_code: "85123A".into(),
            description: Some("WHITE HANGING HEART T-LIGHT HOLDER".into()),
            quantity: 6,
            unit_price: Decimal::from_str("2.55").expect("valid price"),
            customer_id: Some("17850".into()),
            country: "United Kingdom".into(),
            source: "online-retail.csv:2".into(),
        }
    }

    #[test]
    fn event_ids_are_deterministic_and_distinct_per_line() {
        assert_eq!(event_id("a.csv", 2), event_id("a.csv", 2));
        assert_ne!(event_id("a.csv", 2), event_id("a.csv", 3));
        assert_ne!(event_id("a.csv", 2), event_id("b.csv", 2));
        assert_eq!(event_id("a.csv", 2).get_version_num(), 5);
        for (source, line) in [("a.csv", 2), ("sales.csv#0123abcd", u64::MAX), ("", 0)] {
            let name = format!("{source}:{line}");
            assert_eq!(
                event_id(source, line),
                Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes()),
                "the id is the standard UUID v5 of `source:line`"
            );
        }
    }

    #[test]
    fn amounts_are_exact_thousandths() {
        let mut event = sample();
        assert_eq!(event.unit_price_thousandths(), Some(2_550));
        assert_eq!(event.amount_thousandths(), Some(15_300));
        event.quantity = -12;
        event.unit_price = Decimal::from_str("0.125").expect("valid");
        assert_eq!(event.amount_thousandths(), Some(-1_500));
        // Trailing zeros beyond three places are not extra precision.
        event.unit_price = Decimal::from_str("1.2500").expect("valid");
        assert_eq!(event.unit_price_thousandths(), Some(1_250));
        assert_eq!(event.validate(), Ok(()));
    }

    #[test]
    fn validation_rejects_what_the_lake_cannot_hold() {
        let mut event = sample();
        event.unit_price = Decimal::from_str("-1.00").expect("valid");
        assert!(matches!(
            event.validate(),
            Err(EventError::NegativePrice(_))
        ));
        event.unit_price = Decimal::from_str("1.0001").expect("valid");
        assert!(matches!(
            event.validate(),
            Err(EventError::PriceTooPrecise(_))
        ));
        event = sample();
        event.country = "  ".into();
        assert_eq!(event.validate(), Err(EventError::EmptyField("country")));
        event = sample();
        event.quantity = MAX_QUANTITY;
        event.unit_price = Decimal::from(10_000_000_000_i64);
        assert!(matches!(
            event.validate(),
            Err(EventError::AmountOutOfRange { .. })
        ));
        // A price the column cannot hold, even on a line whose amount is 0.
        event = sample();
        event.quantity = 0;
        event.unit_price = Decimal::from(1_000_000_000_000_000_i64);
        assert_eq!(
            event.validate(),
            Err(EventError::PriceOutOfRange(event.unit_price))
        );
        event.unit_price = Decimal::from_str("999999999999999.999").expect("valid");
        assert_eq!(event.validate(), Ok(()), "the largest price that fits");
        // Quantities whose sums would overflow a bigint.
        event = sample();
        event.unit_price = Decimal::ZERO;
        event.quantity = i64::MIN;
        assert_eq!(
            event.validate(),
            Err(EventError::QuantityOutOfRange(i64::MIN))
        );
        event.quantity = -MAX_QUANTITY;
        assert_eq!(event.validate(), Ok(()));
        event = sample();
        event.unit_price = Decimal::ZERO;
        assert_eq!(event.validate(), Ok(()));
    }
}
