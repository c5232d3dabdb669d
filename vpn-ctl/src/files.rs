//! Reading the files a user names (the configuration, key files, import sources) without
//! hanging on one that is not a regular file.
//!
//! `open(2)` of a FIFO for reading waits for a writer, forever if none comes, and a device
//! may never reach its end: `File::open` or `fs::read_to_string` on a key file that is a FIFO
//! hangs `vpn-ctl up`. [`open_regular`] opens with `O_NONBLOCK`, which makes that open return
//! at once, `fstat`s what it opened, refuses anything that is not a regular file, and only
//! then clears `O_NONBLOCK` for ordinary reads. [`read_regular`] also reads at most a limit.

use std::{
    fmt,
    fs::{File, OpenOptions},
    io::{self, Read as _},
    os::{
        fd::AsRawFd as _,
        unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    },
    path::Path,
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
