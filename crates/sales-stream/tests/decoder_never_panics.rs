//! Property tests: no bytes on the stream make the record decoder panic. A record is whatever a
//! producer (ours or anyone's) put there, so every input must end in an event or an error.

use md5::{Digest, Md5};
use proptest::prelude::*;
use sales_stream::aggregation::KPL_MAGIC;
use sales_stream::compact::COMPACT_MAGIC;
use sales_stream::{
    CompactBlock, Compressor, Origin, Payload, SalesEvent, codec, event_id, unpack,
};

/// `magic | body | MD5(body)`: a well-framed KPL record around arbitrary protobuf bytes, so the
/// cases reach the protobuf decoder instead of stopping at the digest check.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut record = KPL_MAGIC.to_vec();
    record.extend_from_slice(body);
    record.extend_from_slice(&Md5::digest(body));
    record
}

fn decode_everything(data: &[u8]) {
    match unpack(data) {
        Ok(Payload::Single(data)) => {
            let _ = codec::decode(data);
        }
        Ok(Payload::Aggregated(users)) => {
            for user in users {
                let _ = codec::decode(&user.data);
            }
        }
        Ok(Payload::Compact(events)) => {
            for i in 0..events.len() {
                let _ = events.event(i).validate();
            }
        }
        Err(_) => {}
    }
}

/// The body of a valid compact record of a few events, to damage.
fn compact_body() -> Vec<u8> {
    let mut block = CompactBlock::new();
    for line in 2..6 {
        let event = SalesEvent {
            event_id: event_id("t.csv", line),
            event_time: chrono::DateTime::from_timestamp(1_291_000_000 + line as i64, 0)
                .expect("time")
                .naive_utc(),
            invoice_no: format!("{}", 536_000 + line / 2),
            stock_code: "85123A".into(),
            description: (line % 2 == 0).then(|| "MUG".into()),
            quantity: line as i64 - 4,
            unit_price: rust_decimal::Decimal::new(255, 2),
            customer_id: None,
            country: "France".into(),
            source: format!("t.csv:{line}"),
        };
        let origin = Origin {
            name: "t.csv",
            id: "t.csv",
            line,
        };
        block.push(&event, origin).expect("derived");
    }
    let record = block.finish(&mut Compressor::new());
    zstd::decode_all(&record[COMPACT_MAGIC.len()..]).expect("zstd")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2_048)) {
        decode_everything(&data);
    }

    #[test]
    fn framed_kpl_records(body in proptest::collection::vec(any::<u8>(), 0..1_024)) {
        decode_everything(&framed(&body));
    }

    #[test]
    fn zstd_frames_of_kpl_records(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let compressed = zstd::encode_all(framed(&body).as_slice(), 1).expect("compresses");
        decode_everything(&compressed);
        // A truncated frame too.
        decode_everything(&compressed[..compressed.len() / 2]);
    }

    #[test]
    fn damaged_compact_records(
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = compact_body();
        for (at, byte) in damage {
            let at = at.index(body.len());
            body[at] = byte;
        }
        let mut record = COMPACT_MAGIC.to_vec();
        record.extend(zstd::encode_all(body.as_slice(), 1).expect("compresses"));
        decode_everything(&record);
        let mut cut_body = COMPACT_MAGIC.to_vec();
        cut_body.extend(zstd::encode_all(&body[..cut.index(body.len())], 1).expect("compresses"));
        decode_everything(&cut_body);
    }

    #[test]
    fn json_like_event_text(text in r#"\{("[a-z_]{1,12}":("[^"]{0,20}"|-?[0-9]{1,25}(\.[0-9]{0,5})?|null|true),?){0,12}\}"#) {
        let _ = codec::decode(text.as_bytes());
    }
}
