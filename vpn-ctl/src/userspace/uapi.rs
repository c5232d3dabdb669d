//! The UAPI client of the userspace devices: [`get`], [`set`] and the request builder
//! [`SetRequest`], speaking <https://www.wireguard.com/xplatform/> over the device's socket.
//!
//! # The UAPI client, and why not wireguard-control's
//!
//! [`get`] and [`set`] speak the protocol of <https://www.wireguard.com/xplatform/> (`get=1`,
//! `set=1`, `key=value` lines, an empty line, and the answer `errno=N`) themselves.
//! wireguard-control 2.0's `Backend::Userspace` speaks the same protocol but cannot be used
//! as-is with boringtun:
//! - boringtun answers `own_public_key=` where other implementations answer `private_key=`;
//!   wireguard-control then reports no public key and *prints* `got unsupported info: ...` on
//!   stdout (which would corrupt `--json` output);
//! - it reads `last_handshake_time_sec` as a UNIX time, but boringtun sends the handshake's age,
//!   so every handshake appears to be from January 1970;
//! - when no socket answers, its `apply` starts `$WG_USERSPACE_IMPLEMENTATION` (`wireguard-go`
//!   by default) and sleeps 100 ms instead of waiting for readiness, and on `errno != 0` it
//!   prints `ERROR n` and returns `InvalidInput`, dropping the errno;
//! - it has no timeouts: a hung device hangs the caller;
//! - its `Device::list` only finds devices that wrote a `.name` file, which boringtun does not.
//!
//! # boringtun's quirks, and how they are handled
//!
//! - `get` returns `own_public_key=HEX` instead of `private_key=HEX` (the private key never
//!   leaves the device, which is good). [`DeviceState`] has `has_private_key` and `public_key`
//!   for both forms; a `private_key=` answer (other implementations) is turned into its public
//!   key at once and not kept.
//! - `last_handshake_time_sec`/`_nsec` are the time *since* the handshake, and the lines are
//!   absent when there was none; the protocol (and wireguard-go) send a UNIX time, `0` meaning
//!   never. [`PeerState::since_last_handshake`] is always the age, as of the `get`. Which form
//!   a device sends is told by its answer: `private_key=` or `protocol_version=` lines (which
//!   the protocol requires and boringtun never sends) mean the standard form.
//! - `preshared_key=` is sent in full by `get`; only its presence is kept
//!   ([`PeerState::has_preshared_key`]).
//! - A `set` that names a peer the device already has, without removing it first, makes
//!   boringtun panic ("Modifying existing peers is not yet supported"), and so does adding a peer
//!   before the device has a private key. A panic inside its event loop holds the device's
//!   write lock forever: the socket then accepts connections and never answers. [`set`]
//!   therefore checks a request against the device's current state first and refuses those
//!   cases with an explanation (remove the peer with `remove=true` and add it again), and
//!   [`run_device`](super::run_device) turns any remaining panic into an exit of the process (removing its socket)
//!   rather than a hang. All requests carry timeouts ([`IO_TIMEOUT`](super::IO_TIMEOUT)).
//! - Within one `set`, boringtun resets only `allowed_ip` between peer sections: `remove`,
//!   `endpoint`, `persistent_keepalive_interval` and `preshared_key` carry over from one peer
//!   to the next (a second peer gets the first one's preshared key; removing and re-adding a
//!   peer in one request removes it twice). [`set`] sends a body with several peers to
//!   boringtun as one request per peer.
//! - `replace_allowed_ips` is accepted and ignored (only a new peer gets allowed IPs).
//! - The device listens on a random UDP port from the start, before any key is set, and a
//!   UDP datagram arriving there before the key is set makes it panic (`Key not
//!   set`), which ends the process as above: set the private key right after [`start`](super::start).
//!
//! Private and preshared keys are only written through [`SetRequest`] (whose `Debug` is
//! redacted and whose buffer is wiped on drop); errors never quote a request.
//!
//! [boringtun]: https://github.com/cloudflare/boringtun

use super::*;

/// What a userspace device reports (`wg show NAME`), from a UAPI `get=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// Whether a private key is set. The key itself is never read back.
    pub has_private_key: bool,
    /// The public key of the private key, when one is set.
    pub public_key: Option<PublicKey>,
    /// The UDP port it listens on (boringtun picks a random one until one is set).
    pub listen_port: Option<u16>,
    /// The firewall mark of its UDP packets; `None` when unset or 0.
    pub fwmark: Option<u32>,
    pub peers: Vec<PeerState>,
    /// Whether the answer was in boringtun's form (see the module docs); decides which
    /// requests [`set`] refuses.
    pub(super) boringtun: bool,
}

/// One peer of a [`DeviceState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub public_key: PublicKey,
    /// Whether a preshared key is set. The key itself is not kept.
    pub has_preshared_key: bool,
    /// The current endpoint: configured, or learnt from the peer's last authenticated packet.
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    /// How long ago the last handshake completed, as of the `get`; `None` if there was none.
    /// Normalized from boringtun's age and from the protocol's UNIX time alike.
    pub since_last_handshake: Option<Duration>,
    /// Bytes received from the peer (WireGuard packets, after decryption accounting).
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
    /// The persistent keepalive interval in seconds; `None` when off.
    pub persistent_keepalive: Option<u16>,
}

impl DeviceState {
    /// The peer with this public key.
    pub fn peer(&self, key: &PublicKey) -> Option<&PeerState> {
        self.peers.iter().find(|p| &p.public_key == key)
    }
}

/// Reads the state of device `name` (`wg show NAME`, UAPI `get=1`).
pub fn get(name: &str) -> anyhow::Result<DeviceState> {
    crate::link::check_name(name)?;
    let mut stream = connect_running(name)?;
    let mut answer = request(&mut stream, name, "get=1\n\n")?;
    let state = parse_get(&answer, SystemTime::now())
        .with_context(|| format!("bad answer to get=1 from {}", socket_path(name).display()));
    wipe(&mut answer);
    state
}

/// Applies a UAPI `set=1` request to device `name` (`wg set NAME ...`). `body` is the lines
/// between `set=1` and the final empty line, each ending in `\n`: build it with [`SetRequest`].
///
/// On a boringtun device (see the module docs), requests that would make it panic are refused
/// before anything is sent (that needs a `get` first), and a body with several peers is sent
/// as one request per peer, so that no peer inherits another's attributes. boringtun applies
/// each peer as it reads it in either case; if one fails, the peers before it stay applied
/// and the error names the failing peer.
pub fn set(name: &str, body: &str) -> anyhow::Result<()> {
    crate::link::check_name(name)?;
    check_body_syntax(body)?;
    let current = get(name)?;
    let chunks = if current.boringtun {
        check_boringtun_limits(body, &current)?;
        split_peer_sections(body)
    } else {
        vec![body]
    };
    for (i, chunk) in chunks.iter().enumerate() {
        let result = set_once(name, chunk);
        if chunks.len() > 1 {
            result.with_context(|| {
                format!(
                    "part {} of {} of the set request{} (boringtun gets one peer per request; \
                     the parts before it are applied)",
                    i + 1,
                    chunks.len(),
                    peer_of(chunk).map_or(String::new(), |k| format!(", peer {k}"))
                )
            })?;
        } else {
            result?;
        }
    }
    Ok(())
}

/// One `set=1` request.
pub(super) fn set_once(name: &str, body: &str) -> anyhow::Result<()> {
    let mut stream = connect_running(name)?;
    let mut text = String::with_capacity(body.len() + 8);
    text.push_str("set=1\n");
    text.push_str(body);
    text.push('\n');
    let answer = request(&mut stream, name, &text);
    wipe(&mut text);
    let answer = answer?;
    match errno_of(&answer) {
        Some(0) => Ok(()),
        Some(errno) => Err(io::Error::from_raw_os_error(errno)).with_context(|| {
            format!(
                "{} refused the set request (errno={errno})",
                socket_path(name).display()
            )
        }),
        None => bail!(
            "{} answered the set request without errno=",
            socket_path(name).display()
        ),
    }
}

/// Splits a set body before every `public_key=` line but the first: the device attributes
/// and the first peer, then one part per further peer.
pub(super) fn split_peer_sections(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut offset, mut seen_peer) = (0, 0, false);
    for line in body.split_inclusive('\n') {
        if line.starts_with("public_key=") {
            if seen_peer {
                parts.push(&body[start..offset]);
                start = offset;
            }
            seen_peer = true;
        }
        offset += line.len();
    }
    if start < body.len() || parts.is_empty() {
        parts.push(&body[start..]);
    }
    parts
}

/// The peer a set body's first peer section names, for an error message.
pub(super) fn peer_of(body: &str) -> Option<PublicKey> {
    body.lines()
        .find_map(|l| l.strip_prefix("public_key="))
        .and_then(hex_public)
}

/// Connects to the socket of a device, with an error that says what is missing.
pub(super) fn connect_running(name: &str) -> anyhow::Result<UnixStream> {
    connect(name).map_err(|e| {
        let path = socket_path(name);
        let kind = e.downcast_ref::<io::Error>().map(io::Error::kind);
        match kind {
            Some(io::ErrorKind::NotFound) => anyhow!(
                "no userspace WireGuard device {name}: {} does not exist (is it started? \
                 `vpn-ctl up` starts it)",
                path.display()
            ),
            Some(io::ErrorKind::ConnectionRefused) => anyhow!(
                "no userspace WireGuard device {name}: nothing listens on {} (a stale socket \
                 left by a process that died)",
                path.display()
            ),
            _ => e,
        }
    })
}

/// Connects with timeouts; the error is the bare `io::Error` (with the path as context).
pub(super) fn connect(name: &str) -> anyhow::Result<UnixStream> {
    let path = socket_path(name);
    let stream = UnixStream::connect(&path)
        .map_err(anyhow::Error::from)
        .map_err(|e| e.context(format!("connect to {}", path.display())))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Sends one request and reads the answer up to and including its `errno=` line.
pub(super) fn request(stream: &mut UnixStream, name: &str, text: &str) -> anyhow::Result<String> {
    let path = socket_path(name);
    let timeout = |e: io::Error| -> anyhow::Error {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            anyhow!(
                "{} accepted the connection but did not answer within {IO_TIMEOUT:?}: the \
                 device process (userspace WireGuard {name}) is hung",
                path.display()
            )
        } else {
            anyhow::Error::from(e).context(format!("UAPI request to {}", path.display()))
        }
    };
    stream.write_all(text.as_bytes()).map_err(timeout)?;
    // Bounded, so a device that answers without end cannot take the router's memory.
    let mut reader = BufReader::new((&*stream).take(ANSWER_MAX));
    let mut answer = String::new();
    loop {
        let start = answer.len();
        let n = reader.read_line(&mut answer).map_err(timeout)?;
        if n == 0 && answer.len() as u64 >= ANSWER_MAX {
            wipe(&mut answer);
            bail!(
                "{} answered more than {ANSWER_MAX} bytes without ending its answer: the device \
                 process (userspace WireGuard {name}) misbehaves; restart it with `vpn-ctl down` \
                 and `vpn-ctl up`",
                path.display()
            );
        }
        if n == 0 {
            bail!(
                "{} closed the connection before errno=: {}",
                path.display(),
                if answer.is_empty() {
                    "no answer"
                } else {
                    "truncated answer"
                }
            );
        }
        if answer[start..].starts_with("errno=") {
            return Ok(answer);
        }
    }
}

pub(super) fn errno_of(answer: &str) -> Option<i32> {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("errno="))
        .and_then(|v| v.trim().parse().ok())
}

/// Overwrites a buffer that may have held key material.
pub(super) fn wipe(text: &mut String) {
    // SAFETY: zero bytes are valid UTF-8.
    for b in unsafe { text.as_bytes_mut() } {
        // SAFETY: a valid, aligned, exclusive reference to a byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    text.clear();
}

/// Parses a `get=1` answer. `now` turns the protocol's UNIX handshake times into ages.
pub(super) fn parse_get(answer: &str, now: SystemTime) -> anyhow::Result<DeviceState> {
    #[derive(Default)]
    struct Handshake {
        sec: u64,
        nsec: u32,
        seen: bool,
    }
    let mut device = DeviceState {
        has_private_key: false,
        public_key: None,
        listen_port: None,
        fwmark: None,
        peers: Vec::new(),
        boringtun: true,
    };
    let mut handshakes: Vec<Handshake> = Vec::new();
    let mut errno = None;
    for line in answer.lines() {
        if line.is_empty() {
            break;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow!("line without `=`: {:?}", redact(line)))?;
        let bad = || anyhow!("bad value for {key}");
        let peer = device.peers.last_mut();
        match (key, peer) {
            ("errno", _) => errno = Some(value.parse::<i32>().map_err(|_| bad())?),
            ("private_key", _) => {
                device.boringtun = false;
                let key = Key::from_hex(value).map_err(|_| bad())?;
                if key.as_bytes() != [0; 32] {
                    device.has_private_key = true;
                    device.public_key = Some(Secret::from_wg(&key).public_key());
                }
            }
            ("own_public_key", _) => {
                device.has_private_key = true;
                device.public_key = Some(hex_public(value).ok_or_else(bad)?);
            }
            ("listen_port", _) => {
                device.listen_port = Some(value.parse().map_err(|_| bad())?).filter(|&p| p != 0)
            }
            ("fwmark", _) => {
                device.fwmark = Some(value.parse().map_err(|_| bad())?).filter(|&m| m != 0)
            }
            ("public_key", _) => {
                device.peers.push(PeerState {
                    public_key: hex_public(value).ok_or_else(bad)?,
                    has_preshared_key: false,
                    endpoint: None,
                    allowed_ips: Vec::new(),
                    since_last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    persistent_keepalive: None,
                });
                handshakes.push(Handshake::default());
            }
            (_, None) => log::debug!("UAPI get: ignoring device attribute {key}"),
            ("protocol_version", Some(_)) => device.boringtun = false,
            ("preshared_key", Some(p)) => {
                let key = Key::from_hex(value).map_err(|_| bad())?;
                p.has_preshared_key = key.as_bytes() != [0; 32];
            }
            ("endpoint", Some(p)) => p.endpoint = Some(value.parse().map_err(|_| bad())?),
            ("allowed_ip", Some(p)) => p.allowed_ips.push(value.parse().map_err(|_| bad())?),
            ("rx_bytes", Some(p)) => p.rx_bytes = value.parse().map_err(|_| bad())?,
            ("tx_bytes", Some(p)) => p.tx_bytes = value.parse().map_err(|_| bad())?,
            ("persistent_keepalive_interval", Some(p)) => {
                p.persistent_keepalive =
                    Some(value.parse().map_err(|_| bad())?).filter(|&k: &u16| k != 0)
            }
            ("last_handshake_time_sec", Some(_)) => {
                let h = handshakes.last_mut().expect("one per peer");
                h.sec = value.parse().map_err(|_| bad())?;
                h.seen = true;
            }
            ("last_handshake_time_nsec", Some(_)) => {
                let h = handshakes.last_mut().expect("one per peer");
                h.nsec = value.parse().map_err(|_| bad())?;
                h.seen = true;
            }
            (_, Some(_)) => log::debug!("UAPI get: ignoring peer attribute {key}"),
        }
    }
    match errno {
        Some(0) => {}
        Some(n) => {
            return Err(io::Error::from_raw_os_error(n)).context(format!("get=1 gave errno={n}"));
        }
        None => bail!("no errno= line"),
    }
    for (peer, h) in device.peers.iter_mut().zip(handshakes) {
        let nsec = Duration::from_nanos(u64::from(h.nsec.min(999_999_999)));
        peer.since_last_handshake = if !h.seen {
            None
        } else if device.boringtun {
            // boringtun: the age itself; present only after a handshake (0 is "just now").
            Some(Duration::from_secs(h.sec) + nsec)
        } else if h.sec == 0 && h.nsec == 0 {
            // The protocol: a UNIX time, 0 for never.
            None
        } else {
            // A time past what SystemTime holds is in the future, like one past `now`: age 0.
            let at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(h.sec) + nsec);
            Some(at.map_or(Duration::ZERO, |at| {
                now.duration_since(at).unwrap_or(Duration::ZERO)
            }))
        };
    }
    Ok(device)
}

pub(super) fn hex_public(value: &str) -> Option<PublicKey> {
    Key::from_hex(value).ok().map(|k| PublicKey::from_wg(&k))
}

/// A line for an error message, without a value that may be a key.
pub(super) fn redact(line: &str) -> String {
    match line.split_once('=') {
        Some((key, _)) => format!("{key}=..."),
        None if line.chars().count() > 16 => {
            format!("{}...", line.chars().take(16).collect::<String>())
        }
        None => line.to_owned(),
    }
}

/// A set body must be `key=value` lines, each ending in `\n`, with no empty line (an empty
/// line ends the request early).
pub(super) fn check_body_syntax(body: &str) -> anyhow::Result<()> {
    if !body.is_empty() && !body.ends_with('\n') {
        bail!("a UAPI set body must end with a newline");
    }
    for (n, line) in body.lines().enumerate() {
        if line.is_empty() {
            bail!(
                "line {} of the set body is empty: that would end the request early",
                n + 1
            );
        }
        if !line.contains('=') {
            bail!(
                "line {} of the set body is not key=value: {:?}",
                n + 1,
                redact(line)
            );
        }
        if line.starts_with("get=") || line.starts_with("set=") {
            bail!(
                "line {} of the set body is a command line ({}); pass only the lines after set=1",
                n + 1,
                redact(line)
            );
        }
    }
    Ok(())
}

/// Refuses the requests that make boringtun 0.7 panic (and hang; see the module docs).
pub(super) fn check_boringtun_limits(body: &str, current: &DeviceState) -> anyhow::Result<()> {
    struct Section {
        key: PublicKey,
        remove: bool,
    }
    fn close(
        section: Option<Section>,
        has_key: bool,
        peers: &mut HashSet<PublicKey>,
    ) -> anyhow::Result<()> {
        let Some(s) = section else { return Ok(()) };
        if s.remove {
            peers.remove(&s.key);
        } else if !peers.insert(s.key.clone()) {
            bail!(
                "boringtun cannot change peer {} in place (it would panic and hang the device): \
                 remove it first (public_key=... then remove=true) and add it again, in the same \
                 request if you like",
                s.key
            );
        } else if !has_key {
            bail!(
                "boringtun needs the device's private key before any peer (it would panic and \
                 hang the device): put private_key= before the first public_key="
            );
        }
        Ok(())
    }

    let mut has_key = current.has_private_key;
    let mut peers: HashSet<PublicKey> =
        current.peers.iter().map(|p| p.public_key.clone()).collect();
    let mut section: Option<Section> = None;
    for line in body.lines() {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        match key {
            "private_key" => has_key = true,
            "replace_peers" if value == "true" && section.is_none() => peers.clear(),
            "public_key" => {
                close(section.take(), has_key, &mut peers)?;
                let key = hex_public(value).ok_or_else(|| anyhow!("bad public_key in set body"))?;
                section = Some(Section { key, remove: false });
            }
            "remove" => {
                if let Some(s) = section.as_mut() {
                    s.remove = value == "true";
                }
            }
            _ => {}
        }
    }
    close(section, has_key, &mut peers)
}

/// A UAPI `set=1` request body, built in the protocol's order: device attributes, then peers.
/// Keys are written in hex, as the protocol wants. `Debug` shows no key material and the
/// buffer is wiped on drop.
///
/// ```
/// # use vpn_ctl::{key::Secret, userspace::SetRequest};
/// let (ours, theirs) = (Secret::generate_private(), Secret::generate_private());
/// let request = SetRequest::new()
///     .private_key(&ours)
///     .listen_port(51820)
///     .peer(&theirs.public_key(), |p| {
///         p.endpoint("192.0.2.1:51820".parse().unwrap())
///             .allowed_ip("10.0.0.2/32".parse().unwrap())
///     });
/// assert!(request.as_uapi().starts_with("private_key="));
/// // vpn_ctl::userspace::set("wg0", request.as_uapi())?;
/// ```
#[derive(Default)]
pub struct SetRequest {
    body: String,
}

/// The attributes of one peer section of a [`SetRequest`].
pub struct PeerRequest<'a> {
    body: &'a mut String,
}

impl SetRequest {
    pub fn new() -> SetRequest {
        SetRequest::default()
    }

    fn line(mut self, key: &str, value: impl fmt::Display) -> SetRequest {
        use fmt::Write as _;
        let _ = writeln!(self.body, "{key}={value}");
        self
    }

    /// `private_key=`: the device's private key.
    pub fn private_key(self, key: &Secret) -> SetRequest {
        self.line("private_key", Hex(key.to_wg().as_bytes()))
    }

    /// `listen_port=`.
    pub fn listen_port(self, port: u16) -> SetRequest {
        self.line("listen_port", port)
    }

    /// `fwmark=`: the mark of the device's UDP packets (0 removes it).
    pub fn fwmark(self, mark: u32) -> SetRequest {
        self.line("fwmark", mark)
    }

    /// `replace_peers=true`: remove every peer not (re)added by this request.
    pub fn replace_peers(self) -> SetRequest {
        self.line("replace_peers", "true")
    }

    /// `public_key=` and the peer's attributes, set by `f`.
    pub fn peer(
        mut self,
        key: &PublicKey,
        f: impl FnOnce(PeerRequest<'_>) -> PeerRequest<'_>,
    ) -> SetRequest {
        self = self.line("public_key", Hex(key.as_bytes()));
        f(PeerRequest {
            body: &mut self.body,
        });
        self
    }

    /// The body to pass to [`set`]. Contains key material: do not log it.
    pub fn as_uapi(&self) -> &str {
        &self.body
    }
}

impl PeerRequest<'_> {
    fn line(self, key: &str, value: impl fmt::Display) -> Self {
        use fmt::Write as _;
        let _ = writeln!(self.body, "{key}={value}");
        self
    }

    /// `remove=true`: remove the peer.
    pub fn remove(self) -> Self {
        self.line("remove", "true")
    }

    /// `preshared_key=`.
    pub fn preshared_key(self, key: &Secret) -> Self {
        self.line("preshared_key", Hex(key.to_wg().as_bytes()))
    }

    /// `endpoint=IP:PORT` (`[IPv6]:PORT`).
    pub fn endpoint(self, endpoint: SocketAddr) -> Self {
        self.line("endpoint", endpoint)
    }

    /// `persistent_keepalive_interval=` in seconds (0 turns it off).
    pub fn persistent_keepalive(self, seconds: u16) -> Self {
        self.line("persistent_keepalive_interval", seconds)
    }

    /// `replace_allowed_ips=true` (ignored by boringtun; see the module docs).
    pub fn replace_allowed_ips(self) -> Self {
        self.line("replace_allowed_ips", "true")
    }

    /// `allowed_ip=`.
    pub fn allowed_ip(self, net: IpNet) -> Self {
        self.line("allowed_ip", net)
    }
}

impl fmt::Debug for SetRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SetRequest({} lines, <redacted>)",
            self.body.lines().count()
        )
    }
}

impl Drop for SetRequest {
    fn drop(&mut self) {
        wipe(&mut self.body);
    }
}

/// Lowercase hex of some bytes, written without an intermediate `String`.
pub(super) struct Hex<'a>(pub(super) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
