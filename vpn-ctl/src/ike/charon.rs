//! Starting charon for the user where none runs ([`ensure_charon`]).
//!
//! What it writes, all in the configuration directory (`/run/vpn-ctl/charon` by default,
//! mode 0700, rewritten at every start):
//!
//! - `strongswan.conf`: Debian's charon plugins (`include /etc/strongswan.d/charon/*.conf`,
//!   the set Debian's own strongswan.conf loads), the VICI socket vpn-ctl was given, stroke's
//!   socket moved into the directory (so it never collides with a system charon's
//!   `/var/run/charon.ctl`), `install_routes = no`, `make_before_break = yes` (IKEv2
//!   re-authentication without a gap; strongSwan 5.9's default is no), optionally IKEv1 aggressive mode with a
//!   PSK as responder, and a log file. Nothing from `/etc/strongswan.d/charon.conf` or
//!   `/etc/swanctl`: vpn-ctl loads the connections over VICI.
//! - `charon.log`: charon's log at level 1 (no keys: those appear only at level 4), appended.
//!   charon's own stderr (start-up failures before its logger runs) goes there too.
//!
//! charon is run as `STRONGSWAN_CONF=DIR/strongswan.conf /usr/lib/ipsec/charon` in its own
//! process group with no terminal (it outlives vpn-ctl; stop it with `kill` or
//! [`stop_charon`]). Its pid file is `/var/run/charon.pid`, compiled into charon and not
//! configurable, so a second charon on one machine (the tests run one per site) needs
//! [`CharonLaunch::private_run`]: its own mount namespace with an empty tmpfs on `/run`.
//!
//! Why `install_routes = no`: charon would put routes for the remote subnets into routing
//! table 220 and add an `ip rule` for it, a second routing layer beside vpn-ctl's own routes
//! (protocol 87) that `ip route` does not show. Forwarded LAN traffic needs none of it: the
//! kernel's IPsec policies match it on the way out whatever route it takes (the router's
//! default route, normally). Only traffic of the router itself to the remote LAN would
//! leave with its WAN address as source and miss the policy; pick the LAN address for it
//! (`ping -I 192.168.2.1 192.168.1.1`).

use std::{
    ffi::OsString,
    fmt, fs,
    io::Write as _,
    os::unix::{
        fs::{DirBuilderExt as _, OpenOptionsExt as _},
        net::UnixStream,
        process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

/// Debian's charon (package strongswan-charon).
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// Where [`ensure_charon`] writes charon's configuration unless told otherwise.
pub const DEFAULT_CONF_DIR: &str = "/run/vpn-ctl/charon";
/// charon's pid file; compiled in.
pub const PID_FILE: &str = "/var/run/charon.pid";
/// How long a starting charon may take to open its socket (seconds under emulation).
pub const START_WAIT: Duration = Duration::from_secs(60);

/// How to start a charon. [`ensure_charon`] uses the defaults.
#[derive(Debug, Clone)]
pub struct CharonLaunch {
    /// The VICI socket charon is to open.
    pub socket: PathBuf,
    /// Where `strongswan.conf` and `charon.log` go.
    pub conf_dir: PathBuf,
    pub binary: PathBuf,
    /// Run it inside this network namespace (`ip netns exec NAME`).
    pub netns: Option<String>,
    /// Give it an empty `/run` of its own (a private tmpfs in its own mount namespace), so
    /// its compiled-in pid file does not clash with another charon's. charon then does not
    /// see the real `/run` (where systemd-resolved's `resolv.conf` may live): for test beds
    /// with two charons, not for a router's one.
    pub private_run: bool,
    /// Accept IKEv1 aggressive mode with a pre-shared key when the peer initiates
    /// (`charon.i_dont_care_about_security_and_use_aggressive_mode_psk`). charon refuses it
    /// by default because the exchange exposes a hash of the key to offline guessing; a
    /// FRITZ!Box LAN-to-LAN connection needs it when the FRITZ!Box initiates.
    pub aggressive_psk: bool,
    /// How long to wait for the socket.
    pub wait: Duration,
}

impl CharonLaunch {
    pub fn new(socket: &Path, conf_dir: &Path) -> CharonLaunch {
        CharonLaunch {
            socket: socket.to_path_buf(),
            conf_dir: conf_dir.to_path_buf(),
            binary: PathBuf::from(CHARON),
            netns: None,
            private_run: false,
            aggressive_psk: false,
            wait: START_WAIT,
        }
    }

    pub fn conf_path(&self) -> PathBuf {
        self.conf_dir.join("strongswan.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.conf_dir.join("charon.log")
    }

    /// The `strongswan.conf` text.
    pub fn strongswan_conf(&self) -> anyhow::Result<String> {
        let quoted = |p: &Path| -> anyhow::Result<String> {
            let s = p
                .to_str()
                .with_context(|| format!("{} is not UTF-8", p.display()))?;
            ensure!(
                !s.contains(['"', '\\', '\n']),
                "{s:?} cannot be written into strongswan.conf (quote, backslash or newline)"
            );
            Ok(format!("\"{s}\""))
        };
        let socket = quoted(&PathBuf::from(format!("unix://{}", self.socket.display())))?;
        let stroke = quoted(&PathBuf::from(format!(
            "unix://{}",
            self.conf_dir.join("charon.ctl").display()
        )))?;
        let log = quoted(&self.log_path())?;
        let aggressive = if self.aggressive_psk {
            "    # IKEv1 aggressive mode with a PSK as responder (a FRITZ!Box initiating).\n    \
             i_dont_care_about_security_and_use_aggressive_mode_psk = yes\n"
        } else {
            ""
        };
        Ok(format!(
            "# Written by vpn-ctl for the charon it starts; rewritten at every start.\n\
             charon {{\n    \
                 # Routing stays vpn-ctl's: no table 220, no ip rule.\n    \
                 install_routes = no\n    \
                 # IKEv2 re-authentication sets up the new SAs before it deletes the old\n    \
                 # (the default from strongSwan 6.0; 5.9 broke the tunnel meanwhile).\n    \
                 make_before_break = yes\n\
             {aggressive}    \
                 plugins {{\n        \
                     include /etc/strongswan.d/charon/*.conf\n        \
                     vici {{\n            \
                         socket = {socket}\n        \
                     }}\n        \
                     stroke {{\n            \
                         socket = {stroke}\n        \
                     }}\n    \
                 }}\n    \
                 filelog {{\n        \
                     vpn-ctl {{\n            \
                         path = {log}\n            \
                         time_format = %b %e %T\n            \
                         ike_name = yes\n            \
                         append = yes\n            \
                         flush_line = yes\n            \
                         default = 1\n        \
                     }}\n    \
                 }}\n\
             }}\n"
        ))
    }

    /// The command that starts charon.
    pub fn command(&self) -> Command {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip", "netns", "exec", ns].map(OsString::from));
        }
        if self.private_run {
            argv.extend(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "slave",
                    "sh",
                    "-c",
                    "mount -t tmpfs -o mode=0755 vpn-ctl-charon-run /run && exec \"$0\"",
                ]
                .map(OsString::from),
            );
        }
        argv.push(self.binary.clone().into_os_string());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env("STRONGSWAN_CONF", self.conf_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Its own process group: a Ctrl-C meant for vpn-ctl does not stop it.
            .process_group(0);
        cmd
    }

    /// Whether something answers on the socket.
    pub fn answers(&self) -> bool {
        UnixStream::connect(&self.socket).is_ok()
    }

    /// Whether the charon answering on the socket is one vpn-ctl started with this launch's
    /// configuration directory: its environment names this `strongswan.conf`
    /// (`STRONGSWAN_CONF`, which [`CharonLaunch::command`] sets). Its pid comes from the
    /// socket (`SO_PEERCRED`), so this holds in other mount namespaces too.
    pub fn runs_ours(&self) -> bool {
        let Ok(stream) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let Ok(pid) = crate::sockets::peer_pid(&stream) else {
            return false;
        };
        let wanted = format!("STRONGSWAN_CONF={}", self.conf_path().display());
        fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
            environ
                .split(|&b| b == 0)
                .any(|var| var == wanted.as_bytes())
        })
    }

    /// Brings the `strongswan.conf` of a charon vpn-ctl started up to date with this launch
    /// (the aggressive-mode setting); true when the file changed, and the running charon must
    /// reread it (VICI `reload-settings`, [`super::Vici::reload_settings`]).
    pub fn update_conf(&self) -> anyhow::Result<bool> {
        let conf = self.conf_path();
        let text = self.strongswan_conf()?;
        if fs::read_to_string(&conf).is_ok_and(|old| old == text) {
            return Ok(false);
        }
        crate::files::replace(&conf, text.as_bytes(), crate::files::Mode::Set(0o600))
            .with_context(|| format!("writing {}", conf.display()))?;
        Ok(true)
    }

    /// Starts charon unless one answers on the socket already.
    pub fn ensure(&self) -> anyhow::Result<CharonStart> {
        if self.answers() {
            return Ok(CharonStart::Running {
                socket: self.socket.clone(),
                ours: self.runs_ours(),
            });
        }
        ensure!(
            self.binary.exists(),
            "no charon answers on {} and {} is missing: install it (`apt-get install \
             strongswan-charon strongswan-swanctl`)",
            self.socket.display(),
            self.binary.display()
        );
        if !self.private_run
            && let Some(pid) = running_pid(Path::new(PID_FILE))
        {
            bail!(
                "charon is running (pid {pid}, {PID_FILE}) but does not answer on {}: give \
                 vpn-ctl its VICI socket (charon.plugins.vici.socket in its strongswan.conf; \
                 the default is {}), or stop it so vpn-ctl can start its own",
                self.socket.display(),
                super::vici::DEFAULT_SOCKET
            );
        }

        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.conf_dir)
            .with_context(|| format!("creating {}", self.conf_dir.display()))?;
        if let Some(parent) = self.socket.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let conf = self.conf_path();
        crate::files::replace(
            &conf,
            self.strongswan_conf()?.as_bytes(),
            crate::files::Mode::Set(0o600),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let log = self.log_path();
        let mut log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let _ = writeln!(log_file, "vpn-ctl: starting charon with {}", conf.display());

        let mut cmd = self.command();
        cmd.stderr(log_file);
        let mut child = cmd.spawn().with_context(|| format!("starting {:?}", cmd))?;
        let pid = child.id();
        let start = Instant::now();
        loop {
            if self.answers() {
                log::info!(
                    "started charon (pid {pid}) with {}; it logs to {}",
                    conf.display(),
                    log.display()
                );
                return Ok(CharonStart::Started {
                    child,
                    conf,
                    log,
                    socket: self.socket.clone(),
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "charon exited ({status}) before opening {}; the end of its log ({}):\n{}",
                    self.socket.display(),
                    log.display(),
                    log_tail(&log, 30)
                );
            }
            if start.elapsed() > self.wait {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "charon did not open {} within {:?}; stopped it. The end of its log ({}):\n{}",
                    self.socket.display(),
                    self.wait,
                    log.display(),
                    log_tail(&log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What [`ensure_charon`] found or did.
#[derive(Debug)]
pub enum CharonStart {
    /// A charon answered on the socket; nothing was started. `ours`: vpn-ctl started it
    /// earlier (with the same configuration directory), see [`CharonLaunch::runs_ours`].
    Running { socket: PathBuf, ours: bool },
    /// vpn-ctl started charon. Dropping `child` leaves it running.
    Started {
        child: Child,
        conf: PathBuf,
        log: PathBuf,
        socket: PathBuf,
    },
}

impl fmt::Display for CharonStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CharonStart::Running { socket, ours } => write!(
                f,
                "charon answers on {}{}",
                socket.display(),
                if *ours { " (started by vpn-ctl)" } else { "" }
            ),
            CharonStart::Started {
                child,
                conf,
                log,
                socket,
            } => write!(
                f,
                "no charon was running: started one (pid {}, socket {}, config {}, log {})",
                child.id(),
                socket.display(),
                conf.display(),
                log.display()
            ),
        }
    }
}

/// Makes sure a charon answers on `socket`: where none does, starts Debian's charon with a
/// `strongswan.conf` written into `conf_dir` (see the module documentation for what it
/// holds) and waits for the socket. The result says which happened.
///
/// `aggressive_psk`: the config has an IKEv1 aggressive-mode site, whose peer (a FRITZ!Box)
/// must be answered when it initiates (see [`CharonLaunch::aggressive_psk`]).
pub fn ensure_charon(
    socket: &Path,
    conf_dir: &Path,
    aggressive_psk: bool,
) -> anyhow::Result<CharonStart> {
    let mut launch = CharonLaunch::new(socket, conf_dir);
    launch.aggressive_psk = aggressive_psk;
    launch.ensure()
}

/// Stops a charon vpn-ctl started: SIGTERM (charon then deletes its SAs and policies from
/// the kernel), SIGKILL after `grace`.
pub fn stop_charon(child: &mut Child, grace: Duration) -> anyhow::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill(2) on our own child's pid, which has not been reaped (try_wait above).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < grace {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// The pid in a pid file, if that process is alive.
fn running_pid(pid_file: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// The last `lines` lines of a log file (for error messages).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..]
                .iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(e) => format!("  (cannot read {}: {e})", path.display()),
    }
}
