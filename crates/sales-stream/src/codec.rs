//! The bytes of a stream record: one UTF-8 JSON event per record.

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
    Ok(serde_json::from_slice(data)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_id;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;
    use std::str::FromStr;

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
    fn rejects_garbage_and_floats_for_money() {
        assert!(matches!(decode(b""), Err(DecodeError::Empty)));
        assert!(matches!(decode(b"\xff\xfe"), Err(DecodeError::Json(_))));
        let mut json: serde_json::Value = serde_json::from_slice(&encode(&event())).expect("json");
        json["quantity"] = serde_json::json!("six");
        assert!(decode(json.to_string().as_bytes()).is_err());
    }
}
