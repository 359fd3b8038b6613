//! The lake in a local directory: objects are files, and a compare-and-swap is a
//! read-compare-rename under a lock file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Lake, LakeError, Object, Precondition, Version, check_key};

/// A lake in a local directory (`file://DIR`). Objects are files; a write goes to a temporary
/// file that is synced and then renamed over the target, so it is atomic.
#[derive(Debug)]
pub struct LocalLake {
    root: PathBuf,
    counter: AtomicU64,
}

impl LocalLake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            counter: AtomicU64::new(0),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, LakeError> {
        Ok(self.root.join(check_key(key)?))
    }

    /// Creates the directory of `path` and names a file beside it, `.{name}{suffix}`: hidden,
    /// so query engines and [`Lake::list`] skip it.
    fn hidden_beside(&self, path: &Path, suffix: &str) -> Result<PathBuf, LakeError> {
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(io_error("create directory for", path))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(dir.join(format!(".{name}{suffix}")))
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), LakeError> {
        let temp = self.hidden_beside(
            path,
            &format!(
                ".{}.{}.tmp",
                std::process::id(),
                self.counter.fetch_add(1, Ordering::Relaxed)
            ),
        )?;
        let result = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_data()?;
            std::fs::rename(&temp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map_err(io_error("write", path))
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LakeError + 'a {
    move |source| LakeError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, LakeError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LakeError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

impl Lake for LocalLake {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        let path = self.path(key)?;
        self.write_atomically(&path, &bytes)
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: Precondition,
    ) -> Result<Version, LakeError> {
        let path = self.path(key)?;
        // Every conditional writer of this key, in any process, takes the lock file first, so
        // the read, the comparison and the rename happen as one step. The lock is released when
        // the file is closed, also when the process dies.
        let lock_path = self.hidden_beside(&path, ".lock")?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("open the lock of", &path))?;
        lock.lock().map_err(io_error("lock", &path))?;
        let current = read_file(&path)?.map(|bytes| Version::of(&bytes));
        let holds = match &expected {
            Precondition::Absent => current.is_none(),
            Precondition::Matches(version) => current.as_ref() == Some(version),
        };
        if !holds {
            return Err(LakeError::Conflict {
                key: key.to_owned(),
            });
        }
        let version = Version::of(&bytes);
        self.write_atomically(&path, &bytes)?;
        Ok(version)
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, LakeError> {
        let path = self.path(key)?;
        Ok(read_file(&path)?.map(|bytes| Object {
            version: Version::of(&bytes),
            bytes,
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(LakeError::Io {
                action: "remove",
                path,
                source,
            }),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        let mut keys = Vec::new();
        let mut dirs = vec![self.path(prefix)?];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(LakeError::Io {
                        action: "list",
                        path: dir,
                        source,
                    });
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if path.is_dir() {
                    dirs.push(path);
                } else if !hidden && let Ok(relative) = path.strip_prefix(&self.root) {
                    // Temporary and lock files are hidden: they are not objects.
                    keys.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_replace_whole_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::new(dir.path());
        assert_eq!(lake.get("a/b.txt").await.expect("get"), None);
        lake.put("a/b.txt", b"one".to_vec()).await.expect("put");
        lake.put("a/b.txt", b"two".to_vec()).await.expect("put");
        assert_eq!(
            lake.get("a/b.txt").await.expect("get").map(|o| o.bytes),
            Some(b"two".to_vec())
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["b.txt"], "no temporary files are left behind");
    }

    #[tokio::test]
    async fn a_conditional_write_wins_only_against_the_version_it_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::new(dir.path());
        let first = lake
            .put_if("s/state.json", b"1".to_vec(), Precondition::Absent)
            .await
            .expect("created");
        assert!(matches!(
            lake.put_if("s/state.json", b"x".to_vec(), Precondition::Absent)
                .await,
            Err(LakeError::Conflict { .. })
        ));
        let second = lake
            .put_if(
                "s/state.json",
                b"2".to_vec(),
                Precondition::Matches(first.clone()),
            )
            .await
            .expect("swapped");
        assert!(matches!(
            lake.put_if("s/state.json", b"y".to_vec(), Precondition::Matches(first))
                .await,
            Err(LakeError::Conflict { .. })
        ));
        let object = lake
            .get("s/state.json")
            .await
            .expect("get")
            .expect("object");
        assert_eq!((object.bytes, object.version), (b"2".to_vec(), second));
        lake.put("s/d/x.parquet", vec![]).await.expect("put");
        assert_eq!(
            lake.list("s").await.expect("list"),
            ["s/d/x.parquet", "s/state.json"],
            "lock and temporary files are not objects"
        );
        lake.delete("s/d/x.parquet").await.expect("delete");
        lake.delete("s/d/x.parquet")
            .await
            .expect("deleting nothing is fine");
        assert_eq!(lake.list("s").await.expect("list"), ["s/state.json"]);
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_lake() {
        let lake = LocalLake::new("/tmp/lake");
        for key in ["", "/etc/passwd", "a/../../b", "a//b", "./a"] {
            assert!(
                matches!(lake.put(key, vec![]).await, Err(LakeError::BadKey(_))),
                "{key}"
            );
        }
    }
}
