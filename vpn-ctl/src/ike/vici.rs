//! The VICI client: charon's commands as typed calls over its UNIX socket.
//!
//! The transport and the message encoding are `rsvici` and `serde_vici` (see the module
//! documentation for why). charon answers requests one at a time and `rsvici` keeps no
//! sequence numbers, so a [`Vici`] takes `&mut self` for every call.
//!
//! Answers are read into a [`ViciValue`] tree (strings, lists, sections) and picked apart
//! here, not deserialized into structs field by field: charon adds and drops keys between
//! versions and sends every number as text, and a tree turns either into a clear error
//! ("list-sa: child SA x has no spi-in") instead of a serde message about a byte offset.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use futures::{StreamExt as _, pin_mut};
use serde::{Deserialize, Serialize, Serializer, de};

use crate::config::ipsec::SecretBytes;

/// Where charon's VICI socket is unless `charon.plugins.vici.socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/charon.vici";

/// How long a plain request (not initiate/terminate) may take before vpn-ctl gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A value in a VICI message: a string, a list of strings, or a section of named values.
/// Strings are bytes on the wire; they are kept as text (lossily) since charon sends text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViciValue {
    Str(String),
    List(Vec<String>),
    Section(BTreeMap<String, ViciValue>),
}

impl ViciValue {
    /// The value of `key` in a section.
    pub fn get(&self, key: &str) -> Option<&ViciValue> {
        match self {
            ViciValue::Section(map) => map.get(key),
            _ => None,
        }
    }

    /// The string under `key`, if it is one.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            ViciValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number under `key` (charon sends numbers as decimal text).
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.str(key)?.trim().parse().ok()
    }

    /// The list under `key`; empty when missing.
    pub fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(ViciValue::List(items)) => items.clone(),
            Some(ViciValue::Str(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    /// `yes` under `key`.
    pub fn yes(&self, key: &str) -> bool {
        self.str(key) == Some("yes")
    }

    /// The section's entries; empty for a string or a list.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &ViciValue)> {
        let map = match self {
            ViciValue::Section(map) => Some(map),
            _ => None,
        };
        map.into_iter().flatten()
    }

    /// `key = value` lines, nested keys joined with dots, in key order: a stable text form of
    /// a message (what [`super::conn::Connection::record`] stores and diffs).
    pub fn flatten(&self) -> Vec<(String, String)> {
        fn walk(prefix: &str, value: &ViciValue, out: &mut Vec<(String, String)>) {
            match value {
                ViciValue::Str(s) => out.push((prefix.to_string(), s.clone())),
                ViciValue::List(items) => out.push((prefix.to_string(), items.join(", "))),
                ViciValue::Section(map) => {
                    for (key, value) in map {
                        let key = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        walk(&key, value, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk("", self, &mut out);
        out
    }
}

impl fmt::Display for ViciValue {
    /// The form `swanctl --raw` prints: `key=value list=[a b] section {...}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViciValue::Str(s) => f.write_str(s),
            ViciValue::List(items) => write!(f, "[{}]", items.join(" ")),
            ViciValue::Section(map) => {
                f.write_str("{")?;
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    match value {
                        ViciValue::Section(_) => write!(f, "{key} {value}")?,
                        _ => write!(f, "{key}={value}")?,
                    }
                }
                f.write_str("}")
            }
        }
    }
}

/// Sections and lists nested deeper than this are refused. charon's answers nest a few
/// levels; decoding recurses once per level, and a message of nested sections (3 bytes
/// each) would overflow the stack (an abort, not an error) long before any size limit.
pub const MAX_NESTING: usize = 64;

thread_local! {
    /// How deep the [`ViciValue`] being decoded on this thread is (decoding is synchronous).
    static NESTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<'de> Deserialize<'de> for ViciValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<ViciValue, D::Error> {
        /// Leaves a level on drop, also when decoding fails.
        struct Level(usize);
        impl Drop for Level {
            fn drop(&mut self) {
                NESTING.set(self.0);
            }
        }

        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = ViciValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a VICI string, list or section")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ViciValue, E> {
                Ok(ViciValue::Str(v.to_string()))
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ViciValue, E> {
                Ok(ViciValue::Str(String::from_utf8_lossy(v).into_owned()))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ViciValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<ViciValue>()? {
                    match item {
                        ViciValue::Str(s) => items.push(s),
                        other => items.push(other.to_string()),
                    }
                }
                Ok(ViciValue::List(items))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ViciValue, A::Error> {
                let mut section = BTreeMap::new();
                while let Some((key, value)) = map.next_entry::<String, ViciValue>()? {
                    section.insert(key, value);
                }
                Ok(ViciValue::Section(section))
            }
        }

        let depth = NESTING.get();
        if depth >= MAX_NESTING {
            return Err(de::Error::custom(format!(
                "VICI message nested more than {MAX_NESTING} levels deep"
            )));
        }
        NESTING.set(depth + 1);
        let _level = Level(depth);
        deserializer.deserialize_any(Visitor)
    }
}

/// Bytes sent as one VICI value (serde would send a `&[u8]` as a list of numbers).
pub(crate) struct RawBytes<'a>(pub &'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A shared secret for `load-shared`: a PSK and the identities it belongs to.
#[derive(Debug, Clone)]
pub struct SharedKey {
    /// charon's handle for the key (`load-shared id`, `unload-shared id`).
    pub id: String,
    /// The identities whose key it is (`left.domain.com`, `fqdn:right.domain.com`, an
    /// address); none: any identity.
    pub owners: Vec<String>,
    /// Redacted in `Debug`.
    pub secret: SecretBytes,
}

/// The `load-shared` message. No `Debug`: it holds the key.
#[derive(Serialize)]
struct LoadShared<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    data: RawBytes<'a>,
    owners: &'a [String],
}

impl<'a> LoadShared<'a> {
    fn new(key: &'a SharedKey) -> LoadShared<'a> {
        LoadShared {
            id: &key.id,
            kind: "IKE",
            data: RawBytes(key.secret.expose()),
            owners: &key.owners,
        }
    }
}

/// The `load-shared` message's bytes (for tests: they hold the key).
#[cfg(test)]
pub(crate) fn load_shared_message(key: &SharedKey) -> anyhow::Result<Vec<u8>> {
    Ok(serde_vici::to_vec(&LoadShared::new(key))?)
}

/// charon's answer to a command.
#[derive(Debug, Deserialize)]
struct Reply {
    success: Option<bool>,
    errmsg: Option<String>,
}

impl Reply {
    fn check(self, command: &str) -> anyhow::Result<()> {
        match self.success {
            Some(false) => bail!(
                "charon refused {command}: {}",
                self.errmsg.as_deref().unwrap_or("no reason given")
            ),
            _ => Ok(()),
        }
    }
}

/// A log line charon streams during `initiate` and `terminate` (`control-log`).
#[derive(Debug, Clone, Deserialize)]
pub struct ControlLog {
    pub group: Option<String>,
    pub level: Option<String>,
    pub msg: String,
}

/// An IKE SA as `list-sas` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IkeSa {
    /// The connection name it was set up from.
    pub name: String,
    /// charon's unique id for this SA (a new one after every re-establishment).
    pub unique_id: u64,
    /// 1 or 2.
    pub version: u8,
    /// `ESTABLISHED`, `CONNECTING`, `DELETING`, ...
    pub state: String,
    pub local_host: Option<String>,
    pub local_id: Option<String>,
    pub remote_host: Option<String>,
    pub remote_id: Option<String>,
    pub initiator: bool,
    pub initiator_spi: Option<String>,
    pub responder_spi: Option<String>,
    /// `AES_CBC-256/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024`.
    pub algorithms: String,
    /// Seconds since it was established.
    pub established: Option<u64>,
    /// Seconds until charon rekeys (IKEv2) or re-authenticates (IKEv1) it.
    pub rekey_time: Option<u64>,
    pub reauth_time: Option<u64>,
    pub nat: bool,
    pub children: Vec<ChildSa>,
}

impl IkeSa {
    /// Established (or in the middle of a rekeying that keeps it usable).
    pub fn is_established(&self) -> bool {
        matches!(self.state.as_str(), "ESTABLISHED" | "REKEYING" | "REKEYED")
    }
}

/// A CHILD SA (a pair of ESP SAs in the kernel) as `list-sas` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildSa {
    /// The child config's name.
    pub name: String,
    pub unique_id: u64,
    pub reqid: Option<u32>,
    /// `INSTALLED`, `REKEYING`, `DELETING`, ...
    pub state: String,
    pub mode: Option<String>,
    pub protocol: Option<String>,
    /// UDP-encapsulated (NAT-T).
    pub encap: bool,
    pub spi_in: Option<u32>,
    pub spi_out: Option<u32>,
    /// `AES_CBC-256/HMAC_SHA1_96/MODP_1024`.
    pub algorithms: String,
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    /// Seconds since the last packet each way, if any.
    pub use_in: Option<u64>,
    pub use_out: Option<u64>,
    /// Seconds since it was installed, until it is rekeyed, until it expires.
    pub install_time: Option<u64>,
    pub rekey_time: Option<u64>,
    pub life_time: Option<u64>,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
}

impl ChildSa {
    /// Installed in the kernel and carrying traffic (also while it is being rekeyed).
    pub fn is_installed(&self) -> bool {
        matches!(self.state.as_str(), "INSTALLED" | "REKEYING" | "UPDATING")
    }
}

/// A connection as `list-conns` reports it: what charon shows of a loaded config. (It does
/// not show proposals, aggressive mode, lifetimes or start actions; see
/// [`super::conn::Connection::record`] for how `up` still tells those apart.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedConn {
    pub name: String,
    pub local_addrs: Vec<String>,
    pub remote_addrs: Vec<String>,
    /// `IKEv1`, `IKEv2` or `0` (any).
    pub version: String,
    pub rekey_time: Option<u64>,
    pub dpd_delay: Option<u64>,
    /// The identities of the first local and remote authentication rounds.
    pub local_id: Option<String>,
    pub remote_id: Option<String>,
    /// Child configs: name -> (local TS, remote TS).
    pub children: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

/// Parses one `list-sa` event (`{name {uniqueid=.. child-sas {..}}}`).
pub fn ike_sas_from_event(event: &ViciValue) -> anyhow::Result<Vec<IkeSa>> {
    event
        .entries()
        .map(|(name, sa)| ike_sa(name, sa).with_context(|| format!("list-sa: IKE SA {name}")))
        .collect()
}

fn algorithms(v: &ViciValue, keys: &[&str]) -> String {
    let mut parts = Vec::new();
    for key in keys {
        if let Some(alg) = v.str(key) {
            match v.str(&format!("{}-keysize", key.trim_end_matches("-alg"))) {
                Some(size) => parts.push(format!("{alg}-{size}")),
                None => parts.push(alg.to_string()),
            }
        }
    }
    parts.join("/")
}

fn hex_spi(v: &ViciValue, key: &str) -> anyhow::Result<Option<u32>> {
    v.str(key)
        .map(|s| {
            u32::from_str_radix(s.trim_start_matches("0x"), 16)
                .map_err(|e| anyhow!("{key} {s:?} is not a hex SPI: {e}"))
        })
        .transpose()
}

fn ike_sa(name: &str, v: &ViciValue) -> anyhow::Result<IkeSa> {
    let children = v
        .get("child-sas")
        .map(|c| {
            c.entries()
                .map(|(key, child)| child_sa(key, child).with_context(|| format!("child SA {key}")))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(IkeSa {
        name: name.to_string(),
        unique_id: v.u64("uniqueid").context("no uniqueid")?,
        version: v.u64("version").unwrap_or(0) as u8,
        state: v.str("state").context("no state")?.to_string(),
        local_host: v.str("local-host").map(str::to_string),
        local_id: v.str("local-id").map(str::to_string),
        remote_host: v.str("remote-host").map(str::to_string),
        remote_id: v.str("remote-id").map(str::to_string),
        initiator: v.yes("initiator"),
        initiator_spi: v.str("initiator-spi").map(str::to_string),
        responder_spi: v.str("responder-spi").map(str::to_string),
        algorithms: algorithms(v, &["encr-alg", "integ-alg", "prf-alg", "dh-group"]),
        established: v.u64("established"),
        rekey_time: v.u64("rekey-time"),
        reauth_time: v.u64("reauth-time"),
        nat: v.yes("nat-any"),
        children,
    })
}

fn child_sa(key: &str, v: &ViciValue) -> anyhow::Result<ChildSa> {
    // Since 5.5 children are keyed `name-uniqueid` and carry their name inside.
    let name = v.str("name").unwrap_or(key).to_string();
    Ok(ChildSa {
        name,
        unique_id: v.u64("uniqueid").context("no uniqueid")?,
        reqid: v.u64("reqid").map(|r| r as u32),
        state: v.str("state").context("no state")?.to_string(),
        mode: v.str("mode").map(str::to_string),
        protocol: v.str("protocol").map(str::to_string),
        encap: v.yes("encap"),
        spi_in: hex_spi(v, "spi-in")?,
        spi_out: hex_spi(v, "spi-out")?,
        algorithms: algorithms(v, &["encr-alg", "integ-alg", "dh-group"]),
        bytes_in: v.u64("bytes-in").unwrap_or(0),
        packets_in: v.u64("packets-in").unwrap_or(0),
        bytes_out: v.u64("bytes-out").unwrap_or(0),
        packets_out: v.u64("packets-out").unwrap_or(0),
        use_in: v.u64("use-in"),
        use_out: v.u64("use-out"),
        install_time: v.u64("install-time"),
        rekey_time: v.u64("rekey-time"),
        life_time: v.u64("life-time"),
        local_ts: v.list("local-ts"),
        remote_ts: v.list("remote-ts"),
    })
}

/// Parses one `list-conn` event.
pub fn conns_from_event(event: &ViciValue) -> Vec<LoadedConn> {
    event
        .entries()
        .map(|(name, v)| {
            // Authentication rounds are sections `local-1`, `remote-1`, ...
            let round_id = |side: &str| {
                v.entries()
                    .filter(|(key, _)| {
                        key.strip_prefix(side)
                            .and_then(|n| n.strip_prefix('-'))
                            .is_some_and(|n| n.parse::<u32>().is_ok())
                    })
                    .min_by_key(|(key, _)| key.len())
                    .and_then(|(_, round)| round.str("id").map(str::to_string))
            };
            let children = v
                .get("children")
                .map(|c| {
                    c.entries()
                        .map(|(child, cv)| {
                            (child.clone(), (cv.list("local-ts"), cv.list("remote-ts")))
                        })
                        .collect()
                })
                .unwrap_or_default();
            LoadedConn {
                name: name.clone(),
                local_addrs: v.list("local_addrs"),
                remote_addrs: v.list("remote_addrs"),
                version: v.str("version").unwrap_or("0").to_string(),
                rekey_time: v.u64("rekey_time"),
                dpd_delay: v.u64("dpd_delay"),
                local_id: round_id("local"),
                remote_id: round_id("remote"),
                children,
            }
        })
        .collect()
}

/// A connection to charon's VICI socket.
pub struct Vici {
    client: rsvici::Client,
    socket: PathBuf,
}

impl fmt::Debug for Vici {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vici")
            .field("socket", &self.socket)
            .finish()
    }
}

impl Vici {
    /// Connects to charon's VICI socket (`swanctl --uri unix://SOCKET`).
    pub async fn connect(socket: &Path) -> anyhow::Result<Vici> {
        let client = rsvici::unix::connect(socket).await.with_context(|| {
            format!(
                "cannot reach charon's VICI socket {}: is charon running? (vpn-ctl starts one \
                 where none runs; a charon started otherwise names its socket in \
                 charon.plugins.vici.socket of its strongswan.conf)",
                socket.display()
            )
        })?;
        Ok(Vici {
            client,
            socket: socket.to_path_buf(),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn request<T: Serialize>(
        &mut self,
        command: &str,
        message: T,
    ) -> anyhow::Result<ViciValue> {
        let socket = self.socket.display().to_string();
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.client.request::<T, ViciValue>(command, message),
        )
        .await
        .map_err(|_| {
            anyhow!("charon ({socket}) did not answer {command} within {REQUEST_TIMEOUT:?}")
        })?
        .map_err(|e| anyhow!("VICI {command} on {socket}: {e}"))?;
        Ok(answer)
    }

    /// A command whose answer is `success`/`errmsg`.
    async fn command<T: Serialize>(&mut self, command: &str, message: T) -> anyhow::Result<()> {
        let answer = self.request(command, message).await?;
        Reply {
            success: answer.str("success").map(|s| s == "yes"),
            errmsg: answer.str("errmsg").map(str::to_string),
        }
        .check(command)
    }

    /// A command that streams events before its answer (`list-sas`, `initiate`, ...). Returns
    /// the events and charon's error message when it reported failure.
    async fn stream<T: Serialize>(
        &mut self,
        command: &str,
        event: &str,
        message: T,
        timeout: Duration,
    ) -> anyhow::Result<(Vec<ViciValue>, Option<String>)> {
        let socket = self.socket.display().to_string();
        let events = self
            .client
            .stream_request::<T, ViciValue>(command, event, message);
        let collect = async {
            pin_mut!(events);
            let mut got = Vec::new();
            while let Some(item) = events.next().await {
                match item {
                    Ok(event) => got.push(event),
                    Err(e) if e.is_command_failed() => {
                        let text = e.to_string();
                        let text = text.strip_prefix("command failed: ").unwrap_or(&text);
                        return Ok((got, Some(text.to_string())));
                    }
                    Err(e) => return Err(anyhow!("VICI {command} on {socket}: {e}")),
                }
            }
            Ok((got, None))
        };
        tokio::time::timeout(timeout, collect)
            .await
            .map_err(|_| anyhow!("charon ({socket}) did not finish {command} within {timeout:?}"))?
    }

    /// `swanctl --version`: charon's daemon name and version.
    pub async fn version(&mut self) -> anyhow::Result<String> {
        let v = self.request("version", ()).await?;
        Ok(format!(
            "{} {}",
            v.str("daemon").unwrap_or("charon"),
            v.str("version").unwrap_or("?")
        ))
    }

    /// `load-conn` (`swanctl --load-conns` for one connection): adds the connection, or
    /// updates the one of the same name (charon keeps its SAs).
    pub async fn load_conn(&mut self, name: &str, body: &impl Serialize) -> anyhow::Result<()> {
        let message = BTreeMap::from([(name, body)]);
        self.command("load-conn", message)
            .await
            .with_context(|| format!("loading connection {name}"))
    }

    /// `unload-conn` (what `swanctl --load-conns` does to a connection gone from its file).
    pub async fn unload_conn(&mut self, name: &str) -> anyhow::Result<()> {
        self.command("unload-conn", BTreeMap::from([("name", name)]))
            .await
            .with_context(|| format!("unloading connection {name}"))
    }

    /// `swanctl --reload-settings`: charon rereads its `strongswan.conf` (the aggressive-mode
    /// setting among others takes effect at once; established SAs are not touched).
    pub async fn reload_settings(&mut self) -> anyhow::Result<()> {
        self.command("reload-settings", BTreeMap::<&str, &str>::new())
            .await
            .context("reloading charon's settings")
    }

    /// `get-conns`: the names of the connections loaded over VICI.
    pub async fn conn_names(&mut self) -> anyhow::Result<Vec<String>> {
        Ok(self.request("get-conns", ()).await?.list("conns"))
    }

    /// `swanctl --list-conns [--ike NAME]`.
    pub async fn list_conns(&mut self, name: Option<&str>) -> anyhow::Result<Vec<LoadedConn>> {
        let filter: BTreeMap<&str, &str> = name.map(|n| ("ike", n)).into_iter().collect();
        let (events, failed) = self
            .stream("list-conns", "list-conn", filter, REQUEST_TIMEOUT)
            .await?;
        if let Some(e) = failed {
            bail!("charon refused list-conns: {e}");
        }
        Ok(events.iter().flat_map(conns_from_event).collect())
    }

    /// `load-shared` (a `secrets { ike-NAME { ... } }` entry of swanctl.conf): loads the key
    /// under `id`, replacing an earlier one with that id.
    pub async fn load_shared(&mut self, key: &SharedKey) -> anyhow::Result<()> {
        self.command("load-shared", LoadShared::new(key))
            .await
            .with_context(|| format!("loading the pre-shared key {}", key.id))
    }

    /// `unload-shared`.
    pub async fn unload_shared(&mut self, id: &str) -> anyhow::Result<()> {
        self.command("unload-shared", BTreeMap::from([("id", id)]))
            .await
            .with_context(|| format!("unloading the pre-shared key {id}"))
    }

    /// `get-shared`: the ids of the shared keys loaded over VICI (never the keys).
    pub async fn shared_ids(&mut self) -> anyhow::Result<Vec<String>> {
        Ok(self.request("get-shared", ()).await?.list("keys"))
    }

    /// `swanctl --initiate --ike IKE --child CHILD --timeout T`: negotiates the IKE SA (if
    /// there is none) and the CHILD SA, and waits for the outcome up to `timeout`. On failure
    /// the error carries charon's log lines of the attempt.
    pub async fn initiate(
        &mut self,
        ike: &str,
        child: &str,
        timeout: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let message = Initiate {
            ike,
            child,
            timeout: timeout.as_millis() as u64,
            loglevel: 1,
        };
        let (events, failed) = self
            .stream(
                "initiate",
                "control-log",
                message,
                timeout + REQUEST_TIMEOUT,
            )
            .await?;
        let log = control_log(&events);
        match failed {
            None => Ok(log),
            Some(e) => Err(InitiateError {
                connection: ike.to_string(),
                errmsg: e,
                log,
            }
            .into()),
        }
    }

    /// `swanctl --terminate --ike NAME`: deletes every IKE SA (and its CHILD SAs) of a
    /// connection, telling the peer. Returns false when there was none.
    pub async fn terminate_ike(&mut self, name: &str, timeout: Duration) -> anyhow::Result<bool> {
        let message = Terminate {
            ike: name,
            timeout: timeout.as_millis() as u64,
            loglevel: 1,
        };
        let (events, failed) = self
            .stream(
                "terminate",
                "control-log",
                message,
                timeout + REQUEST_TIMEOUT,
            )
            .await?;
        match failed {
            None => Ok(true),
            Some(e) if e.contains("no matching") => Ok(false),
            Some(e) => {
                let log = control_log(&events);
                bail!(
                    "charon could not terminate {name}: {e}{}",
                    if log.is_empty() {
                        String::new()
                    } else {
                        format!("\ncharon's log:\n  {}", log.join("\n  "))
                    }
                )
            }
        }
    }

    /// `swanctl --log` for `events`: registers for each and yields (event, message) as charon
    /// raises them. The stream ends with an error when charon goes away (a restart); a name
    /// charon does not know fails it at once.
    pub fn subscribe(
        &mut self,
        events: &[&'static str],
    ) -> impl futures::Stream<Item = anyhow::Result<(&'static str, ViciValue)>> + use<> {
        let socket = self.socket.display().to_string();
        let streams = events.iter().map(|&event| {
            let socket = socket.clone();
            self.client
                .subscribe::<ViciValue>(event)
                .map(move |item| {
                    item.map(|message| (event, message))
                        .map_err(|e| anyhow!("VICI event {event} on {socket}: {e}"))
                })
                .boxed()
        });
        futures::stream::select_all(streams.collect::<Vec<_>>())
    }

    /// `swanctl --list-sas [--ike NAME]`. It waits for SAs that charon is busy with (a
    /// message being processed, for a moment): `noblock` would skip those, and `up` would
    /// take a working SA for a missing one.
    pub async fn list_sas(&mut self, name: Option<&str>) -> anyhow::Result<Vec<IkeSa>> {
        let filter: BTreeMap<&str, &str> = name.map(|n| ("ike", n)).into_iter().collect();
        let (events, failed) = self
            .stream("list-sas", "list-sa", filter, REQUEST_TIMEOUT)
            .await?;
        if let Some(e) = failed {
            bail!("charon refused list-sas: {e}");
        }
        let mut sas = Vec::new();
        for event in &events {
            sas.extend(ike_sas_from_event(event)?);
        }
        Ok(sas)
    }
}

#[derive(Serialize)]
struct Initiate<'a> {
    ike: &'a str,
    child: &'a str,
    timeout: u64,
    loglevel: u8,
}

#[derive(Serialize)]
struct Terminate<'a> {
    ike: &'a str,
    timeout: u64,
    loglevel: u8,
}

fn control_log(events: &[ViciValue]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            let msg = e.str("msg")?;
            Some(match e.str("group") {
                Some(group) => format!("[{group}] {msg}"),
                None => msg.to_string(),
            })
        })
        .collect()
}

/// `initiate` failed: charon's reason, its log lines of the attempt, and a hint in plain words.
#[derive(Debug, Clone)]
pub struct InitiateError {
    pub connection: String,
    pub errmsg: String,
    pub log: Vec<String>,
}

impl InitiateError {
    /// What the log says went wrong, in words a non-expert can act on.
    pub fn hint(&self) -> Option<&'static str> {
        hint_for_log(&self.log)
    }
}

/// A hint for charon's log lines of a failed attempt.
pub fn hint_for_log(log: &[String]) -> Option<&'static str> {
    let has = |needle: &str| log.iter().any(|line| line.contains(needle));
    if has("calculated HASH does not match") {
        // IKEv1: the hash of the exchange is keyed with the PSK; this side found the other's
        // wrong, after the other side had picked a config for our identity.
        Some(
            "the pre-shared keys differ: psk_file must hold exactly the key the other side has \
             (a FRITZ!Box: `key` in its vpncfg), without extra spaces",
        )
    } else if has("AUTHENTICATION_FAILED") || has("AUTH_FAILED") {
        Some(
            "the other side rejected this router's identity or pre-shared key: check that \
             psk_file holds the key the other side has, and that local_id and remote_id are the \
             identities the other side expects (a FRITZ!Box: its remoteid and localid)",
        )
    } else if has("no matching peer config") || has("no peer config found") {
        Some(
            "the identities do not match: local_id here must be the other side's remote id, \
             and remote_id the id it sends",
        )
    } else if has("NO_PROPOSAL_CHOSEN") || has("no acceptable proposal") {
        Some(
            "the two sides have no proposal in common: set ike_proposals and esp_proposals to \
             what the other side offers (a FRITZ!Box: aes256-sha1-modp1024 for both, with \
             allow_weak = [\"modp1024\", \"sha1\"])",
        )
    } else if has("Aggressive Mode PSK disabled") {
        Some(
            "charon refuses IKEv1 aggressive mode with a pre-shared key as responder unless \
             told otherwise (charon.i_dont_care_about_security_and_use_aggressive_mode_psk)",
        )
    } else if has("unable to install") && has("SA") {
        Some(
            "IKE succeeded but the kernel refused the ESP SAs: does this kernel have ESP \
             (`modprobe esp4`) and the algorithms (cbc(aes), hmac(sha1), ...)?",
        )
    } else if has("giving up after") || has("retransmit") {
        Some(
            "the other side never answered: check remote_gateway, that it is online, and that \
             UDP 500 and 4500 reach it (`vpn-ctl diag` on its WAN shows what arrives)",
        )
    } else {
        None
    }
}

impl fmt::Display for InitiateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} did not come up: charon says {}",
            self.connection, self.errmsg
        )?;
        if let Some(hint) = self.hint() {
            write!(f, "\n  help: {hint}")?;
        }
        if !self.log.is_empty() {
            write!(f, "\ncharon's log of the attempt:")?;
            for line in &self.log {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for InitiateError {}
