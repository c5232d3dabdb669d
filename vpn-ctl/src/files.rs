//! The files vpn-ctl reads and writes: reading what a user names (the configuration, key
//! files, import sources) without hanging on one that is not a regular file, and writing so
//! that a power cut on a router's flash leaves the old file or the new one, never half of one.
//!
//! Reading:
//! `open(2)` of a FIFO for reading waits for a writer, forever if none comes, and a device
//! may never reach its end: `File::open` or `fs::read_to_string` on a key file that is a FIFO
//! hangs `vpn-ctl up`. [`open_regular`] opens with `O_NONBLOCK`, which makes that open return
//! at once, `fstat`s what it opened, refuses anything that is not a regular file, and only
//! then clears `O_NONBLOCK` for ordinary reads. [`read_regular`] also reads at most a limit.
//!
//! Writing, the one way for every file vpn-ctl writes (key files, the configuration it
//! edits, charon's records and settings, fw4 includes, exports):
//! - [`create_new`]: a file that must not exist yet (a new key), with its mode from the
//!   start, synced; removed again if the write fails.
//! - [`replace`]: a temporary file in the same directory with the final mode (or the old
//!   file's mode and owner), synced, renamed over the old one, the directory synced.

use std::{
    fmt,
    fs::{self, File, OpenOptions, Permissions},
    io::{self, Read as _, Write as _},
    os::{
        fd::AsRawFd as _,
        unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    },
    path::{Path, PathBuf},
};

/// The error of [`open_regular`] for what is not a regular file; its `Display` ("it is a
/// FIFO, not a regular file") follows "cannot read PATH: ".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRegular {
    /// "a FIFO", "a directory", ...
    pub kind: &'static str,
}

impl fmt::Display for NotRegular {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "it is {}, not a regular file", self.kind)
    }
}

impl std::error::Error for NotRegular {}

impl NotRegular {
    /// The [`NotRegular`] inside `e`, if that is what it is.
    pub fn of(e: &io::Error) -> Option<NotRegular> {
        e.get_ref()?.downcast_ref().copied()
    }
}

/// The error of [`read_regular`] for a file longer than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: u64,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "it is larger than {} bytes", self.limit)
    }
}

impl std::error::Error for TooLarge {}

/// Opens `path` for reading, refusing with [`NotRegular`] anything that is not a regular file
/// (after symbolic links), without blocking on a FIFO. The file is returned in blocking mode.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let file_type = file.metadata()?.file_type();
    let kind = if file_type.is_file() {
        None
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    };
    if let Some(kind) = kind {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            NotRegular { kind },
        ));
    }
    let fd = file.as_raw_fd();
    // SAFETY: fcntl(2) on a descriptor `file` owns; F_GETFL and F_SETFL touch only its flags.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !cleared {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// The contents of the regular file `path` ([`open_regular`]), refused with [`TooLarge`] when
/// longer than `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            TooLarge { limit },
        ));
    }
    Ok(bytes)
}

/// Creates `path` with `mode` (never replacing a file: `AlreadyExists` if one is there),
/// writes `contents` and syncs them to disk. A file that could not be written whole is removed.
pub fn create_new(path: &Path, mode: u32, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if written.is_err() {
        drop(file);
        let _ = fs::remove_file(path);
    }
    written
}

/// The mode of the file [`replace`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// This mode, also when the old file had another (a private file stays private).
    Set(u32),
    /// The old file's mode and owner (the configuration a user keeps); `Set(default)` when
    /// there is no old file.
    KeepOr(u32),
}

/// Replaces `path` with `contents` atomically: a temporary file beside it (mode and owner as
/// `mode` says), written and synced, renamed over `path`, and the directory synced, so a
/// power cut at any point leaves the old file or the new one. A symbolic link is followed:
/// the file it points to is replaced, the link stays. The temporary file is removed on
/// failure, and `path` is then untouched.
pub fn replace(path: &Path, contents: &[u8], mode: Mode) -> io::Result<()> {
    let target = match fs::canonicalize(path) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e),
    };
    let old = match fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let (bits, owner) = match (mode, &old) {
        (Mode::Set(bits), _) => (bits, None),
        (Mode::KeepOr(_), Some(meta)) => (meta.mode() & 0o7777, Some((meta.uid(), meta.gid()))),
        (Mode::KeepOr(bits), None) => (bits, None),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(
            ".{name}.vpn-ctl-{}-{attempt}.tmp",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(bits & 0o777)
            .open(&tmp)
        {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let written = (|| {
        // The umask may have cleared bits the file should have.
        file.set_permissions(Permissions::from_mode(bits))?;
        if let Some((uid, gid)) = owner {
            let own = file.metadata()?;
            if (own.uid(), own.gid()) != (uid, gid) {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
        }
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable; the file is in place either way.
    if let Ok(dir) = File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{ffi::CString, os::unix::ffi::OsStrExt as _, path::PathBuf, time::Duration};

    use super::*;

    /// Makes a FIFO at `path` (`mkfifo PATH`).
    pub(crate) fn mkfifo(path: &Path) {
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
    }

    /// Runs `f` in a thread and returns its result, failing the test if it takes longer than
    /// 5 seconds (a read that blocks on a FIFO would never return).
    pub(crate) fn within_5_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("it blocked for more than 5 seconds")
    }

    #[test]
    fn create_new_never_replaces_and_sets_the_mode_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("wg0.key");
        create_new(&key, 0o600, b"secret\n").unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"secret\n");
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        let err = create_new(&key, 0o600, b"other\n").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&key).unwrap(), b"secret\n");
    }

    #[test]
    fn replace_swaps_the_whole_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("vpn.toml");
        // New file: the default mode.
        replace(&conf, b"one\n", Mode::KeepOr(0o640)).unwrap();
        assert_eq!(std::fs::metadata(&conf).unwrap().mode() & 0o777, 0o640);
        // The old mode is kept (not the umask's, not the default)...
        std::fs::set_permissions(&conf, Permissions::from_mode(0o604)).unwrap();
        replace(&conf, b"two\n", Mode::KeepOr(0o640)).unwrap();
        assert_eq!(std::fs::read(&conf).unwrap(), b"two\n");
        assert_eq!(std::fs::metadata(&conf).unwrap().mode() & 0o777, 0o604);
        // ...or set, whatever it was.
        replace(&conf, b"three\n", Mode::Set(0o600)).unwrap();
        assert_eq!(std::fs::metadata(&conf).unwrap().mode() & 0o777, 0o600);
        // Through a symbolic link: the file it points to changes, the link stays.
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&conf, &link).unwrap();
        replace(&link, b"four\n", Mode::KeepOr(0o600)).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&conf).unwrap(), b"four\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_failed_replace_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("vpn.toml");
        std::fs::write(&conf, "old\n").unwrap();
        // The rename fails: a non-empty directory stands where the file would go.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("inside"), "x").unwrap();
        assert!(replace(&blocked, b"new\n", Mode::Set(0o600)).is_err());
        assert!(blocked.is_dir());
        assert_eq!(std::fs::read(&conf).unwrap(), b"old\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("wg0.key");
        mkfifo(&fifo);
        let err = within_5_seconds(move || read_regular(&fifo, 100).unwrap_err());
        assert_eq!(NotRegular::of(&err), Some(NotRegular { kind: "a FIFO" }));
        assert_eq!(err.to_string(), "it is a FIFO, not a regular file");
    }

    #[test]
    fn directories_and_devices_are_refused_and_regular_files_read() {
        let dir = tempfile::tempdir().unwrap();
        for (path, kind) in [
            (dir.path().to_path_buf(), "a directory"),
            (PathBuf::from("/dev/null"), "a character device"),
        ] {
            let err = read_regular(&path, 100).unwrap_err();
            assert_eq!(NotRegular::of(&err), Some(NotRegular { kind }), "{path:?}");
        }
        let file = dir.path().join("vpn.toml");
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_regular(&file, 10).unwrap(), b"0123456789");
        let err = read_regular(&file, 9).unwrap_err();
        assert_eq!(err.to_string(), "it is larger than 9 bytes");
        // Blocking again, as files normally are.
        let opened = open_regular(&file).unwrap();
        // SAFETY: F_GETFL on a descriptor `opened` owns.
        let flags = unsafe { libc::fcntl(opened.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        let err = read_regular(&dir.path().join("missing"), 9).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
