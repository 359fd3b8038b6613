//! The rejects file: every row that could not become an event, with its line, reason and raw
//! text, so that nothing is dropped silently and a user can fix and re-send it.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

/// Writes rejected rows as CSV `line,reason,raw`. The file is created on the first reject.
#[derive(Debug)]
pub struct RejectsFile {
    path: PathBuf,
    writer: Option<csv::Writer<BufWriter<File>>>,
    count: u64,
}

impl RejectsFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            writer: None,
            count: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Resuming a run: keeps the rejects an earlier run wrote for lines before `line`, drops
    /// the later ones (this run reads those lines again), and appends from there.
    pub fn keep_before(&mut self, line: u64) -> io::Result<()> {
        let existing = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut kept = Vec::new();
        for record in csv::Reader::from_reader(existing).into_records() {
            let record = record?;
            if record
                .get(0)
                .and_then(|l| l.parse::<u64>().ok())
                .is_some_and(|l| l < line)
            {
                kept.push(record);
            }
        }
        let mut writer = self.create()?;
        for record in &kept {
            writer.write_record(record)?;
        }
        self.count = kept.len() as u64;
        self.writer = Some(writer);
        Ok(())
    }

    fn create(&self) -> io::Result<csv::Writer<BufWriter<File>>> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut writer = csv::Writer::from_writer(BufWriter::new(File::create(&self.path)?));
        writer.write_record(["line", "reason", "raw"])?;
        Ok(writer)
    }

    pub fn write(&mut self, line: u64, reason: &str, raw: &str) -> io::Result<()> {
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let writer = self.create()?;
                self.writer.insert(writer)
            }
        };
        writer.write_record([line.to_string().as_str(), reason, raw])?;
        self.count += 1;
        Ok(())
    }

    /// Flushes what was written; the file stays complete even if the run fails later.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_quoted_csv_only_when_there_are_rejects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out/rejects.csv");
        let mut rejects = RejectsFile::new(&path);
        rejects.flush().expect("flush");
        assert!(!path.exists());
        rejects
            .write(12, "unparseable quantity \"x\"", "1,A,\"B, C\",x")
            .expect("write");
        rejects.flush().expect("flush");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "line,reason,raw\n12,\"unparseable quantity \"\"x\"\"\",\"1,A,\"\"B, C\"\",x\"\n"
        );
        assert_eq!(rejects.count(), 1);
    }

    #[test]
    fn a_resumed_run_keeps_earlier_rejects_and_rewrites_later_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rejects.csv");
        let mut first = RejectsFile::new(&path);
        for line in [3, 8, 15] {
            first.write(line, "bad", "x").expect("write");
        }
        first.flush().expect("flush");
        let mut resumed = RejectsFile::new(&path);
        resumed.keep_before(10).expect("keeps");
        resumed.write(15, "bad", "x").expect("write");
        resumed.flush().expect("flush");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "line,reason,raw\n3,bad,x\n8,bad,x\n15,bad,x\n");
    }
}
