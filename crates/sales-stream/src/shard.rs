//! Shard assignment as Kinesis does it: the MD5 of the partition key, read as a 128-bit
//! big-endian integer, falls into exactly one shard's hash key range.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A shard's id, in Kinesis' form `shardId-000000000000`.
pub type ShardId = String;

/// The 128-bit hash key of a partition key.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The inclusive range of hash keys one shard owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashKeyRange {
    #[serde(with = "u128_string")]
    pub starting_hash_key: u128,
    #[serde(with = "u128_string")]
    pub ending_hash_key: u128,
}

impl HashKeyRange {
    /// Splits the whole key space into `count` equal ranges, the last one taking the remainder,
    /// as `CreateStream` does for a new stream.
    pub fn split_evenly(count: u32) -> Vec<Self> {
        let count = u128::from(count.max(1));
        // floor(2^128 / count), computed without overflowing u128.
        let width = u128::MAX / count + u128::from(count > 1 && u128::MAX % count == count - 1);
        (0..count)
            .map(|index| Self {
                starting_hash_key: index * width,
                ending_hash_key: if index + 1 == count {
                    u128::MAX
                } else {
                    (index + 1) * width - 1
                },
            })
            .collect()
    }

    pub fn contains(&self, key: u128) -> bool {
        (self.starting_hash_key..=self.ending_hash_key).contains(&key)
    }
}

/// Kinesis writes hash keys as decimal strings; so does the stream's description file.
mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_is_md5_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn ranges_cover_the_key_space_without_gaps() {
        for count in [1, 2, 3, 4, 7, 64] {
            let ranges = HashKeyRange::split_evenly(count);
            assert_eq!(ranges.len(), count as usize);
            assert_eq!(ranges[0].starting_hash_key, 0);
            assert_eq!(ranges[ranges.len() - 1].ending_hash_key, u128::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].ending_hash_key + 1, pair[1].starting_hash_key);
            }
        }
        // The boundaries Kinesis gives a new 2-shard stream.
        let two = HashKeyRange::split_evenly(2);
        assert_eq!(
            two[0].ending_hash_key,
            170141183460469231731687303715884105727
        );
    }

    #[test]
    fn keys_spread_over_all_shards() {
        let ranges = HashKeyRange::split_evenly(4);
        let mut counts = [0_u32; 4];
        for i in 0..4_000 {
            let key = hash_key(&format!("event-{i}"));
            let shard = ranges
                .iter()
                .position(|r| r.contains(key))
                .expect("covered");
            counts[shard] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn serialises_keys_as_decimal_strings() {
        let json = serde_json::to_string(&HashKeyRange::split_evenly(1)[0]).expect("json");
        assert!(
            json.contains("\"340282366920938463463374607431768211455\""),
            "{json}"
        );
    }
}
