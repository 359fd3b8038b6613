//! Which input events came from: the name people read (`source` is `sales.csv:2`) and the
//! identity their ids are derived from.
//!
//! The same file streamed twice must send the same ids (the lake counts it once); two different
//! files must never share ids, even under the same name (`exports/jan/sales.csv` and
//! `exports/feb/sales.csv`). So a file's identity is its name with a digest of its bytes: a
//! corrected re-export is a different file, whose rows all count (see the README). An explicit
//! `--source-id` is taken as the identity as it is: the user says which inputs are the same.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use md5::{Digest, Md5};

/// An input's name and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// What the events' `source` field shows before `:line`.
    pub name: String,
    /// What event ids are derived from, with the line number.
    pub id: String,
}

impl Source {
    /// An input identified by the user (`--source-id`): name and identity alike.
    pub fn named(id: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            name: id.clone(),
            id,
        }
    }

    /// A file, identified by its name and the MD5 of its bytes (as stored: a gzip file's
    /// compressed bytes). Reading it costs one pass over the file before it is streamed.
    pub fn of_file(path: &Path) -> io::Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let mut file = File::open(path)?;
        let mut hasher = Md5::new();
        let mut buffer = vec![0; 1 << 20];
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            id: format!("{name}#{digest}"),
            name,
        })
    }
}

impl From<&str> for Source {
    fn from(id: &str) -> Self {
        Self::named(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_told_apart_by_content_not_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |folder: &str, text: &str| {
            let path = dir.path().join(folder).join("sales.csv");
            std::fs::create_dir_all(path.parent().expect("folder")).expect("mkdir");
            std::fs::write(&path, text).expect("write");
            Source::of_file(&path).expect("reads")
        };
        let jan = write("jan", "InvoiceNo\n1\n");
        let feb = write("feb", "InvoiceNo\n2\n");
        let jan_again = write("copy", "InvoiceNo\n1\n");
        assert_eq!(jan.name, "sales.csv");
        assert_ne!(jan.id, feb.id, "two files of one name");
        assert_eq!(jan.id, jan_again.id, "the same bytes");
        assert_eq!(Source::named("x.csv").id, "x.csv");
    }
}
