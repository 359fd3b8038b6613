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

    /// Names a file beside `path`, `.{name}{suffix}`: hidden, so query engines and
    /// [`Lake::list`] skip it.
    fn hidden_beside(path: &Path, suffix: &str) -> PathBuf {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        path.with_file_name(format!(".{name}{suffix}"))
    }

    /// A temporary file beside `path`, named uniquely for this process.
    fn temporary_beside(&self, path: &Path) -> PathBuf {
        let suffix = format!(
            ".{}.{}.tmp",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        Self::hidden_beside(path, &suffix)
    }
}

/// Writes `bytes` to `temp`, syncs it and renames it over `path` (creating its directory).
fn write_atomically(temp: &Path, path: &Path, bytes: &[u8]) -> Result<(), LakeError> {
    create_parent(path)?;
    let result = (|| {
        let mut file = std::fs::File::create(temp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        std::fs::rename(temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result.map_err(io_error("write", path))
}

/// Writes `bytes` to a new file at `temp`, unsynced: [`SyncTogether`] follows.
fn write_unsynced(temp: &Path, bytes: &[u8]) -> Result<(), LakeError> {
    std::fs::File::create(temp)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(io_error("write", temp))
}

/// Makes the files a [`LocalLake::put_all`] writes durable together: their contents before any
/// is renamed into place (a name never shows a file the disk may not hold), and then their
/// names. On Linux each is one `syncfs` of the lake's filesystem, which writes every dirty page
/// back and commits the journal once. The lake's directory is opened before the first file is
/// written, because `syncfs` reports a failed write-back that happened since its descriptor was
/// opened (and the kernel may write a file back, and fail, before the sync). Where `syncfs`
/// cannot be trusted with that (it reports write-back errors from Linux 5.8, and the
/// filesystem's own, a journal commit's, from 5.17), where a partition's directory is on
/// another filesystem, and on other systems, each file and each directory is synced in turn.
struct SyncTogether {
    root: PathBuf,
    /// The lake's directory, while one `syncfs` of it covers every file written.
    filesystem: Option<std::fs::File>,
}

impl SyncTogether {
    fn begin(root: &Path) -> Result<Self, LakeError> {
        std::fs::create_dir_all(root).map_err(io_error("create", root))?;
        let filesystem = std::fs::File::open(root).map_err(io_error("open", root))?;
        Ok(Self {
            root: root.to_owned(),
            filesystem: syncfs_reports_errors().then_some(filesystem),
        })
    }

    /// Notes a directory files are written to: on another filesystem, files are synced one by
    /// one.
    fn directory(&mut self, dir: &Path) -> Result<(), LakeError> {
        if let Some(filesystem) = &self.filesystem {
            let device = |file: &std::fs::File| {
                rustix::fs::fstat(file)
                    .map(|stat| stat.st_dev)
                    .map_err(io::Error::from)
            };
            let same = std::fs::File::open(dir)
                .and_then(|d| Ok(device(&d)? == device(filesystem)?))
                .map_err(io_error("open", dir))?;
            if !same {
                self.filesystem = None;
            }
        }
        Ok(())
    }

    /// Makes the files' contents durable.
    fn contents<'a>(&self, files: impl Iterator<Item = &'a Path>) -> Result<(), LakeError> {
        self.sync(files, std::fs::File::sync_data)
    }

    /// Makes the names in `dirs` durable.
    fn names<'a>(&self, dirs: impl Iterator<Item = &'a Path>) -> Result<(), LakeError> {
        self.sync(dirs, std::fs::File::sync_all)
    }

    /// One `syncfs`, or `each` of `paths` in turn.
    fn sync<'a>(
        &self,
        mut paths: impl Iterator<Item = &'a Path>,
        each: fn(&std::fs::File) -> io::Result<()>,
    ) -> Result<(), LakeError> {
        match &self.filesystem {
            Some(filesystem) => syncfs(filesystem, &self.root),
            None => paths.try_for_each(|path| {
                std::fs::File::open(path)
                    .and_then(|file| each(&file))
                    .map_err(io_error("sync", path))
            }),
        }
    }
}

/// `syncfs` of the filesystem `root` (opened as `filesystem`) is on.
fn syncfs(filesystem: &std::fs::File, root: &Path) -> Result<(), LakeError> {
    #[cfg(target_os = "linux")]
    let synced = rustix::fs::syncfs(filesystem).map_err(io::Error::from);
    #[cfg(not(target_os = "linux"))]
    let synced = filesystem.sync_all();
    synced.map_err(io_error("sync the filesystem of", root))
}

/// Whether this kernel's `syncfs` reports every failed write-back and journal commit since
/// its descriptor was opened: Linux 5.17 and later.
fn syncfs_reports_errors() -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    let uname = rustix::system::uname();
    release_at_least(&uname.release().to_string_lossy(), (5, 17))
}

/// Whether a kernel release (`6.1.0-13-amd64`) is at least `version` (major, minor).
fn release_at_least(release: &str, version: (u32, u32)) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= version
}

fn create_parent(path: &Path) -> Result<(), LakeError> {
    match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(io_error("create directory for", path)),
        None => Ok(()),
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
        write_atomically(&self.temporary_beside(&path), &path, &bytes)
    }

    /// Every object written, then one sync of the filesystem for all of them, then each renamed
    /// into place and the names synced ([`SyncTogether`]), on the blocking pool. A sync per file
    /// is a journal commit per file: for a batch spread over many dates (three tables and an id
    /// segment a date) those commits were most of the consumer's time on a disk.
    async fn put_all(&self, objects: Vec<(String, Vec<u8>)>) -> Result<(), LakeError> {
        let (writes, contents): (Vec<_>, Vec<_>) = objects
            .into_iter()
            .map(|(key, bytes)| {
                let path = self.path(&key)?;
                Ok(((self.temporary_beside(&path), path), bytes))
            })
            .collect::<Result<Vec<_>, LakeError>>()?
            .into_iter()
            .unzip();
        if writes.is_empty() {
            return Ok(());
        }
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut sync = SyncTogether::begin(&root)?;
            let mut dirs: Vec<&Path> = Vec::new();
            let mut written = 0;
            let result = (|| {
                // Each file's bytes are dropped once written: the batch's memory goes down as
                // its files go out.
                for ((temp, path), bytes) in writes.iter().zip(contents) {
                    // Many files share a partition: its directory is made once.
                    let dir = path.parent().unwrap_or(&root);
                    if dirs.last() != Some(&dir) {
                        create_parent(path)?;
                        sync.directory(dir)?;
                        dirs.push(dir);
                    }
                    written += 1;
                    write_unsynced(temp, &bytes)?;
                }
                sync.contents(writes.iter().map(|(temp, _)| temp.as_path()))?;
                for (temp, path) in &writes {
                    std::fs::rename(temp, path).map_err(io_error("write", path))?;
                }
                dirs.sort_unstable();
                dirs.dedup();
                sync.names(dirs.iter().copied())
            })();
            if result.is_err() {
                // Files not yet renamed are no one's.
                for (temp, _) in &writes[..written] {
                    let _ = std::fs::remove_file(temp);
                }
            }
            result
        })
        .await
        .map_err(|e| LakeError::Io {
            action: "write",
            path: self.root.clone(),
            source: io::Error::other(e),
        })?
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
        create_parent(&path)?;
        let lock_path = Self::hidden_beside(&path, ".lock");
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
        // Under the lock, in place: the lock is held for the whole read-compare-rename.
        write_atomically(&self.temporary_beside(&path), &path, &bytes)?;
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

    /// Every file under `dir`, hidden ones too, relative to it.
    fn files_under(dir: &Path) -> Vec<String> {
        let mut files = Vec::new();
        let mut dirs = vec![dir.to_owned()];
        while let Some(at) = dirs.pop() {
            for entry in std::fs::read_dir(&at).expect("dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let relative = path.strip_prefix(dir).expect("under the lake");
                    files.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        files.sort();
        files
    }

    #[tokio::test]
    async fn objects_written_together_land_whole_in_their_partitions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::new(dir.path());
        lake.put("t/day=1/a.parquet", b"old".to_vec())
            .await
            .expect("put");
        lake.put_all(vec![
            ("t/day=1/a.parquet".into(), b"one".to_vec()),
            ("t/day=1/b.parquet".into(), b"two".to_vec()),
            ("t/day=2/a.parquet".into(), b"three".to_vec()),
            ("u/day=2/a.parquet".into(), Vec::new()),
        ])
        .await
        .expect("written");
        for (key, bytes) in [
            ("t/day=1/a.parquet", &b"one"[..]),
            ("t/day=1/b.parquet", b"two"),
            ("t/day=2/a.parquet", b"three"),
            ("u/day=2/a.parquet", b""),
        ] {
            let object = lake.get(key).await.expect("get").expect("written");
            assert_eq!(object.bytes, bytes, "{key}");
        }
        assert_eq!(
            files_under(dir.path()),
            [
                "t/day=1/a.parquet",
                "t/day=1/b.parquet",
                "t/day=2/a.parquet",
                "u/day=2/a.parquet"
            ],
            "no temporary files are left behind"
        );
    }

    #[tokio::test]
    async fn a_failed_write_among_several_fails_them_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::new(dir.path());
        // A file where the second object's partition directory should be.
        lake.put("t/day=2", b"not a directory".to_vec())
            .await
            .expect("put");
        let failed = lake
            .put_all(vec![
                ("t/day=1/a.parquet".into(), b"one".to_vec()),
                ("t/day=2/a.parquet".into(), b"two".to_vec()),
            ])
            .await;
        assert!(matches!(failed, Err(LakeError::Io { .. })), "{failed:?}");
        // Nothing is renamed into place before every file is written and synced: the first
        // object, written before the second failed, is not there under its name.
        assert_eq!(lake.get("t/day=1/a.parquet").await.expect("get"), None);
        // A key that would leave the lake fails the call before anything is written.
        let refused = lake
            .put_all(vec![
                ("t/day=3/a.parquet".into(), b"three".to_vec()),
                ("../escape".into(), b"no".to_vec()),
            ])
            .await;
        assert!(matches!(refused, Err(LakeError::BadKey(_))), "{refused:?}");
        assert_eq!(
            files_under(dir.path()),
            ["t/day=2"],
            "no object and no temporary file is left of either call"
        );
    }

    #[test]
    fn kernel_releases_are_compared_by_major_and_minor() {
        for (release, expected) in [
            ("6.1.0-13-amd64", true),
            ("5.17.0", true),
            ("5.16.20-arch1", false),
            ("5.15.0-91-generic", false),
            ("4.14.336-257.566.amzn2.x86_64", false),
            ("10.0", true),
            ("", false),
        ] {
            assert_eq!(release_at_least(release, (5, 17)), expected, "{release}");
        }
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
