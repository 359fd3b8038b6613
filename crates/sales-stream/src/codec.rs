//! The bytes of a stream record: one UTF-8 JSON event per record.

use std::borrow::Cow;
use std::str::FromStr;

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{SalesEvent, SalesEventRef};

/// Why a stream record is not a sales event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The record is not a JSON sales event (bad JSON, a missing field or a wrong type).
    #[error("not a sales event: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes one event (a [`SalesEvent`] or a view of one) as the data of one stream record.
pub fn encode<'a>(event: impl Into<SalesEventRef<'a>>) -> Vec<u8> {
    let event = event.into();
    // Field names, an id, a time and numbers take under 250 bytes: with room for the text, the
    // buffer is allocated once instead of grown twice.
    let text = [
        &event.invoice_no,
        &event.stock_code,
        &event.country,
        &event.source,
    ];
    let optional = [&event.description, &event.customer_id];
    let capacity = 256
        + text.iter().map(|t| t.len()).sum::<usize>()
        + optional
            .iter()
            .map(|t| t.as_ref().map_or(0, |t| t.len()))
            .sum::<usize>();
    let mut out = Vec::with_capacity(capacity);
    encode_into(event, &mut out);
    out
}

/// Appends the encoding of `event` to `out`, reusing its allocation.
pub fn encode_into<'a>(event: impl Into<SalesEventRef<'a>>, out: &mut Vec<u8>) {
    out.clear();
    // Writing to a Vec cannot fail, and an event always serialises.
    let _ = serde_json::to_writer(&mut *out, &event.into());
}

/// Decodes the data of one plain stream record.
pub fn decode(data: &[u8]) -> Result<SalesEvent, DecodeError> {
    Ok(decode_ref(data)?.into_owned())
}

/// Decodes the data of one plain stream record into a view of it: text fields point into
/// `data` unless the JSON escaped them.
pub fn decode_ref(data: &[u8]) -> Result<SalesEventRef<'_>, DecodeError> {
    if data.is_empty() {
        return Err(DecodeError::Empty);
    }
    match decode_as_written(data) {
        Some(event) => Ok(event),
        None => Ok(serde_json::from_slice(data)?),
    }
}

/// Reads an event in exactly the layout [`encode`] writes: the fields in declaration order, no
/// whitespace, no escapes, nothing after the closing brace. That is nearly every record, and
/// reading it directly costs a third of what serde's field-by-field matching does (JSON decoding
/// was a third of the consumer's batch step). Any other input (another order, whitespace, an
/// escape, an unknown field, a number where text goes) is `None`, and serde_json reads it (or
/// says why it cannot): for every record this reads, serde_json reads the same event (property
/// tests hold them to it).
fn decode_as_written(data: &[u8]) -> Option<SalesEventRef<'_>> {
    // One pass over the whole record for what `encode` never writes (an escape, and the control
    // characters JSON allows only escaped), and one UTF-8 check: every field is then text
    // sliced at quotes. Written without short-circuits, the scan is a few vector instructions.
    let unwritten = data
        .iter()
        .fold(false, |found, &b| found | (b == b'\\') | (b < 0x20));
    if unwritten {
        return None;
    }
    let mut json = Written {
        data: std::str::from_utf8(data).ok()?,
    };
    json.literal(r#"{"event_id":"#)?;
    let event_id = Uuid::try_parse(json.text()?).ok()?;
    json.literal(r#","event_time":"#)?;
    let event_time = crate::time::parse(json.text()?).ok()?;
    json.literal(r#","invoice_no":"#)?;
    let invoice_no = json.text()?;
    json.literal(r#","stock_code":"#)?;
    let stock_code = json.text()?;
    json.literal(r#","description":"#)?;
    let description = json.optional_text()?;
    json.literal(r#","quantity":"#)?;
    let quantity = json.integer()?;
    json.literal(r#","unit_price":"#)?;
    let unit_price = Decimal::from_str(json.text()?).ok()?;
    json.literal(r#","customer_id":"#)?;
    let customer_id = json.optional_text()?;
    json.literal(r#","country":"#)?;
    let country = json.text()?;
    json.literal(r#","source":"#)?;
    let source = json.text()?;
    json.literal("}")?;
    json.data.is_empty().then_some(SalesEventRef {
        event_id,
        event_time,
        invoice_no: Cow::Borrowed(invoice_no),
        stock_code: Cow::Borrowed(stock_code),
        description: description.map(Cow::Borrowed),
        quantity,
        unit_price,
        customer_id: customer_id.map(Cow::Borrowed),
        country: Cow::Borrowed(country),
        source: Cow::Borrowed(source),
    })
}

/// What is left of a record being read by [`decode_as_written`].
struct Written<'a> {
    data: &'a str,
}

impl<'a> Written<'a> {
    fn literal(&mut self, expected: &str) -> Option<()> {
        self.data = self.data.strip_prefix(expected)?;
        Some(())
    }

    /// A string up to its closing quote (the record holds no escapes: checked first).
    fn text(&mut self) -> Option<&'a str> {
        self.literal("\"")?;
        let end = memchr::memchr(b'"', self.data.as_bytes())?;
        // The quote is ASCII: `end` and `end + 1` are character boundaries.
        let text = &self.data[..end];
        self.data = &self.data[end + 1..];
        Some(text)
    }

    fn optional_text(&mut self) -> Option<Option<&'a str>> {
        match self.literal("null") {
            Some(()) => Some(None),
            None => self.text().map(Some),
        }
    }

    /// An integer as JSON writes one: `-?(0|[1-9][0-9]*)`, within `i64`.
    fn integer(&mut self) -> Option<i64> {
        let bytes = self.data.as_bytes();
        let sign = usize::from(bytes.first() == Some(&b'-'));
        let digits = bytes[sign..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let leading_zero = digits > 1 && bytes[sign] == b'0';
        // serde_json reads `-0` as the float -0.0, which is no i64: it gives the error.
        let negative_zero = sign == 1 && bytes.get(1) == Some(&b'0');
        if digits == 0 || leading_zero || negative_zero {
            return None;
        }
        let (number, rest) = self.data.split_at(sign + digits);
        self.data = rest;
        number.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_id;
    use chrono::NaiveDate;
    use proptest::prelude::*;

    fn event() -> SalesEvent {
        SalesEvent {
            event_id: event_id("online-retail.csv", 2),
            event_time: NaiveDate::from_ymd_opt(2010, 12, 1)
                .and_then(|d| d.and_hms_opt(8, 26, 0))
                .expect("valid time"),
            invoice_no: "C536379".into(),
            stock_code: "85123A".into(),
            description: None,
            quantity: -6,
            unit_price: Decimal::from_str("2.550").expect("valid"),
            customer_id: None,
            country: "United Kingdom".into(),
            source: "online-retail.csv:2".into(),
        }
    }

    #[test]
    fn round_trips() {
        let original = event();
        let encoded = encode(&original);
        let decoded = decode(&encoded).expect("decodes");
        assert_eq!(decoded, original);
        let view = decode_ref(&encoded).expect("decodes");
        assert_eq!(view, original.as_ref());
        assert!(
            matches!(view.country, std::borrow::Cow::Borrowed(_)),
            "text without escapes is borrowed"
        );
        let mut buffer = vec![1, 2, 3];
        encode_into(&original, &mut buffer);
        assert_eq!(buffer, encode(&original));
    }

    #[test]
    fn wire_format_matches_the_contract() {
        let json: serde_json::Value = serde_json::from_slice(&encode(&event())).expect("json");
        assert_eq!(json["event_time"], "2010-12-01T08:26:00");
        assert_eq!(json["unit_price"], "2.550", "money is a decimal string");
        assert_eq!(json["quantity"], -6);
        assert_eq!(json["customer_id"], serde_json::Value::Null);
        assert_eq!(json["stock_code"], "85123A");
    }

    #[test]
    fn accepts_the_documented_example() {
        let text = r#"{"event_id":"2d0c8af2-1111-5222-8333-444455556666","event_time":"2010-12-01T08:26:00","invoice_no":"536365",
 "stock_code":"85123A","description":"WHITE HANGING HEART T-LIGHT HOLDER","quantity":6,
 "unit_price":"2.55","customer_id":"17850","country":"United Kingdom","source":"online-retail.csv:2"}"#;
        let event = decode(text.as_bytes()).expect("decodes");
        assert_eq!(event.unit_price, Decimal::from_str("2.55").expect("valid"));
        assert_eq!(event.quantity, 6);
    }

    #[test]
    fn the_written_layout_is_read_directly_and_any_other_through_serde() {
        let encoded = encode(&event());
        assert_eq!(decode_as_written(&encoded), Some(event().as_ref()));
        let spaced = String::from_utf8(encoded.clone())
            .expect("UTF-8")
            .replace(",\"", ", \"");
        assert_eq!(decode_as_written(spaced.as_bytes()), None, "whitespace");
        assert_eq!(
            decode_ref(spaced.as_bytes()).expect("JSON"),
            event().as_ref()
        );
        let mut escaped = event();
        escaped.country = "Côte d'Ivoire \"CI\"".into();
        assert_eq!(decode_as_written(&encode(&escaped)), None, "an escape");
        assert_eq!(decode(&encode(&escaped)).expect("JSON"), escaped);
        for (from, to) in [
            ("\"quantity\":-6", "\"quantity\":-06"),
            ("\"quantity\":-6", "\"quantity\":-0"),
            ("\"quantity\":-6", "\"quantity\":-6.0"),
            ("\"quantity\":-6", "\"quantity\":99999999999999999999"),
            ("\"unit_price\":\"2.550\"", "\"unit_price\":2.55"),
        ] {
            let text = String::from_utf8(encoded.clone())
                .expect("UTF-8")
                .replace(from, to);
            assert_eq!(decode_as_written(text.as_bytes()), None, "{to}");
            assert!(decode_ref(text.as_bytes()).is_err(), "{to}");
        }
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof!["[A-Za-z0-9 ]{1,12}", "\\PC{0,8}", ".{0,6}"]
    }

    fn any_event() -> impl Strategy<Value = SalesEvent> {
        (
            (
                any::<u128>(),
                -62_000_000_000_i64..200_000_000_000,
                0_u32..2_000_000_000,
            ),
            (text(), text(), prop::option::of(text())),
            (any::<i64>(), any::<i64>(), 0_u32..=28),
            (prop::option::of(text()), text(), text()),
        )
            .prop_map(
                |(
                    (id, seconds, nanos),
                    (invoice_no, stock_code, description),
                    (quantity, units, scale),
                    (customer_id, country, source),
                )| SalesEvent {
                    event_id: Uuid::from_u128(id),
                    event_time: chrono::DateTime::from_timestamp(seconds, nanos % 1_000_000_000)
                        .expect("in range")
                        .naive_utc(),
                    invoice_no,
                    stock_code,
                    description,
                    quantity,
                    unit_price: Decimal::from_i128_with_scale(i128::from(units), scale),
                    customer_id,
                    country,
                    source,
                },
            )
    }

    proptest! {
        #[test]
        fn both_readers_agree_on_any_event(event in any_event()) {
            let encoded = encode(&event);
            let serde: SalesEventRef = serde_json::from_slice(&encoded).expect("serde reads it");
            prop_assert_eq!(&serde, &event.as_ref());
            if let Some(direct) = decode_as_written(&encoded) {
                prop_assert_eq!(direct, serde);
            } else {
                let text = String::from_utf8(encoded).expect("UTF-8");
                prop_assert!(text.contains('\\'), "only an escape sends it to serde: {}", text);
            }
        }

        #[test]
        fn both_readers_agree_on_damaged_records(
            event in any_event(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0_u8..3), 1..4),
        ) {
            let mut data = encode(&event);
            for (at, byte, kind) in edits {
                let at = at.index(data.len() + 1);
                match kind {
                    0 if at < data.len() => data[at] = byte,
                    1 => data.insert(at, byte),
                    _ => data.truncate(at),
                }
            }
            if let Some(direct) = decode_as_written(&data) {
                let serde = serde_json::from_slice::<SalesEventRef>(&data);
                prop_assert_eq!(serde.ok(), Some(direct));
            }
        }
    }

    #[test]
    fn rejects_garbage_and_floats_for_money() {
        assert!(matches!(decode(b""), Err(DecodeError::Empty)));
        assert!(matches!(decode(b"\xff\xfe"), Err(DecodeError::Json(_))));
        let mut json: serde_json::Value = serde_json::from_slice(&encode(&event())).expect("json");
        json["quantity"] = serde_json::json!("six");
        assert!(decode(json.to_string().as_bytes()).is_err());
    }
}
