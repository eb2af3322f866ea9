//! Reading the configuration file safely: a regular file only (symbolic links followed, as
//! a Kubernetes ConfigMap mount needs), bounded in size, and opened without blocking (a
//! FIFO at the path is refused, not waited on).
//!
//! Blocking I/O all the same (a hung network filesystem): the reloader runs it on a thread
//! of its own, under a timeout.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The largest configuration file read.
const MAX_BYTES: u64 = 4 << 20;

/// Which file the path led to, and how it came to be there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId {
    /// The path with every symbolic link resolved: a ConfigMap's `..data` swap changes it.
    target: std::path::PathBuf,
    /// Device and inode.
    inode: (u64, u64),
}

impl FileId {
    /// Whether this is another file than `previous` (a symbolic link swapped to another
    /// target, a rename over the old file, or one unlinked and created anew), not the same
    /// file changed in place.
    pub fn replaced(&self, previous: &FileId) -> bool {
        self.target != previous.target || self.inode != previous.inode
    }
}

/// The file's bytes, or why they are not read (naming the path).
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    read_version(path).map(|(bytes, _)| bytes)
}

/// The file's bytes and identity, or why they are not read (naming the path).
pub fn read_version(path: &Path) -> Result<(Vec<u8>, FileId), String> {
    let shown = path.display();
    // Read through the resolved path, so the identity names the file that was read.
    let target = std::fs::canonicalize(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut file = open(&target).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "{shown} is not a regular file (it is {}): only regular files are read",
            kind(&meta.file_type())
        ));
    }
    if meta.len() > MAX_BYTES {
        return Err(format!(
            "{shown} is {} bytes, more than the {MAX_BYTES} a configuration may have",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.by_ref()
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!(
            "{shown} grew past the {MAX_BYTES} bytes a configuration may have"
        ));
    }
    Ok((bytes, identity(target, &meta)))
}

#[cfg(unix)]
fn identity(target: std::path::PathBuf, meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId {
        target,
        inode: (meta.dev(), meta.ino()),
    }
}

#[cfg(not(unix))]
fn identity(target: std::path::PathBuf, _: &std::fs::Metadata) -> FileId {
    FileId {
        target,
        inode: (0, 0),
    }
}

#[cfg(unix)]
fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so that opening a FIFO returns at once (and is then refused); regular
    // files ignore the flag.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

fn kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("jwt-authz-source-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_regular_file_and_a_symlink_to_one_are_read() {
        let dir = dir("regular");
        let path = dir.join("config.yaml");
        std::fs::write(&path, "listen: 127.0.0.1:1\n").unwrap();
        assert_eq!(read(&path).unwrap(), b"listen: 127.0.0.1:1\n");
        let link = dir.join("link.yaml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read(&link).unwrap(), b"listen: 127.0.0.1:1\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_fifo_a_directory_and_a_missing_file_are_refused_at_once() {
        let dir = dir("special");
        let fifo = dir.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(status.success());
        let started = std::time::Instant::now();
        let err = read(&fifo).unwrap_err();
        assert!(
            err.contains("is not a regular file (it is a FIFO)"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let err = read(&dir).unwrap_err();
        assert!(err.contains("a directory"), "{err}");
        let err = read(&dir.join("absent")).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_rename_and_a_symlink_swap_are_another_file_and_a_rewrite_is_not() {
        let dir = dir("identity");
        let path = dir.join("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let (_, first) = read_version(&path).unwrap();
        std::fs::write(&path, "a: 2\n").unwrap();
        let (_, in_place) = read_version(&path).unwrap();
        assert!(!in_place.replaced(&first));
        let tmp = dir.join("config.tmp");
        std::fs::write(&tmp, "a: 3\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let (_, renamed) = read_version(&path).unwrap();
        assert!(renamed.replaced(&in_place));
        let (v1, v2) = (dir.join("v1.yaml"), dir.join("v2.yaml"));
        std::fs::write(&v1, "a: 4\n").unwrap();
        std::fs::write(&v2, "a: 5\n").unwrap();
        let link = dir.join("link.yaml");
        std::os::unix::fs::symlink(&v1, &link).unwrap();
        let (_, before) = read_version(&link).unwrap();
        let swap = dir.join("link.tmp");
        std::os::unix::fs::symlink(&v2, &swap).unwrap();
        std::fs::rename(&swap, &link).unwrap();
        let (bytes, after) = read_version(&link).unwrap();
        assert_eq!(bytes, b"a: 5\n");
        assert!(after.replaced(&before));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_too_large_is_refused() {
        let dir = dir("large");
        let path = dir.join("config.yaml");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_BYTES + 1).unwrap();
        drop(file);
        let err = read(&path).unwrap_err();
        assert!(err.contains("more than"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
