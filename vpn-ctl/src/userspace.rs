//! The userspace WireGuard backend: a [boringtun] device in a background process, configured
//! over the cross-platform UAPI socket `/var/run/wireguard/<ifname>.sock`, for kernels without
//! the WireGuard module.
//!
//! # The background process
//!
//! `vpn-ctl up` exits, so the device lives in its own process: [`start`] runs this executable
//! as `vpn-ctl userspace-device NAME` ([`DEVICE_SUBCOMMAND`], a hidden subcommand that calls
//! [`run_device`]) in a new session (`setsid`, so a Ctrl-C or a closed terminal does not reach
//! it), stdin on `/dev/null` and stdout/stderr in `/run/vpn-ctl/NAME.log`. It is ready when its
//! UAPI socket answers `get=1`; if that does not happen within [`START_TIMEOUT`], `start` kills
//! it and fails with the log's last lines.
//!
//! No pid file is kept: the process is found through the UAPI socket itself. Its peer
//! credentials (`SO_PEERCRED`) name the process that listens on it, so [`stop`] cannot signal a
//! stale pid; it opens a pidfd for that process, sends `SIGTERM` (boringtun exits its event
//! loop and removes the socket), waits for the exit (`SIGKILL` after [`STOP_TIMEOUT`]), and then
//! waits until the link is gone from the process's network namespace.
//!
//! The device also ends by itself when its interface is deleted (`ip link del NAME`): the TUN
//! queue then fails to read and boringtun leaves its event loop; and when its socket file is
//! removed (boringtun checks every second).
//!
//! # Network namespaces
//!
//! The TUN interface is created in the network namespace of the device process. `start` takes
//! the namespace as a parameter (`Some("ns")` is the `ip netns` name, `/run/netns/ns`; `None`
//! is the caller's own) and the child enters it with `setns` before it runs, so a caller does
//! not need to be inside the namespace, and `vpn-ctl up` run under `ip netns exec` works too.
//! The UAPI socket is a file, not a network object: `/var/run/wireguard/NAME.sock` is the same
//! path in every network namespace, so [`get`], [`set`] and [`stop`] work from anywhere, and two
//! devices with the same name in two namespaces cannot coexist. `start` refuses a name whose
//! device already runs in another namespace.
//!
//! The UAPI client and boringtun's quirks are in [`uapi`].
//!
//! [boringtun]: https://github.com/cloudflare/boringtun

use std::{
    collections::HashSet,
    fmt,
    fs::{self, File},
    io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _},
    net::SocketAddr,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{fs::MetadataExt as _, net::UnixStream, process::CommandExt as _},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, anyhow, bail};
use ipnet::IpNet;
use wireguard_control::Key;

use crate::key::{PublicKey, Secret};

pub mod uapi;

use uapi::*;
pub use uapi::{DeviceState, PeerRequest, PeerState, SetRequest, get, set};

/// Where boringtun (and wireguard-go, and `wg`) put the UAPI sockets.
pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// Where the device processes' logs go: `NAME.log`.
pub const LOG_DIR: &str = "/run/vpn-ctl";
/// The hidden subcommand that runs [`run_device`]: `vpn-ctl userspace-device NAME`.
pub const DEVICE_SUBCOMMAND: &str = "userspace-device";
/// How long [`start`] waits for a new device to answer on its socket.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`stop`] waits after `SIGTERM` before `SIGKILL`, and then for the link to go.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The read and write timeout of one UAPI request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest UAPI answer read: 10,000 peers take about 2.5 MB.
const ANSWER_MAX: u64 = 64 << 20;
/// How many lines of the device's log an error of [`start`] quotes.
const LOG_TAIL_LINES: usize = 20;
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The UAPI socket of interface `name`: `/var/run/wireguard/NAME.sock`.
pub fn socket_path(name: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{name}.sock"))
}

/// The log of the device process of `name`: `/run/vpn-ctl/NAME.log`.
pub fn log_path(name: &str) -> PathBuf {
    Path::new(LOG_DIR).join(format!("{name}.log"))
}

// ---------------------------------------------------------------------------------------------
// The device process
// ---------------------------------------------------------------------------------------------

/// Runs a boringtun device in this process until its interface is deleted, its socket file is
/// removed, or the process gets `SIGTERM`/`SIGINT`: the TUN interface `name` (created in this
/// process's network namespace, down and without addresses) and its UAPI socket
/// [`socket_path`]. `vpn-ctl userspace-device NAME` calls this; use [`start`] to run it in the
/// background.
///
/// A panic anywhere in the process (boringtun panics on some requests, see the module docs)
/// removes the socket and ends the process (exit status 101), so the device disappears instead
/// of hanging.
pub fn run_device(name: &str) -> anyhow::Result<()> {
    use boringtun::device::{DeviceConfig, DeviceHandle};

    crate::link::check_name(name)?;
    let socket = socket_path(name);
    let default_hook = std::panic::take_hook();
    let hook_socket = socket.clone();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!(
            "userspace WireGuard device: a panic leaves boringtun's event loop locked; \
             removing {} and exiting",
            hook_socket.display()
        );
        let _ = fs::remove_file(&hook_socket);
        // SAFETY: _exit ends the process at once; nothing of it is used afterwards.
        unsafe { libc::_exit(101) };
    }));

    // One TUN queue per thread; more threads than CPUs only add contention.
    let n_threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    let config = DeviceConfig {
        n_threads,
        use_connected_socket: true,
        use_multi_queue: true,
        // -1: listen on /var/run/wireguard/NAME.sock (and handle SIGTERM/SIGINT).
        uapi_fd: -1,
    };
    let mut handle = DeviceHandle::new(name, config).map_err(|e| {
        anyhow!("could not create the userspace WireGuard device {name} (boringtun): {e}")
    })?;
    log::info!(
        "userspace WireGuard device {name} (boringtun {n_threads} threads, pid {}) answers on {}",
        std::process::id(),
        socket.display()
    );
    handle.wait();
    // Dropping the handle removes the socket file; the TUN interface goes with its last fd.
    drop(handle);
    log::info!("userspace WireGuard device {name} stopped");
    Ok(())
}

/// Starts the device `name` in the background with this executable (see [`start_with`]).
pub fn start(name: &str, netns: Option<&str>) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("could not find the vpn-ctl executable")?;
    start_with(&exe, name, netns)
}

/// Starts the device `name` in the background as `EXE userspace-device NAME` and waits until
/// its UAPI socket answers (at most [`START_TIMEOUT`]). `exe` must be a vpn-ctl executable
/// (tests pass `env!("CARGO_BIN_EXE_vpn-ctl")`; [`start`] passes the running one).
///
/// `netns` is the `ip netns` name of the namespace to create the interface in (`None`: the
/// caller's). Does nothing if the device already answers in that namespace; fails if it runs
/// in another one.
pub fn start_with(exe: &Path, name: &str, netns: Option<&str>) -> anyhow::Result<()> {
    crate::link::check_name(name)?;
    let wanted_ns = match netns {
        Some(ns) => format!("/run/netns/{ns}"),
        None => "/proc/self/ns/net".to_owned(),
    };
    let ns_file =
        File::open(&wanted_ns).with_context(|| format!("no network namespace at {wanted_ns}"))?;

    if let Some(pid) = answering_pid(name)? {
        let running_ns = format!("/proc/{pid}/ns/net");
        if same_file(&running_ns, &wanted_ns)? {
            log::debug!("userspace WireGuard device {name} already runs (pid {pid})");
            return Ok(());
        }
        bail!(
            "a userspace WireGuard device {name} already runs (pid {pid}) in another network \
             namespace than {wanted_ns}; UAPI sockets ({}) are not per namespace, so one name \
             can be used only once",
            socket_path(name).display()
        );
    }

    fs::create_dir_all(LOG_DIR).with_context(|| format!("could not create {LOG_DIR}"))?;
    let log = log_path(name);
    let log_file =
        File::create(&log).with_context(|| format!("could not create {}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .with_context(|| format!("could not duplicate {}", log.display()))?;

    let mut command = Command::new(exe);
    command
        .arg(DEVICE_SUBCOMMAND)
        .arg(name)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    let ns_fd = netns.map(|_| ns_file.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and only makes two system calls
    // (async-signal-safe, no allocation); `ns_file` outlives `spawn`.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(fd) = ns_fd
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().with_context(|| {
        format!(
            "could not start {} {DEVICE_SUBCOMMAND} {name}",
            exe.display()
        )
    })?;
    drop(ns_file);

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the userspace WireGuard device {name} exited during start-up ({status}); {}",
                log_tail(&log)
            );
        }
        // Ready when our child (not an older process on a stale path) answers `get=1`.
        if let Ok(Some(pid)) = answering_pid(name)
            && pid == child.id()
        {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the userspace WireGuard device {name} did not answer on {} within {:?}; {}",
                socket_path(name).display(),
                START_TIMEOUT,
                log_tail(&log)
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    log::info!(
        "started userspace WireGuard device {name} (pid {}, log {})",
        child.id(),
        log.display()
    );
    // The device is our child until we exit: reap it when it ends, so a long-lived caller (the
    // daemon, a test) keeps no zombie. A short-lived caller just leaves it to init.
    std::thread::Builder::new()
        .name(format!("reap-{name}"))
        .spawn(move || {
            let _ = child.wait();
        })
        .context("could not start the reaper thread")?;
    Ok(())
}

/// Stops the device `name`: `SIGTERM` to the process that listens on its socket (`SIGKILL`
/// after [`STOP_TIMEOUT`]), then waits until the link is gone from that process's network
/// namespace. Does nothing when no device answers (a stale socket file is removed).
pub fn stop(name: &str) -> anyhow::Result<()> {
    crate::link::check_name(name)?;
    let socket = socket_path(name);
    let Some(pid) = answering_pid(name)? else {
        if fs::remove_file(&socket).is_ok() {
            log::info!("removed the stale socket {}", socket.display());
        }
        return Ok(());
    };
    let pidfd = pidfd_open(pid).with_context(|| format!("pidfd_open({pid})"))?;
    // The pid came from a live connection; make sure the pidfd is that process and not a
    // successor that reused its pid.
    if answering_pid(name)? != Some(pid) {
        bail!(
            "the process answering on {} changed while stopping it; try again",
            socket.display()
        );
    }
    let netns = File::open(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("could not open the network namespace of pid {pid}"))?;

    pidfd_send_signal(&pidfd, libc::SIGTERM).with_context(|| format!("SIGTERM to pid {pid}"))?;
    if !wait_readable(&pidfd, STOP_TIMEOUT)? {
        log::warn!("userspace WireGuard device {name} (pid {pid}) ignored SIGTERM; killing it");
        pidfd_send_signal(&pidfd, libc::SIGKILL)
            .with_context(|| format!("SIGKILL to pid {pid}"))?;
        if !wait_readable(&pidfd, STOP_TIMEOUT)? {
            bail!("pid {pid} (userspace WireGuard device {name}) survived SIGKILL");
        }
    }
    // boringtun removes its socket on a clean exit; not after SIGKILL or a crash.
    let _ = fs::remove_file(&socket);
    wait_link_gone(&netns, name, STOP_TIMEOUT)?;
    log::info!("stopped userspace WireGuard device {name} (pid {pid})");
    Ok(())
}

/// The pid of the process listening on the socket of `name` if it answers a `get=1`, `None`
/// when nothing listens (no socket file, or a stale one).
fn answering_pid(name: &str) -> anyhow::Result<Option<u32>> {
    let mut stream = match connect(name) {
        Ok(stream) => stream,
        Err(e) if not_running(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let pid = crate::sockets::peer_pid(&stream)?;
    request(&mut stream, name, "get=1\n\n")?;
    Ok(Some(pid))
}

fn not_running(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
        )
    })
}

fn same_file(a: &str, b: &str) -> anyhow::Result<bool> {
    let (ma, mb) = (
        fs::metadata(a).with_context(|| format!("stat {a}"))?,
        fs::metadata(b).with_context(|| format!("stat {b}"))?,
    );
    Ok(ma.dev() == mb.dev() && ma.ino() == mb.ino())
}

/// The last lines of the device's log, for an error message.
fn log_tail(log: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(log) {
        let len = file.metadata().map_or(0, |m| m.len());
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(8192)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return format!("its log {} is empty", log.display());
    }
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    format!("the end of its log {}:\n{}", log.display(), tail.join("\n"))
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(2) with a valid pidfd, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match rc {
        0 => Ok(()),
        _ => match io::Error::last_os_error() {
            // Already exited: nothing to signal.
            e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            e => Err(e),
        },
    }
}

/// Waits until a pidfd becomes readable (its process has exited); `false` on timeout.
fn wait_readable(pidfd: &OwnedFd, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => return Ok(true),
            0 => return Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Waits until interface `name` no longer exists in the network namespace `netns`
/// (`ip -n NS link show NAME` failing).
fn wait_link_gone(netns: &File, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let c_name = std::ffi::CString::new(name)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid namespace fd; it changes only this thread.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error()).context("setns into the device's netns");
            }
            let deadline = Instant::now() + timeout;
            // SAFETY: a NUL-terminated name.
            while unsafe { libc::if_nametoindex(c_name.as_ptr()) } != 0 {
                if Instant::now() >= deadline {
                    bail!("interface {name} still exists {timeout:?} after its process ended");
                }
                std::thread::sleep(POLL_INTERVAL);
            }
            Ok(())
        })
        .join()
        .map_err(|_| anyhow!("the thread waiting for {name} to go panicked"))?
    })
}

#[cfg(test)]
mod tests;

/// Property tests that attack the parser of UAPI answers (issue 12): `parse_get` gets
/// mutated real answers (boringtun's and the protocol's forms; see `vpn_ctl_tests::mutate`)
/// and must return a state or a clean error, never panic, never show key material; set
/// bodies go through the checks and the splitting of [`set`]. Default: 3000 + 1000 cases.
/// Longer: `PROPTEST_CASES=100000 cargo test -p vpn-ctl --lib userspace::fuzz`.
#[cfg(test)]
mod fuzz;
