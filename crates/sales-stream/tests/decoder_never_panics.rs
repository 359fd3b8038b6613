//! Property tests: no bytes on the stream make the record decoder panic. A record is whatever a
//! producer (ours or anyone's) put there, so every input must end in an event or an error.

use md5::{Digest, Md5};
use proptest::prelude::*;
use sales_stream::aggregation::KPL_MAGIC;
use sales_stream::{Payload, codec, unpack};

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
        Err(_) => {}
    }
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
    fn json_like_event_text(text in r#"\{("[a-z_]{1,12}":("[^"]{0,20}"|-?[0-9]{1,25}(\.[0-9]{0,5})?|null|true),?){0,12}\}"#) {
        let _ = codec::decode(text.as_bytes());
    }
}
