//! Which input rows are safely handled, and so where a stopped run resumes.
//!
//! Rows are numbered 1, 2, … in input order (blank lines included). A row is settled once it is
//! skipped as blank, written to the rejects file, or its event's record is acknowledged by the
//! stream. Requests complete out of order, so the resume point is the end of the longest
//! settled prefix: `--skip-rows` with it never loses a row, and may re-send a few, which the
//! consumer drops as duplicates (the ids are deterministic).

use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct Acks {
    /// Rows read so far.
    read: u64,
    /// Rows read whose event is not acknowledged yet.
    pending: BTreeSet<u64>,
}

impl Acks {
    /// Starts after `skipped` rows that an earlier run settled.
    pub fn resuming_after(skipped: u64) -> Self {
        Self {
            read: skipped,
            pending: BTreeSet::new(),
        }
    }

    /// Row `row` was read; `awaits_ack` if it became an event still to be acknowledged.
    pub fn read(&mut self, row: u64, awaits_ack: bool) {
        self.read = self.read.max(row);
        if awaits_ack {
            self.pending.insert(row);
        }
    }

    /// The stream acknowledged the events of these rows.
    pub fn acknowledge(&mut self, rows: &[u64]) {
        for row in rows {
            self.pending.remove(row);
        }
    }

    /// Rows `1..=n` are all settled: resume with `--skip-rows n`.
    pub fn settled_prefix(&self) -> u64 {
        self.pending.first().map_or(self.read, |first| first - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resume_point_is_the_longest_settled_prefix() {
        let mut acks = Acks::resuming_after(10);
        assert_eq!(acks.settled_prefix(), 10);
        acks.read(11, true);
        acks.read(12, false); // blank or rejected
        acks.read(13, true);
        acks.read(14, true);
        assert_eq!(acks.settled_prefix(), 10);
        acks.acknowledge(&[13, 14]); // a later request finished first
        assert_eq!(acks.settled_prefix(), 10);
        acks.acknowledge(&[11]);
        assert_eq!(acks.settled_prefix(), 14);
    }
}
