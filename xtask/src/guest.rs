//! `cargo xtask guest`: runs the privileged test binaries inside a QEMU guest that boots
//! Debian's kernel, which has the WireGuard module and ESP that the host kernel lacks
//! (TOOLCHAIN.md §2, §3).
//!
//! The guest shares the host's root filesystem read-only over 9p, with tmpfs where it must
//! write, so the host-built test binaries and every host tool they call (`ip`, `wg`, `ping`,
//! later charon and prometheus) run in the guest unchanged. One boot runs the whole suite.
//!
//! Stage 1 is a busybox `/init` in a small initramfs: it loads the virtio and 9p modules, mounts
//! the host's root, and chroots into it. Stage 2 is a shell script run by the host's `/bin/sh`:
//! it points the kernel's module loader at the cached kernel tree (so `ip link add type
//! wireguard` autoloads as on a normal system), loads the modules the tests need, and runs the
//! test binaries. The verdict leaves the guest as QEMU's exit status through `isa-debug-exit`:
//! the guest writes byte `b` to port 0xf4 and QEMU exits with `(b << 1) | 1`. An exit status
//! of 0 means the guest stopped without a verdict (a kernel panic, `panic=-1` plus
//! `-no-reboot`), which is a failure like any other.

use std::{
    collections::VecDeque,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::step;

/// Modules the initramfs loads to reach the host's filesystem (and a fast entropy source).
const BOOT_MODULES: &[&str] = &["virtio_pci", "virtio_rng", "9pnet_virtio", "9p"];

/// Modules stage 2 loads for the tests. `drbg` matters: without it every `ip xfrm state add`
/// fails with "Kernel was unable to initialize cryptographic operations" (ENOENT for
/// `stdrng`). The kernel autoloads anything else through the module loader stage 2 sets up.
const TEST_MODULES: &[&str] = &[
    "veth",
    "tun",
    "wireguard",
    "xfrm_user",
    "xfrm_interface",
    "esp4",
    "esp6",
    "authenc",
    "gcm",
    "ghash-generic",
    "ctr",
    "seqiv",
    "echainiv",
    "sha512_generic",
    "chacha20poly1305",
    "drbg",
];

/// Modules loaded only after [`WITHOUT_OPTIONAL`] ran: what a stock router may lack.
/// (nf_tables is not loaded by hand at all; it autoloads for the tests that use it.)
const LATE_MODULES: &[&str] = &["inet_diag", "udp_diag"];

/// The test binary that runs first, on a kernel without the optional parts vpn-ctl must
/// live without (nf_tables, UDP sock_diag): none of them loaded yet, and module autoloading
/// off while it runs.
const WITHOUT_OPTIONAL: &str = "absent";

/// While this file exists in the guest, the module loader loads nothing.
const NO_AUTOLOAD: &str = "/run/vpn-ctl-guest-no-autoload";

/// The packages whose integration tests form the guest suite.
const SUITE_PACKAGES: &[&str] = &["vpn-ctl", "vpn-ctl-tests"];

/// Test binaries the whole guest suite leaves out: they touch no kernel feature (pure parsers
/// under property tests), so emulation would only run them many times slower. `--test NAME`
/// still runs one in the guest.
const HOST_ONLY: &[&str] = &["fuzz_parsers"];

/// The test that fails on purpose, run by the self-check (`--expect-failure`).
const FAILING_TEST: (&str, &str) = ("guest_harness", "deliberately_fails_in_the_guest");

/// Exit statuses QEMU reports for the guest's verdict byte.
const PASSED: i32 = 1; // byte 0
const TESTS_FAILED: i32 = 3; // byte 1
const HARNESS_FAILED: i32 = 5; // byte 2

/// The console line stage 2 prints first; the time until it is the boot time.
const READY_MARKER: &str = "vpn-ctl-guest: stage 2 running";

const DEFAULT_TIMEOUT: u64 = 1800;
const DEFAULT_MEMORY: u32 = 2048;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Stop the guest and fail after this many seconds (a hang or a kernel panic ends the run).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT)]
    pub timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY)]
    pub memory: u32,
    /// Run only these test binaries (integration-test names such as `kernel_smoke`).
    #[arg(long = "test", value_name = "NAME")]
    pub tests: Vec<String>,
    /// Run this benchmark of vpn-ctl (e.g. `wireguard`) instead of the tests.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tests", "expect_failure"])]
    pub bench: Option<String>,
    /// Self-check: run only the deliberately failing test and succeed only if the guest
    /// reports a test failure.
    #[arg(long)]
    pub expect_failure: bool,
    /// Arguments for every test binary (a name filter, `--nocapture`, ...).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: DEFAULT_TIMEOUT,
            memory: DEFAULT_MEMORY,
            tests: Vec::new(),
            bench: None,
            expect_failure: false,
            test_args: Vec::new(),
        }
    }
}

/// A test binary to run in the guest, in its package's directory (as `cargo test` does).
#[derive(Debug)]
struct TestBinary {
    name: String,
    executable: PathBuf,
    package_dir: PathBuf,
}

/// Debian's kernel, unpacked under the cache with its module index built.
#[derive(Debug)]
struct Kernel {
    version: String,
    /// The unpacked package: `boot/vmlinuz-VERSION`, `lib/modules/VERSION/...`.
    root: PathBuf,
}

impl Kernel {
    fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.version))
    }

    /// Module files for `modules` and their dependencies, in load order, each once.
    ///
    /// Same as `modprobe -d ROOT -S VERSION --show-depends MODULE` for each.
    fn resolve(&self, modules: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = Vec::new();
        for module in modules {
            let out = output(Command::new("modprobe").arg("-d").arg(&self.root).args([
                "-S",
                &self.version,
                "--show-depends",
                module,
            ]))
            .with_context(|| format!("resolving kernel module {module}"))?;
            for line in out.lines() {
                if let Some(path) = line.strip_prefix("insmod ") {
                    let path = PathBuf::from(path.split_whitespace().next().unwrap_or(path));
                    if !files.contains(&path) {
                        files.push(path);
                    }
                }
            }
        }
        Ok(files)
    }
}

pub fn run(workspace: &Path, options: &Options) -> anyhow::Result<()> {
    let cache = workspace.join("target/guest");
    let kernel = kernel(&cache.join("kernel"))?;
    let binaries = build_tests(workspace, options.bench.as_deref())?;
    let (binaries, args, expected) = if options.bench.is_some() {
        (binaries, vec!["--bench".to_string()], PASSED)
    } else if options.expect_failure {
        let failing: Vec<TestBinary> = binaries
            .into_iter()
            .filter(|b| b.name == FAILING_TEST.0)
            .collect();
        ensure!(
            failing.len() == 1,
            "the self-check's test binary {} was not built",
            FAILING_TEST.0
        );
        let args = ["--ignored", "--exact", FAILING_TEST.1].map(String::from);
        (failing, args.to_vec(), TESTS_FAILED)
    } else {
        let chosen: Vec<TestBinary> = binaries
            .into_iter()
            .filter(|b| match options.tests.is_empty() {
                true => !HOST_ONLY.contains(&b.name.as_str()),
                false => options.tests.contains(&b.name),
            })
            .collect();
        ensure!(
            !chosen.is_empty(),
            "no integration test named {}",
            options.tests.join(" or ")
        );
        (chosen, options.test_args.clone(), PASSED)
    };
    let initramfs = initramfs(workspace, &cache, &kernel, &binaries, &args)?;
    let started = Instant::now();
    let outcome = boot(&kernel, &initramfs, options)?;
    let total = started.elapsed();
    let boot = outcome.ready.unwrap_or(total);
    eprintln!(
        "xtask guest: kernel {}, boot {:.1} s, suite {:.1} s, total {:.1} s",
        kernel.version,
        boot.as_secs_f64(),
        (total - boot).as_secs_f64(),
        total.as_secs_f64()
    );
    match (outcome.status, expected) {
        (s, e) if s == e && e == PASSED => {
            eprintln!("xtask guest: all guest binaries passed");
            Ok(())
        }
        (s, e) if s == e => {
            eprintln!("xtask guest: self-check passed: a failing guest test fails the run");
            Ok(())
        }
        (PASSED, _) => bail!("self-check failed: the deliberately failing test passed the run"),
        (TESTS_FAILED, _) => bail!("guest tests failed (see the console above)"),
        (HARNESS_FAILED, _) => bail!("the guest could not set up (see the console above)"),
        (0, _) => bail!("the guest stopped without a verdict (kernel panic or reboot?)"),
        (s, _) => bail!("QEMU exited with status {s}"),
    }
}

/// Fetches Debian's kernel package through apt (once; it is cached), unpacks it and builds
/// its module index.
fn kernel(cache: &Path) -> anyhow::Result<Kernel> {
    let package = kernel_package()?;
    let dir = cache.join(&package);
    let root = dir.join("root");
    let version = package
        .strip_prefix("linux-image-")
        .context("unexpected kernel package name")?
        .to_string();
    let kernel = Kernel { version, root };
    let ready = dir.join("ready");
    if ready.exists() {
        eprintln!("xtask guest: using cached {package}");
        return Ok(kernel);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("xtask guest: downloading {package} (about 70 MB, once)");
    step(
        Command::new("apt-get")
            .args(["download", "-q", &package])
            .current_dir(&dir),
    )?;
    let deb = fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", dir.display()))?;
    // `dpkg-deb -x PKG DIR`
    step(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&kernel.root),
    )?;
    // The package ships no modules.dep: `depmod -b ROOT VERSION`.
    step(
        Command::new("depmod")
            .arg("-b")
            .arg(&kernel.root)
            .arg(&kernel.version),
    )?;
    fs::remove_file(&deb)?;
    fs::write(&ready, "")?;
    Ok(kernel)
}

/// The kernel package `linux-image-amd64` points at, e.g. `linux-image-6.1.0-56-amd64`.
fn kernel_package() -> anyhow::Result<String> {
    let ask = || output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]));
    let text = match ask() {
        Ok(text) if text.contains("Depends:") => text,
        _ => {
            step(Command::new("apt-get").args(["update", "-q"]))?;
            ask()?
        }
    };
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(String::from)
        .context("`apt-cache depends linux-image-amd64` names no linux-image package")
}

/// Builds the suite's integration-test binaries (`cargo test --no-run`) and lists them.
fn build_tests(workspace: &Path, bench: Option<&str>) -> anyhow::Result<Vec<TestBinary>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    match bench {
        // `cargo bench --no-run -p vpn-ctl --bench NAME`
        Some(name) => cmd.args([
            "bench", "--locked", "--no-run", "-p", "vpn-ctl", "--bench", name,
        ]),
        None => cmd.args(["test", "--locked", "--no-run", "--tests"]),
    };
    cmd.arg("--message-format=json")
        .current_dir(workspace)
        .stderr(Stdio::inherit());
    if bench.is_none() {
        for p in SUITE_PACKAGES {
            cmd.args(["-p", p]);
        }
    }
    let out = cmd.output().context("running cargo test --no-run")?;
    ensure!(out.status.success(), "building the test binaries failed");
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let kind = if bench.is_some() { "bench" } else { "test" };
        let is_integration_test =
            msg["reason"] == "compiler-artifact" && msg["target"]["kind"][0] == kind;
        let (Some(executable), Some(name), Some(manifest)) = (
            msg["executable"].as_str(),
            msg["target"]["name"].as_str(),
            msg["manifest_path"].as_str(),
        ) else {
            continue;
        };
        if is_integration_test {
            binaries.push(TestBinary {
                name: name.to_string(),
                executable: executable.into(),
                package_dir: Path::new(manifest).parent().unwrap().to_path_buf(),
            });
        }
    }
    ensure!(!binaries.is_empty(), "cargo built no integration tests");
    Ok(binaries)
}

/// Writes the initramfs: busybox, the boot modules, stage 1 (`/init`) and stage 2.
fn initramfs(
    workspace: &Path,
    cache: &Path,
    kernel: &Kernel,
    binaries: &[TestBinary],
    args: &[String],
) -> anyhow::Result<PathBuf> {
    let staging = cache.join("initramfs");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    for dir in ["bin", "modules", "proc", "sys", "dev", "host"] {
        fs::create_dir_all(staging.join(dir))?;
    }
    fs::copy("/bin/busybox", staging.join("bin/busybox"))
        .context("copying /bin/busybox (Debian package busybox-static)")?;
    let mut order = String::new();
    for file in kernel.resolve(BOOT_MODULES)? {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        fs::copy(&file, staging.join("modules").join(&name))
            .with_context(|| format!("copying {}", file.display()))?;
        order.push_str(&name);
        order.push('\n');
    }
    fs::write(staging.join("modules/order"), order)?;
    // The workspace holds the test binaries, the binaries they run (target/debug/vpn-ctl)
    // and their packages; the others may live elsewhere (CARGO_TARGET_DIR).
    let mut needed = vec![workspace.to_path_buf(), kernel.root.clone()];
    needed.extend(binaries.iter().map(|b| b.package_dir.clone()));
    needed.extend(
        binaries
            .iter()
            .filter_map(|b| b.executable.parent().map(Path::to_path_buf)),
    );
    write_executable(&staging.join("init"), &stage1(&under_tmpfs(needed)))?;
    write_executable(&staging.join("modprobe"), &module_loader(kernel))?;
    write_executable(&staging.join("stage2.sh"), &stage2(kernel, binaries, args))?;

    // `find . | cpio -o -H newc > initramfs.cpio` (the kernel takes it uncompressed).
    let list = output(Command::new("find").arg(".").current_dir(&staging))?;
    let image = cache.join("initramfs.cpio");
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(&staging)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&image)?)
        .spawn()
        .context("starting cpio (Debian package cpio)")?;
    cpio.stdin.take().unwrap().write_all(list.as_bytes())?;
    ensure!(cpio.wait()?.success(), "cpio failed");
    Ok(image)
}

/// Where the guest mounts tmpfs over the read-only host root.
const WRITABLE: &[&str] = &["/tmp", "/run", "/var/tmp"];

/// Of `paths` the guest needs from the host, those the tmpfs mounts would hide (a clone in
/// `/tmp`, say), without any inside another.
fn under_tmpfs(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths.retain(|p| WRITABLE.iter().any(|w| p.starts_with(w)));
    paths.sort();
    let mut kept: Vec<PathBuf> = Vec::new();
    for p in paths {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    kept
}

/// Stage 1, run by busybox as `/init`: mount the host's root over 9p and chroot into it.
/// `kept` host paths stay visible through the tmpfs mounts (moved bind mounts).
/// Verdict bytes: 0 passed, 1 tests failed, 2 harness failed.
fn stage1(kept: &[PathBuf]) -> String {
    let kept: Vec<String> = kept.iter().map(|p| quote(&p.to_string_lossy())).collect();
    let writable: Vec<&str> = WRITABLE.iter().map(|w| &w[1..]).collect();
    STAGE1
        .replace("@KEPT@", &kept.join(" "))
        .replace("@WRITABLE@", &writable.join(" "))
}

const STAGE1: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
verdict() {
    printf "\\$(printf %o "$1")" | dd of=/dev/port bs=1 seek=244 2>/dev/null
    poweroff -f
}
fail() { echo "vpn-ctl-guest: $*"; verdict 2; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do
    insmod "/modules/$m" || fail "insmod $m failed"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /host \
    || fail "mounting the host's root over 9p failed"
mount_at() { mount -t "$1" "$1" "/host/$2" || fail "mounting $1 on /$2 failed"; }
n=0
for p in @KEPT@; do
    mkdir -p "/keep/$n" && mount --bind "/host$p" "/keep/$n" || fail "keeping $p failed"
    n=$((n + 1))
done
for d in @WRITABLE@; do mount_at tmpfs "$d"; done
n=0
for p in @KEPT@; do
    mkdir -p "/host$p" && mount --move "/keep/$n" "/host$p" || fail "keeping $p failed"
    n=$((n + 1))
done
mount_at proc proc
mount_at sysfs sys
mount_at devtmpfs dev
mkdir -p /host/dev/pts /host/dev/shm
mount_at devpts dev/pts
mount_at tmpfs dev/shm
mount_at bpf sys/fs/bpf
echo /modprobe > /proc/sys/kernel/modprobe
cp /stage2.sh /host/run/vpn-ctl-guest.sh || fail "copying stage 2 failed"
chroot /host /bin/sh /run/vpn-ctl-guest.sh
case $? in
    0) verdict 0 ;;
    2) verdict 2 ;;
    *) verdict 1 ;;
esac
"#;

/// The kernel's module loader (`/proc/sys/kernel/modprobe`), which the kernel runs in stage
/// 1's root: the host's modprobe on the cached kernel's modules (the host has none for this
/// kernel), so `ip link add ... type bridge` autoloads as on an ordinary system.
fn module_loader(kernel: &Kernel) -> String {
    format!(
        "#!/bin/busybox sh\n[ -e /host{NO_AUTOLOAD} ] && exit 1\n\
         exec /bin/busybox chroot /host /sbin/modprobe -d {} \"$@\"\n",
        quote(&kernel.root.to_string_lossy())
    )
}

/// Stage 2, run by the host's `/bin/sh` inside the guest: module loader, modules, tests.
/// Exit status: 0 passed, 1 a test binary failed, 2 set-up failed.
fn stage2(kernel: &Kernel, binaries: &[TestBinary], args: &[String]) -> String {
    let root = quote(&kernel.root.to_string_lossy());
    let mut script = format!(
        r#"#!/bin/sh
echo "{READY_MARKER}"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp TMPDIR=/tmp RUST_BACKTRACE=1 VPN_CTL_GUEST=1
modprobe -d {root} -a {modules} || {{ echo "vpn-ctl-guest: loading modules failed"; exit 2; }}
ip link set lo up
echo "vpn-ctl-guest: kernel $(uname -r), {count} test binaries"
failed=""
run() {{
    name=$1; dir=$2; shift 2
    echo "vpn-ctl-guest: running $name"
    start=$(date +%s)
    (cd "$dir" && CARGO_MANIFEST_DIR="$dir" "$@")
    status=$?
    echo "vpn-ctl-guest: $name exited with $status after $(( $(date +%s) - start )) s"
    [ "$status" = 0 ] || failed="$failed $name"
}}
"#,
        modules = TEST_MODULES.join(" "),
        count = binaries.len(),
    );
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let run = |b: &TestBinary| {
        format!(
            "run {} {} {} {}\n",
            quote(&b.name),
            quote(&b.package_dir.to_string_lossy()),
            quote(&b.executable.to_string_lossy()),
            args.join(" ")
        )
    };
    // First, on a kernel without what a stock router may lack.
    for b in binaries.iter().filter(|b| b.name == WITHOUT_OPTIONAL) {
        script.push_str(&format!("touch {NO_AUTOLOAD}\n"));
        script.push_str(&run(b));
        script.push_str(&format!("rm -f {NO_AUTOLOAD}\n"));
    }
    script.push_str(&format!(
        "modprobe -d {root} -a {} || {{ echo \"vpn-ctl-guest: loading modules failed\"; exit 2; }}\n",
        LATE_MODULES.join(" ")
    ));
    for b in binaries.iter().filter(|b| b.name != WITHOUT_OPTIONAL) {
        script.push_str(&run(b));
    }
    script.push_str(
        r#"if [ -n "$failed" ]; then
    echo "vpn-ctl-guest: FAILED:$failed"
    exit 1
fi
echo "vpn-ctl-guest: all test binaries passed"
"#,
    );
    script
}

/// What became of a boot.
struct Outcome {
    /// QEMU's exit status.
    status: i32,
    /// When stage 2 started, counted from QEMU's start.
    ready: Option<Duration>,
}

/// Boots the guest, streams its console to stdout, and returns QEMU's exit status; kills it
/// after the timeout, printing the last console lines.
fn boot(kernel: &Kernel, initramfs: &Path, options: &Options) -> anyhow::Result<Outcome> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(accelerator())
        .args([
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            &options.memory.to_string(),
        ])
        .args([
            "-nodefaults",
            "-nographic",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(kernel.vmlinuz())
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
        ])
        .args(["-device", "virtio-rng-pci"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("xtask guest: booting {:?}", cmd);
    let started = Instant::now();
    let mut qemu = cmd
        .spawn()
        .context("starting qemu-system-x86_64 (Debian package qemu-system-x86)")?;
    let stdout = qemu.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            if tx.send(text).is_err() {
                break;
            }
            line.clear();
        }
    });
    let deadline = started + Duration::from_secs(options.timeout);
    let mut last: VecDeque<String> = VecDeque::new();
    let mut ready = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            let _ = qemu.kill();
            let _ = qemu.wait();
            eprintln!("xtask guest: last console lines:");
            for line in &last {
                eprintln!("  | {line}");
            }
            bail!(
                "the guest did not finish within {} s (hang or panic); stopped it",
                options.timeout
            );
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                if ready.is_none() && line.contains(READY_MARKER) {
                    ready = Some(started.elapsed());
                }
                println!("{line}");
                if last.len() == 40 {
                    last.pop_front();
                }
                last.push_back(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = qemu.wait().context("waiting for QEMU")?;
    let status = status.code().context("QEMU was killed by a signal")?;
    Ok(Outcome { status, ready })
}

/// KVM when the machine has a usable one (a loaded `kvm_intel` or `kvm_amd`), TCG otherwise.
/// Here `/dev/kvm` is a PVM module that cannot run a stock kernel, so TCG it is.
fn accelerator() -> [&'static str; 2] {
    let kvm = ["kvm_intel", "kvm_amd"]
        .iter()
        .any(|m| Path::new("/sys/module").join(m).exists())
        && Path::new("/dev/kvm").exists();
    ["-accel", if kvm { "kvm" } else { "tcg" }]
}

/// Single-quotes `s` for a POSIX shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_hidden_by_tmpfs_are_kept_and_none_twice() {
        let paths = [
            "/work/main",
            "/tmp/clone",
            "/tmp/clone/target/debug/deps",
            "/run/x",
            "/tmpfoo",
        ]
        .map(PathBuf::from)
        .to_vec();
        assert_eq!(
            under_tmpfs(paths),
            ["/run/x", "/tmp/clone"].map(PathBuf::from).to_vec()
        );
    }

    #[test]
    fn quoted_strings_reach_the_shell_unchanged() {
        for s in ["plain", "two words", "it's", "'$HOME' `x` \\ \"", ""] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
