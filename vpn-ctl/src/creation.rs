//! Creation records: how vpn-ctl knows a link is its own even when `up` was killed while
//! creating it.
//!
//! vpn-ctl marks its links with an alias ([`crate::link::MANAGED_ALIAS`]), but the kernel
//! ignores an alias in the message that creates a link (and the userspace backend's TUN link
//! is created by another process), so the mark is set by a second request. A `kill -9` (or a
//! power cut, or an OOM kill on a small router) between the two left an unmarked link that
//! every later `up` refused ("exists but vpn-ctl did not create it") and `down` left alone.
//!
//! So before creating a link, `up` writes a record, `/run/vpn-ctl/creating/NETNS-NAME`, and
//! removes it once the link carries the mark. A link that exists without the mark but with a
//! record is one vpn-ctl was creating: `up` adopts it (sets the mark) and `down` deletes it.
//! Records live on tmpfs, like the links themselves, so a reboot clears both; they are per
//! network namespace (the namespace's inode is part of the name), as link names are.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
};

use anyhow::Context as _;

/// Where the records are kept.
pub const DIR: &str = "/run/vpn-ctl/creating";

/// The record of a link being created; [`Record::finish`] removes it once the link is marked.
/// Dropping it without `finish` keeps it (the creation did not complete: the next `up` or
/// `down` looks at the link).
#[must_use = "call finish() once the link carries vpn-ctl's mark"]
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
}

impl Record {
    /// Records that vpn-ctl is about to create link `name` in the calling thread's network
    /// namespace. The record is written before this returns.
    pub fn begin(name: &str) -> anyhow::Result<Record> {
        let path = path(name)?;
        fs::create_dir_all(DIR).with_context(|| format!("could not create {DIR}"))?;
        fs::File::create(&path)
            .and_then(|mut f| f.write_all(format!("{name}\n").as_bytes()))
            .with_context(|| {
                format!(
                    "could not write {}, the record of the link vpn-ctl is creating: check that \
                     /run is writable",
                    path.display()
                )
            })?;
        Ok(Record { path })
    }

    /// The link carries vpn-ctl's mark (or was never created): the record goes.
    pub fn finish(self) {
        remove(&self.path);
    }
}

/// Whether an interrupted vpn-ctl was creating link `name` in this network namespace.
pub fn exists(name: &str) -> bool {
    path(name).is_ok_and(|p| p.exists())
}

/// Forgets the record of `name` (the link was adopted, deleted, or is not there).
pub fn forget(name: &str) {
    if let Ok(path) = path(name) {
        remove(&path);
    }
}

fn remove(path: &PathBuf) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("could not remove {}: {e}", path.display()),
    }
}

/// `DIR/NETNS-NAME`, NETNS being the inode of the calling thread's network namespace.
fn path(name: &str) -> anyhow::Result<PathBuf> {
    crate::link::check_name(name)?;
    let netns = fs::metadata("/proc/thread-self/ns/net")
        .context("could not identify this network namespace (/proc/thread-self/ns/net)")?
        .ino();
    Ok(PathBuf::from(DIR).join(format!("{netns}-{name}")))
}
