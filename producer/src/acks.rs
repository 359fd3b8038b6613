//! Which input rows are safely handled, and so where a stopped run resumes.
//!
//! Rows are numbered 1, 2, … in input order (blank lines included). A row is settled once it is
//! skipped as blank, written to the rejects file, or its event's record is acknowledged by the
//! stream. Requests complete out of order, so the resume point is the end of the longest
//! settled prefix: `--skip-rows` with it never loses a row, and may re-send a few, which the
//! consumer drops as duplicates (the ids are deterministic).

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Acks {
    /// Rows `1..=settled` are all settled.
    settled: u64,
    /// The rows read after `settled`, in order: whether each still awaits its acknowledgement.
    /// Rows are read in order and mostly acknowledged in order, so this window stays short, and
    /// a row costs a byte and no allocation (a set of pending rows cost a tree node each).
    unsettled: VecDeque<bool>,
}

impl Acks {
    /// Starts after `skipped` rows that an earlier run settled.
    pub fn resuming_after(skipped: u64) -> Self {
        Self {
            settled: skipped,
            unsettled: VecDeque::new(),
        }
    }

    /// The last row read.
    fn read_up_to(&self) -> u64 {
        self.settled + self.unsettled.len() as u64
    }

    /// Row `row` was read; `awaits_ack` if it became an event still to be acknowledged. Rows
    /// between the last one read and `row` count as settled.
    pub fn read(&mut self, row: u64, awaits_ack: bool) {
        if row <= self.read_up_to() {
            return;
        }
        let skipped = row - self.read_up_to() - 1;
        self.unsettled
            .extend(std::iter::repeat_n(false, skipped as usize));
        self.unsettled.push_back(awaits_ack);
        self.advance();
    }

    /// The stream acknowledged the events of these rows.
    pub fn acknowledge(&mut self, rows: &[u64]) {
        for &row in rows {
            if let Some(index) = row.checked_sub(self.settled + 1)
                && let Some(awaits) = self.unsettled.get_mut(index as usize)
            {
                *awaits = false;
            }
        }
        self.advance();
    }

    /// Moves the settled prefix past the rows at the front that no longer await anything.
    fn advance(&mut self) {
        while self.unsettled.front() == Some(&false) {
            self.unsettled.pop_front();
            self.settled += 1;
        }
    }

    /// Rows `1..=n` are all settled: resume with `--skip-rows n`.
    pub fn settled_prefix(&self) -> u64 {
        self.settled
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

    #[test]
    fn rows_not_read_one_by_one_and_stray_acks_are_handled() {
        let mut acks = Acks::resuming_after(0);
        acks.read(3, true); // rows 1 and 2 were never reported: settled
        assert_eq!(acks.settled_prefix(), 2);
        acks.acknowledge(&[1, 3, 99]); // before the window, in it, past it
        assert_eq!(acks.settled_prefix(), 3);
        acks.read(2, true); // a row already passed changes nothing
        assert_eq!(acks.settled_prefix(), 3);
        acks.read(4, false);
        assert_eq!(acks.settled_prefix(), 4);
    }
}
