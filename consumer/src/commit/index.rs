//! The exact index of the event ids each shard committed: what makes "an id counted once is
//! never counted again" hold for ever, with no window of ids or of time.
//!
//! A re-sent event carries the same event time as the original, so it falls on the same sale
//! date. The index is therefore kept per (shard, sale date), as immutable segments of sorted ids
//! (`_state/<stream>/<shard>/ids/<date>/<generation>.ids`, 16 bytes per id). The shard's state
//! names each date's segments ([`Manifest`]), so a batch loads only the dates it touches. A
//! batch's new segments are written with its files and named in its intent: they are committed,
//! or removed, with them.
//!
//! Segments merge like a binary counter: a commit's new segment for a date absorbs the date's
//! newest segments while they hold no more ids than it, so a date has about log2(its batches)
//! segments and each id is rewritten about as often. A merged-away segment is removed after the
//! commit that replaced it.
//!
//! A shard made by a split or a merge also looks up its ancestors' segments for the date, so
//! dedupe holds across reshards. A date whose segments cannot be had (written before the index
//! existed, or removed by hand) is read from the lake's `sales_events` partition instead, which
//! holds every committed id, and the commit indexes it again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use hashbrown::HashSet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::layout::{SALES_EVENTS, id_segment, partition_dir};
use crate::core::writer::{WriterError, sales_events_ids};
use crate::lake::{Lake, LakeError};

/// The first bytes of a segment object: what it is, and the version of its layout.
const SEGMENT_MAGIC: [u8; 8] = *b"SLIDX\0\0\x01";
/// Bytes per id in a segment.
pub const ID_BYTES: usize = 16;
/// Ids a process keeps in memory between batches (32 MB), over every shard and date it reads; a
/// batch holds the segments of the dates it touches whatever this says.
pub const DEFAULT_CACHE_IDS: usize = 2_000_000;
/// Times the ids of a date are read from the lake again because a file went between listing and
/// reading (a compaction replaced it).
const MAX_LAKE_READS: usize = 5;

/// Why the index could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A segment object is not one this version wrote.
    #[error("id segment {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    /// The lake could not be read.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A `sales_events` file could not be read for its ids (a date read from the lake).
    #[error("{key}: {source}")]
    File { key: String, source: WriterError },
    /// The files of a date kept changing (compactions) while its ids were read from the lake.
    #[error("{dir} changed under each of {attempts} reads of its event ids; try again")]
    Unsettled { dir: String, attempts: usize },
}

/// One segment of a date, as a shard's state names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// The intent generation of the commit that wrote it (its name).
    pub generation: u64,
    /// How many ids it holds.
    pub ids: u64,
}

/// A shard's segments by sale date, oldest (and largest) first.
pub type Manifest = BTreeMap<NaiveDate, Vec<SegmentRef>>;

/// Sorted, distinct ids (each a UUID as a big-endian `u128`, so the order is the bytes' order).
pub type Ids = Arc<[u128]>;

/// A segment's bytes: the magic, then each id's 16 bytes in ascending order.
pub fn encode_segment(ids: &[u128]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SEGMENT_MAGIC.len() + ids.len() * ID_BYTES);
    bytes.extend_from_slice(&SEGMENT_MAGIC);
    for id in ids {
        bytes.extend_from_slice(&id.to_be_bytes());
    }
    bytes
}

/// Reads a segment, checking that it is whole and sorted.
pub fn decode_segment(key: &str, bytes: &[u8]) -> Result<Ids, IndexError> {
    let corrupt = |reason: String| IndexError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let body = bytes
        .strip_prefix(&SEGMENT_MAGIC)
        .ok_or_else(|| corrupt("not an id segment of this version".into()))?;
    if body.len() % ID_BYTES != 0 {
        return Err(corrupt(format!("{} bytes are not whole ids", body.len())));
    }
    let ids: Vec<u128> = body
        .chunks_exact(ID_BYTES)
        .map(|chunk| u128::from_be_bytes(chunk.try_into().unwrap_or_default()))
        .collect();
    if ids.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(corrupt("ids are not in ascending order".into()));
    }
    Ok(ids.into())
}

/// Two sorted, distinct id lists as one.
fn merge(a: &[u128], b: &[u128]) -> Vec<u128> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Segments by key, kept between batches and dropped least recently used first beyond a budget
/// of ids. Segments never change once written, so a cached one is never stale.
#[derive(Debug)]
pub struct IdCache {
    budget: usize,
    entries: Mutex<CacheEntries>,
}

#[derive(Debug, Default)]
struct CacheEntries {
    /// Each segment with the tick of its last use.
    by_key: HashMap<String, (u64, Ids)>,
    ids: usize,
    tick: u64,
}

impl Default for IdCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_IDS)
    }
}

impl IdCache {
    /// A cache of at most `budget` ids.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheEntries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Ids> {
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        let (used, ids) = entries.by_key.get_mut(key)?;
        *used = tick;
        Some(ids.clone())
    }

    pub fn insert(&self, key: String, ids: Ids) {
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        entries.ids += ids.len();
        if let Some((_, old)) = entries.by_key.insert(key, (tick, ids)) {
            entries.ids -= old.len();
        }
        while entries.ids > self.budget {
            let Some(oldest) = entries
                .by_key
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some((_, ids)) = entries.by_key.remove(&oldest) {
                entries.ids -= ids.len();
            }
        }
    }

    /// Drops a segment no state names any more (merged into a later one).
    pub fn remove(&self, key: &str) {
        let mut entries = self.lock();
        if let Some((_, ids)) = entries.by_key.remove(key) {
            entries.ids -= ids.len();
        }
    }

    /// Ids held.
    pub fn ids(&self) -> usize {
        self.lock().ids
    }
}

/// One shard's index as its state names it.
#[derive(Debug, Clone, Copy)]
pub struct ShardIndex<'a> {
    pub stream: &'a str,
    pub shard_id: &'a str,
    pub manifest: &'a Manifest,
    /// Every date the shard wrote: one the manifest lacks was written before the index.
    pub touched: &'a BTreeMap<NaiveDate, u64>,
    /// Any date the manifest lacks may have been written (see
    /// [`crate::commit::state::ShardState::index_partial`]).
    pub partial: bool,
}

impl ShardIndex<'_> {
    /// The segments of `day` (none if the shard never wrote it), or `None` if some cannot be
    /// had: the date predates the index, or a segment object is gone.
    pub async fn load_day(
        &self,
        lake: &impl Lake,
        cache: &IdCache,
        day: NaiveDate,
    ) -> Result<Option<Vec<(SegmentRef, Ids)>>, IndexError> {
        let Some(refs) = self.manifest.get(&day) else {
            let unindexed = self.partial || self.touched.contains_key(&day);
            return Ok((!unindexed).then(Vec::new));
        };
        let mut segments = Vec::with_capacity(refs.len());
        for segment in refs {
            let key = id_segment(self.stream, self.shard_id, day, segment.generation);
            // A cached segment of another length is not this one (a name reused after a state
            // was lost and started again without the leftovers that set its generations).
            let cached = cache
                .get(&key)
                .filter(|ids| ids.len() as u64 == segment.ids);
            let ids = match cached {
                Some(ids) => ids,
                None => match lake.get(&key).await? {
                    Some(object) => {
                        let ids = decode_segment(&key, &object.bytes)?;
                        cache.insert(key, ids.clone());
                        ids
                    }
                    None => return Ok(None),
                },
            };
            segments.push((*segment, ids));
        }
        Ok(Some(segments))
    }
}

/// Every id committed on one date, as one batch sees it: the shard's own segments, its
/// ancestors', and the ids read from the lake when some could not be had.
#[derive(Debug, Clone, Default)]
pub struct DayIds {
    /// The shard's segments, as its manifest lists them.
    pub own: Vec<(SegmentRef, Ids)>,
    /// Ids consulted but not indexed: the ancestors' segments, and for a replay the ids in the
    /// lake's `sales_events` for the date.
    pub consulted: Vec<Ids>,
    /// Every id of the date's `sales_events` partition, when some segment could not be had: the
    /// commit replaces the shard's segments of the date with one built on these.
    pub from_lake: Option<Ids>,
}

impl DayIds {
    /// Every list of ids this date has.
    fn lists(&self) -> impl Iterator<Item = &Ids> {
        self.own
            .iter()
            .map(|(_, ids)| ids)
            .chain(&self.consulted)
            .chain(&self.from_lake)
    }

    /// Adds the ids a commit of `generation` accepted on this date: the date's new segment
    /// list, and the segment to write.
    pub fn fold(&self, generation: u64, accepted: &[Uuid]) -> DayUpdate {
        let mut new: Vec<u128> = accepted.iter().map(|id| id.as_u128()).collect();
        new.sort_unstable();
        new.dedup();
        let mut segments: Vec<SegmentRef> = self.own.iter().map(|(segment, _)| *segment).collect();
        let mut superseded = Vec::new();
        let mut merged = new;
        if let Some(base) = &self.from_lake {
            merged = merge(base, &merged);
            superseded = segments.drain(..).map(|s| s.generation).collect();
        } else {
            let mut own = self.own.iter().rev();
            while let Some((segment, ids)) =
                own.next().filter(|(s, _)| s.ids <= merged.len() as u64)
            {
                merged = merge(ids, &merged);
                superseded.push(segment.generation);
                segments.pop();
            }
        }
        segments.push(SegmentRef {
            generation,
            ids: merged.len() as u64,
        });
        DayUpdate {
            segments,
            ids: merged.into(),
            superseded,
        }
    }
}

/// What a commit changes in one date's index.
#[derive(Debug, Clone)]
pub struct DayUpdate {
    /// The date's segments once the commit is in.
    pub segments: Vec<SegmentRef>,
    /// The commit's new segment (the last of `segments`).
    pub ids: Ids,
    /// Generations of the segments merged into it, removed after the commit.
    pub superseded: Vec<u64>,
}

/// The ids committed on each date a batch touches.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub days: BTreeMap<NaiveDate, DayIds>,
}

impl Lookup {
    /// Which of the events (`ids[i]` on `dates[i]`) are committed: their (date, id) pairs.
    ///
    /// The ids are looked up in ascending order, each list walked forward from where the id
    /// before stopped ([`find_sorted`]): a binary search per event from scratch read its way
    /// down each segment at random, a seventh of a warm 10,000-record Lambda invocation.
    pub fn committed(&self, dates: &[NaiveDate], ids: &[Uuid]) -> HashSet<(NaiveDate, u128)> {
        let mut queries: Vec<(NaiveDate, u128)> = dates
            .iter()
            .zip(ids)
            .filter(|(day, _)| self.days.contains_key(day))
            .map(|(day, id)| (*day, id.as_u128()))
            .collect();
        queries.sort_unstable();
        let mut committed = HashSet::new();
        for same_day in queries.chunk_by(|a, b| a.0 == b.0) {
            let day = same_day[0].0;
            for ids in self.days[&day].lists() {
                find_sorted(ids, same_day.iter().map(|&(_, id)| id), |id| {
                    committed.insert((day, id));
                });
            }
        }
        committed
    }

    /// Ids held, for the logs and the bench.
    pub fn len(&self) -> usize {
        self.days
            .values()
            .map(|day| {
                day.own.iter().map(|(_, ids)| ids.len()).sum::<usize>()
                    + day.consulted.iter().map(|ids| ids.len()).sum::<usize>()
                    + day.from_lake.as_ref().map_or(0, |ids| ids.len())
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Calls `found` with each of `wanted` (ascending) that `ids` (ascending) holds. Each is
/// searched from where the one before stopped, in a window that doubles until it reaches past
/// it: the walk reads `ids` forward, a few nearby entries an id.
fn find_sorted(ids: &[u128], wanted: impl IntoIterator<Item = u128>, mut found: impl FnMut(u128)) {
    // Every id before `from` is below the current (and so every later) wanted id.
    let mut from = 0;
    for id in wanted {
        let mut step = 1;
        while from + step < ids.len() && ids[from + step] < id {
            step *= 2;
        }
        let end = (from + step).min(ids.len());
        from += ids[from..end].partition_point(|&x| x < id);
        match ids.get(from) {
            Some(&at) if at == id => found(id),
            Some(_) => {}
            None => break,
        }
    }
}

/// Every event id in the lake's `sales_events` for `day`, sorted.
pub async fn ids_in_lake(lake: &impl Lake, day: NaiveDate) -> Result<Ids, IndexError> {
    let dir = partition_dir(SALES_EVENTS, day);
    let mut attempt = 0;
    'listing: loop {
        attempt += 1;
        let mut ids = Vec::new();
        for key in lake.list(&dir).await? {
            if !key.ends_with(".parquet") {
                continue;
            }
            let Some(object) = lake.get(&key).await? else {
                // Compacted away since the listing: its events are in a file this listing did
                // not see. Read the day again; a partial answer would let ids count twice.
                if attempt < MAX_LAKE_READS {
                    continue 'listing;
                }
                return Err(IndexError::Unsettled {
                    dir,
                    attempts: attempt,
                });
            };
            let file_ids = sales_events_ids(object.bytes)
                .map_err(|source| IndexError::File { key, source })?;
            ids.extend(file_ids.iter().map(Uuid::as_u128));
        }
        ids.sort_unstable();
        ids.dedup();
        return Ok(ids.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<u128>) -> Ids {
        range.collect::<Vec<_>>().into()
    }

    fn uuids(range: std::ops::Range<u128>) -> Vec<Uuid> {
        range.map(Uuid::from_u128).collect()
    }

    #[test]
    fn segments_round_trip_and_refuse_what_they_are_not() {
        let segment: Vec<u128> = vec![1, 7, u128::MAX];
        let bytes = encode_segment(&segment);
        assert_eq!(bytes.len(), 8 + 3 * ID_BYTES);
        assert_eq!(
            &*decode_segment("k", &bytes).expect("decodes"),
            &segment[..]
        );
        assert!(decode_segment("k", b"{}").is_err());
        assert!(decode_segment("k", &bytes[..bytes.len() - 1]).is_err());
        let unsorted = encode_segment(&[7, 1]);
        assert!(decode_segment("k", &unsorted).is_err());
    }

    #[test]
    fn committed_events_are_those_some_list_of_their_date_holds() {
        // Random ids, as UUIDs are; lists of every size; events held and not, some twice, some
        // past every list's end, some on a date the lookup has no ids for.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            u128::from(state) << 64 | u128::from(state.rotate_left(29))
        };
        let mut list = |n: usize| -> Ids {
            let mut ids: Vec<u128> = (0..n).map(|_| random()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.into()
        };
        let date = |d| NaiveDate::from_ymd_opt(2011, 1, d).expect("a date");
        let segment = |generation| SegmentRef { generation, ids: 0 };
        let first = DayIds {
            own: vec![
                (segment(1), list(5_000)),
                (segment(2), list(1)),
                (segment(3), list(0)),
            ],
            consulted: vec![list(700)],
            from_lake: Some(list(40)),
        };
        let second = DayIds {
            own: vec![(segment(1), list(3))],
            ..DayIds::default()
        };
        let lookup = Lookup {
            days: BTreeMap::from([(date(1), first), (date(2), second)]),
        };
        let (mut dates, mut events) = (Vec::new(), Vec::new());
        for (day, ids) in &lookup.days {
            for list in ids.lists() {
                for id in list.iter().step_by(3) {
                    dates.extend([*day, *day, date(3)]);
                    events.extend([
                        Uuid::from_u128(*id),
                        Uuid::from_u128(*id),
                        Uuid::from_u128(*id),
                    ]);
                }
            }
        }
        for _ in 0..2_000 {
            dates.push(date(1 + (events.len() % 3) as u32));
            events.push(Uuid::from_u128(random()));
        }
        dates.push(date(1));
        events.push(Uuid::from_u128(u128::MAX));

        let committed = lookup.committed(&dates, &events);
        let expected: HashSet<(NaiveDate, u128)> = dates
            .iter()
            .zip(&events)
            .filter(|(day, id)| {
                lookup.days.get(day).is_some_and(|ids| {
                    ids.lists()
                        .any(|list| list.binary_search(&id.as_u128()).is_ok())
                })
            })
            .map(|(day, id)| (*day, id.as_u128()))
            .collect();
        assert!(expected.len() > 1_000, "the events include committed ones");
        assert_eq!(committed, expected);
    }

    #[test]
    fn segments_merge_like_a_binary_counter() {
        let mut day = DayIds::default();
        let mut stored: HashMap<u64, Ids> = HashMap::new();
        let mut lengths = Vec::new();
        for generation in 1..=8u64 {
            let first = u128::from(generation) * 10;
            let update = day.fold(generation, &uuids(first..first + 10));
            stored.insert(generation, update.ids.clone());
            day.own = update
                .segments
                .iter()
                .map(|segment| (*segment, stored[&segment.generation].clone()))
                .collect();
            lengths.push(update.segments.iter().map(|s| s.ids).collect::<Vec<_>>());
        }
        let all: usize = day.own.iter().map(|(_, ids)| ids.len()).sum();
        assert_eq!(all, 80, "every id is kept, once");
        assert_eq!(
            lengths,
            [
                vec![10],
                vec![20],
                vec![20, 10],
                vec![40],
                vec![40, 10],
                vec![40, 20],
                vec![40, 20, 10],
                vec![80],
            ]
        );
    }

    #[test]
    fn a_fold_keeps_every_id_once() {
        let day = DayIds {
            own: vec![
                (
                    SegmentRef {
                        generation: 3,
                        ids: 8,
                    },
                    ids(0..8),
                ),
                (
                    SegmentRef {
                        generation: 5,
                        ids: 2,
                    },
                    ids(10..12),
                ),
            ],
            ..DayIds::default()
        };
        let update = day.fold(9, &uuids(20..23));
        assert_eq!(update.superseded, [5]);
        assert_eq!(
            update.segments,
            [
                SegmentRef {
                    generation: 3,
                    ids: 8
                },
                SegmentRef {
                    generation: 9,
                    ids: 5
                }
            ]
        );
        assert_eq!(&*update.ids, &[10, 11, 20, 21, 22]);
        assert!(day.lists().any(|ids| ids.contains(&11)));
        assert!(
            !day.lists().any(|ids| ids.contains(&20)),
            "fold leaves the day as it was"
        );

        let rebuilt = DayIds {
            from_lake: Some(ids(0..12)),
            ..day
        };
        let update = rebuilt.fold(9, &uuids(20..21));
        assert_eq!(
            update.superseded,
            [3, 5],
            "the lake's ids replace the date's segments"
        );
        assert_eq!(
            update.segments,
            [SegmentRef {
                generation: 9,
                ids: 13
            }]
        );
    }

    #[test]
    fn the_cache_drops_the_least_recently_used_beyond_its_budget() {
        let cache = IdCache::new(10);
        cache.insert("a".into(), ids(0..4));
        cache.insert("b".into(), ids(0..4));
        assert!(cache.get("a").is_some());
        cache.insert("c".into(), ids(0..4));
        assert_eq!(cache.ids(), 8);
        assert!(cache.get("b").is_none(), "b was used least recently");
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        cache.remove("a");
        cache.remove("a");
        assert_eq!(cache.ids(), 4, "removed once");
        cache.insert("d".into(), ids(0..6));
        assert!(cache.get("c").is_some(), "room was made by the removal");
    }
}
