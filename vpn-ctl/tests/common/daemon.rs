//! `vpn-ctl daemon` as a test's child process, and waiting for what it does. Included with
//! `#[path]` by the tests that run a daemon (after `common/cli.rs` as `cli`).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use vpn_ctl_tests::Netns;

use crate::cli::VPN_CTL;

/// Polls `f` every 100 ms until it returns `Some`, panicking with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon process, killed on drop (also when the test panics); its log is in a file.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// `vpn-ctl -v --config CONFIG daemon` in `ns`, logging to `dir/daemon.log`. With
    /// `hosts`, the daemon sees that file as /etc/hosts (a private mount namespace).
    pub fn start(
        ns: &Netns,
        config: &Path,
        dir: &Path,
        hosts: Option<&Path>,
        notify: Option<&Path>,
    ) -> Daemon {
        let log = dir.join("daemon.log");
        let file = fs::File::create(&log).unwrap();
        let mut cmd = match hosts {
            None => ns.command(VPN_CTL),
            Some(hosts) => {
                let mut cmd = ns.command("unshare");
                cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(r#"mount --bind "$1" /etc/hosts && shift && exec "$@""#)
                    .arg("sh")
                    .arg(hosts)
                    .arg(VPN_CTL);
                cmd
            }
        };
        cmd.arg("-v")
            .arg("--config")
            .arg(config)
            .args(["daemon", "--backend", "auto"])
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        if let Some(socket) = notify {
            cmd.env("NOTIFY_SOCKET", socket);
        }
        Daemon {
            child: Some(cmd.spawn().expect("start vpn-ctl daemon")),
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `needle` (after `from` bytes).
    pub fn wait_log(&self, from: usize, needle: &str, timeout: Duration) -> String {
        wait_for(timeout, &format!("daemon log line {needle:?}"), || {
            let log = self.log();
            log.get(from..)
                .and_then(|tail| tail.lines().find(|l| l.contains(needle)))
                .map(str::to_string)
        })
    }

    /// Waits for the process to exit; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = wait_for(timeout, "the daemon to exit", || child.try_wait().unwrap());
        self.child = None;
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("--- daemon log ---\n{}", self.log());
            }
        }
    }
}
