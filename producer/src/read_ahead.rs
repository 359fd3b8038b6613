//! Reading a file on a thread of its own: the thread that packs events was the producer's
//! bottleneck, and reading and splitting the lines was a sixth of its work, deriving the events'
//! keys a fifth. The second core does both a chunk ahead.

use std::io::BufRead;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::reader::{CsvReader, Line, ReadError};

/// Lines a chunk, at most. The reading thread is the faster, so it waits on a full channel and
/// each chunk taken wakes it: a system call and an interrupt to the other core, measured at a
/// tenth of the packing thread's time with chunks of 1,024 lines.
const CHUNK_LINES: usize = 8192;

/// Bytes of text a chunk, at most: rows can be long (a record may span up to
/// [`crate::reader::MAX_QUOTED_LINES`] lines), and memory is bounded by bytes, not rows. About
/// 3 MiB of records at this project's rows (8,192 of them).
const CHUNK_BYTES: usize = 4 << 20;

/// Chunks waiting in the channel: with the one being filled and the one being worked on, three
/// chunks at most are in memory.
const CHUNKS_AHEAD: usize = 1;

/// What the reading thread hands over.
enum Chunk<T> {
    Lines(Vec<(Line, T)>),
    Failed(ReadError),
    End,
}

/// The lines of a [`CsvReader`], each with what a function derives from it, read on a thread of
/// their own a chunk at a time. Only for input that is never slow to come (a regular file): a
/// chunk waits until it is full.
pub struct ReadAhead<T> {
    /// `None` once dropped, which tells the thread to stop.
    chunks: Option<Receiver<Chunk<T>>>,
    current: std::vec::IntoIter<(Line, T)>,
    reading: Option<JoinHandle<()>>,
    ended: bool,
}

impl<T: Send + 'static> ReadAhead<T> {
    /// Starts reading `reader` on a new thread, which also derives `derive(line)` of each line.
    pub fn spawn<R: BufRead + Send + 'static>(
        reader: CsvReader<R>,
        derive: impl FnMut(&Line) -> T + Send + 'static,
    ) -> std::io::Result<Self> {
        let (sender, chunks) = sync_channel(CHUNKS_AHEAD);
        let reading = std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || read(reader, derive, &sender))?;
        Ok(Self {
            chunks: Some(chunks),
            current: Vec::new().into_iter(),
            reading: Some(reading),
            ended: false,
        })
    }

    /// The reading thread ended without saying so: it panicked, and so does the caller.
    fn rethrow(&mut self) {
        if let Some(reading) = self.reading.take()
            && let Err(panic) = reading.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

/// The reading thread: chunks until the end, an error, or the receiver is gone.
fn read<R: BufRead, T>(
    mut reader: CsvReader<R>,
    mut derive: impl FnMut(&Line) -> T,
    chunks: &SyncSender<Chunk<T>>,
) {
    loop {
        let mut lines = Vec::with_capacity(CHUNK_LINES);
        let mut bytes = 0;
        let last = loop {
            match reader.next_line() {
                Ok(Some(line)) => {
                    bytes += match &line {
                        Line::Record(record) => record.raw().len(),
                        Line::Malformed { raw, .. } => raw.len(),
                        Line::Blank { .. } => 0,
                    };
                    let derived = derive(&line);
                    lines.push((line, derived));
                    if lines.len() == CHUNK_LINES || bytes >= CHUNK_BYTES {
                        break None;
                    }
                }
                Ok(None) => break Some(Chunk::End),
                Err(e) => break Some(Chunk::Failed(e)),
            }
        };
        if !lines.is_empty() && chunks.send(Chunk::Lines(lines)).is_err() {
            return;
        }
        if let Some(last) = last {
            let _ = chunks.send(last);
            return;
        }
    }
}

impl<T: Send + 'static> Iterator for ReadAhead<T> {
    type Item = Result<(Line, T), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(line) = self.current.next() {
                return Some(Ok(line));
            }
            if self.ended {
                return None;
            }
            let chunk = self.chunks.as_ref()?.recv();
            match chunk {
                Ok(Chunk::Lines(lines)) => self.current = lines.into_iter(),
                Ok(Chunk::End) => self.ended = true,
                Ok(Chunk::Failed(e)) => {
                    self.ended = true;
                    return Some(Err(e));
                }
                Err(_) => {
                    self.ended = true;
                    self.rethrow();
                }
            }
        }
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        // The thread stops at its next hand-over, at most a chunk of a file away.
        self.chunks = None;
        if let Some(reading) = self.reading.take()
            && reading.join().is_err()
        {
            // Dropped while unwinding or after a stop: the panic's message is already printed.
            tracing::error!("the thread reading the input ahead panicked");
        }
    }
}

impl<T> std::fmt::Debug for ReadAhead<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(rows: usize) -> Vec<u8> {
        let mut text = b"a,b\n".to_vec();
        for row in 0..rows {
            text.extend_from_slice(format!("{row},x\n").as_bytes());
        }
        text
    }

    fn read_directly(text: &[u8]) -> Vec<Line> {
        let reader = CsvReader::new(text, None).expect("header");
        reader.map(|line| line.expect("reads")).collect()
    }

    #[test]
    fn every_line_comes_once_in_order_across_chunks() {
        for rows in [0, 1, CHUNK_LINES - 1, CHUNK_LINES, 3 * CHUNK_LINES + 7] {
            let text = csv(rows);
            let reader = CsvReader::new(std::io::Cursor::new(text.clone()), None).expect("header");
            let ahead: Vec<(Line, u64)> = ReadAhead::spawn(reader, Line::line)
                .expect("spawns")
                .map(|line| line.expect("reads"))
                .collect();
            let direct: Vec<(Line, u64)> = read_directly(&text)
                .into_iter()
                .map(|line| {
                    let number = line.line();
                    (line, number)
                })
                .collect();
            assert_eq!(ahead, direct, "{rows} rows");
        }
    }

    /// Fails its reads after `good` bytes.
    struct Failing {
        text: std::io::Cursor<Vec<u8>>,
        good: u64,
    }

    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.fill_buf()?;
            std::io::Read::read(&mut self.text, buf)
        }
    }

    impl BufRead for Failing {
        fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
            if self.text.position() >= self.good {
                return Err(std::io::Error::other("disk on fire"));
            }
            self.text.fill_buf()
        }
        fn consume(&mut self, amount: usize) {
            self.text.consume(amount);
        }
    }

    #[test]
    fn a_read_error_comes_after_the_lines_before_it_and_ends_the_lines() {
        let text = csv(3 * CHUNK_LINES);
        let good = text.len() as u64 / 2;
        let reader = CsvReader::new(
            Failing {
                text: std::io::Cursor::new(text),
                good,
            },
            None,
        )
        .expect("header");
        let mut ahead = ReadAhead::spawn(reader, |_| ()).expect("spawns");
        let mut lines = 0;
        let error = loop {
            match ahead.next() {
                Some(Ok(_)) => lines += 1,
                Some(Err(e)) => break e,
                None => panic!("the lines ended without the error"),
            }
        };
        assert!(error.to_string().contains("disk on fire"), "{error}");
        assert!(
            lines > CHUNK_LINES,
            "the lines read before it come first: {lines}"
        );
        assert!(ahead.next().is_none());
    }

    /// Panics when read.
    struct Panicking;

    impl std::io::Read for Panicking {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("the reader broke")
        }
    }

    impl BufRead for Panicking {
        fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
            panic!("the reader broke")
        }
        fn consume(&mut self, _: usize) {}
    }

    #[test]
    fn a_panic_on_the_reading_thread_is_not_taken_for_the_end_of_the_input() {
        let input = std::io::Read::chain(&b"a,b\n"[..], Panicking);
        let reader = CsvReader::new(input, None).expect("header");
        let mut ahead = ReadAhead::spawn(reader, |_| ()).expect("spawns");
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ahead.next()));
        assert!(next.is_err(), "the lines ended quietly: {next:?}");
    }

    #[test]
    fn dropped_early_the_reading_thread_stops() {
        let text = csv(20 * CHUNK_LINES);
        let reader = CsvReader::new(std::io::Cursor::new(text), None).expect("header");
        let derived = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&derived);
        let mut ahead = ReadAhead::spawn(reader, move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .expect("spawns");
        assert!(ahead.next().is_some());
        // Joins the thread: the test would hang if it kept reading into a full channel.
        drop(ahead);
        let after_drop = derived.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            derived.load(std::sync::atomic::Ordering::Relaxed),
            after_drop
        );
        assert!(
            after_drop < 20 * CHUNK_LINES,
            "it read on: {after_drop} lines"
        );
    }

    #[test]
    fn a_chunk_ends_at_its_bytes_when_its_rows_are_long() {
        let mut text = b"a,b\n".to_vec();
        let long = "x".repeat(CHUNK_BYTES / 4);
        for row in 0..10 {
            text.extend_from_slice(format!("{row},{long}\n").as_bytes());
        }
        let reader = CsvReader::new(std::io::Cursor::new(text), None).expect("header");
        let mut ahead = ReadAhead::spawn(reader, |_| ()).expect("spawns");
        assert!(ahead.next().is_some());
        // The first chunk is the four rows that reach its bytes, not 8,192.
        assert_eq!(ahead.current.len(), 3);
        assert_eq!(ahead.count(), 9);
    }
}
