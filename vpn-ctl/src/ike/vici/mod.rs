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

mod error;
mod sa;
mod value;

pub use error::{InitiateError, hint_for_log};
pub use sa::{ChildSa, IkeSa, LoadedConn, conns_from_event, ike_sas_from_event};
pub(crate) use value::RawBytes;
pub use value::{MAX_NESTING, ViciValue};

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
