//! The end offsets of a partition's log and the rules replication will lean on, asserted
//! (on in release) where an end is moved and again wherever one is read back:
//! - `written_end <= log_end` and `durable_end <= written_end`: a batch is appended in memory,
//!   then handed to the kernel, then fdatasync'ed;
//! - `high_watermark <= log_end`, and with `Durability::SyncEachAppend` (the default)
//!   `high_watermark <= durable_end`: nothing is served as committed before it is on disk;
//! - no end moves backwards, except through [`LogEnds::truncate`], which only
//!   `Partition::truncate_to` calls, and [`LogEnds::reset`], which only
//!   `Partition::truncate_fully_and_start_at` calls (the whole log replaced by an empty one
//!   at any offset, forward or back): the two sanctioned ways back.

/// The four end offsets of one partition's log (in its `LogState`, on its core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogEnds {
    /// One past the last offset appended (in memory, maybe not written).
    log_end: i64,
    /// Everything below this offset is written (maybe not synced).
    written_end: i64,
    /// Everything below this offset is fdatasync'ed.
    durable_end: i64,
    high_watermark: i64,
    /// The high watermark may not pass the durable end (`Durability::SyncEachAppend`).
    high_watermark_durable: bool,
}

impl LogEnds {
    /// The ends of a log just recovered up to `end`, all of it durable (open syncs it).
    pub(crate) fn recovered(end: i64, high_watermark_durable: bool) -> Self {
        let ends = Self {
            log_end: end,
            written_end: end,
            durable_end: end,
            high_watermark: end,
            high_watermark_durable,
        };
        ends.check();
        ends
    }

    pub(crate) fn log_end(&self) -> i64 {
        self.check();
        self.log_end
    }

    pub(crate) fn written_end(&self) -> i64 {
        self.check();
        self.written_end
    }

    pub(crate) fn durable_end(&self) -> i64 {
        self.check();
        self.durable_end
    }

    pub(crate) fn high_watermark(&self) -> i64 {
        self.check();
        self.high_watermark
    }

    /// Appends moved the log end to `to`.
    pub(crate) fn advance_log_end(&mut self, to: i64) {
        assert!(
            to >= self.log_end,
            "log end offset moved backwards from {} to {to}",
            self.log_end
        );
        self.log_end = to;
        self.check();
    }

    /// A write handed everything below `to` to the kernel.
    pub(crate) fn advance_written_end(&mut self, to: i64) {
        assert!(
            to >= self.written_end,
            "written end offset moved backwards from {} to {to}",
            self.written_end
        );
        self.written_end = to;
        self.check();
    }

    /// An fdatasync made everything below `to` durable.
    pub(crate) fn advance_durable_end(&mut self, to: i64) {
        assert!(
            to >= self.durable_end,
            "durable end offset moved backwards from {} to {to}",
            self.durable_end
        );
        self.durable_end = to;
        self.check();
    }

    /// Everything below `to` is committed (readable by consumers).
    pub(crate) fn advance_high_watermark(&mut self, to: i64) {
        assert!(
            to >= self.high_watermark,
            "high watermark moved backwards from {} to {to}",
            self.high_watermark
        );
        self.high_watermark = to;
        self.check();
    }

    /// The one sanctioned way back (`Partition::truncate_to`, once the log is cut at
    /// `new_end` on disk and synced): every end goes to `new_end`, the high watermark only
    /// if it was above.
    pub(crate) fn truncate(&mut self, new_end: i64) {
        assert!(
            new_end <= self.log_end,
            "truncation to {new_end} past the log end offset {}",
            self.log_end
        );
        self.log_end = new_end;
        self.written_end = new_end;
        self.durable_end = new_end;
        self.high_watermark = self.high_watermark.min(new_end);
        self.check();
    }

    /// The other sanctioned move (`Partition::truncate_fully_and_start_at`, once the old log
    /// is gone and the new empty one is being put in its place): every end goes to `offset`,
    /// forward or back.
    pub(crate) fn reset(&mut self, offset: i64) {
        self.log_end = offset;
        self.written_end = offset;
        self.durable_end = offset;
        self.high_watermark = offset;
        self.check();
    }

    /// The order of the ends (see the module docs).
    fn check(&self) {
        assert!(
            self.written_end <= self.log_end,
            "written end offset {} past the log end offset {}",
            self.written_end,
            self.log_end
        );
        assert!(
            self.durable_end <= self.written_end,
            "durable end offset {} past the written end offset {}",
            self.durable_end,
            self.written_end
        );
        assert!(
            self.high_watermark <= self.log_end,
            "high watermark {} past the log end offset {}",
            self.high_watermark,
            self.log_end
        );
        assert!(
            !self.high_watermark_durable || self.high_watermark <= self.durable_end,
            "high watermark {} past the durable end offset {}",
            self.high_watermark,
            self.durable_end
        );
    }
}

#[cfg(test)]
mod tests {
    use super::LogEnds;

    /// The ends move in order: append, write, sync, commit; truncation takes them all back.
    #[test]
    fn ends_move_forward_in_order() {
        let mut e = LogEnds::recovered(10, true);
        e.advance_log_end(15);
        e.advance_written_end(15);
        e.advance_durable_end(15);
        e.advance_high_watermark(15);
        e.advance_log_end(20);
        assert_eq!(
            (
                e.log_end(),
                e.written_end(),
                e.durable_end(),
                e.high_watermark()
            ),
            (20, 15, 15, 15)
        );
        e.truncate(12);
        assert_eq!(
            (
                e.log_end(),
                e.written_end(),
                e.durable_end(),
                e.high_watermark()
            ),
            (12, 12, 12, 12)
        );
        e.truncate(12);
        e.advance_log_end(13);
        e.truncate(13);
        assert_eq!((e.log_end(), e.high_watermark()), (13, 12));
    }

    /// With `FlushInterval` the high watermark follows the log end, ahead of the disk.
    #[test]
    fn flush_interval_commits_before_sync() {
        let mut e = LogEnds::recovered(0, false);
        e.advance_log_end(5);
        e.advance_high_watermark(5);
        assert_eq!((e.high_watermark(), e.durable_end()), (5, 0));
    }

    /// A reset moves every end to one offset, forward or back, and they move on from there.
    #[test]
    fn reset_moves_every_end_anywhere() {
        let mut e = LogEnds::recovered(10, true);
        e.advance_log_end(12);
        e.reset(100);
        let all = |e: &LogEnds| {
            (
                e.log_end(),
                e.written_end(),
                e.durable_end(),
                e.high_watermark(),
            )
        };
        assert_eq!(all(&e), (100, 100, 100, 100));
        e.reset(3);
        assert_eq!(all(&e), (3, 3, 3, 3));
        e.advance_log_end(4);
        assert_eq!(all(&e), (4, 3, 3, 3));
    }

    #[test]
    #[should_panic(expected = "log end offset moved backwards")]
    fn log_end_never_moves_back() {
        let mut e = LogEnds::recovered(10, true);
        e.advance_log_end(9);
    }

    #[test]
    #[should_panic(expected = "high watermark moved backwards")]
    fn high_watermark_never_moves_back() {
        let mut e = LogEnds::recovered(10, true);
        e.advance_high_watermark(9);
    }

    #[test]
    #[should_panic(expected = "high watermark 11 past the durable end offset 10")]
    fn high_watermark_never_passes_the_durable_end() {
        let mut e = LogEnds::recovered(10, true);
        e.advance_log_end(12);
        e.advance_written_end(12);
        e.advance_high_watermark(11);
    }

    #[test]
    #[should_panic(expected = "durable end offset 11 past the written end offset 10")]
    fn nothing_is_synced_before_it_is_written() {
        let mut e = LogEnds::recovered(10, true);
        e.advance_log_end(12);
        e.advance_durable_end(11);
    }

    #[test]
    #[should_panic(expected = "truncation to 11 past the log end offset 10")]
    fn truncation_only_goes_back() {
        let mut e = LogEnds::recovered(10, true);
        e.truncate(11);
    }
}
