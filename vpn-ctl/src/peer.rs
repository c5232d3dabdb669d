//! `vpn-ctl peer add` and `vpn-ctl peer remove`: a client's keys, its addresses, its entry in
//! the configuration file and its wg-quick config (see [`crate::client`]).
//!
//! Without vpn-ctl, adding a phone takes `wg genkey | tee phone.key | wg pubkey`, `wg
//! genpsk > wg0-phone.psk`, picking a free address by hand, `wg set wg0 peer ... allowed-ips
//! ...`, an edit of the config file and writing the phone's config. [`add`] does all of it
//! on the file: it generates the keys, picks the lowest free addresses, writes the
//! preshared key file beside the configuration (mode 0600), appends a
//! `[[wireguard.IFACE.peers]]` table to the file and returns the phone's config. The kernel
//! is not touched; `vpn-ctl up` applies the file.
//!
//! The file is edited, not rewritten: comments and layout stay as they are, byte for byte,
//! except the added or removed peer table. The new file is checked with the same validation
//! as [`crate::config::load`] before it replaces the old one (atomically, through a
//! temporary file in the same directory, keeping the old file's mode and owner), so a
//! failed `peer add` leaves the configuration untouched.

use std::{
    fs, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use ipnet::IpNet;
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use crate::{
    client::{ClientConfig, PERSISTENT_KEEPALIVE, Tunnel},
    config::{self, Config, WgInterface},
    key::{PublicKey, Secret},
};

/// A peer to append to the configuration file, as it is written there.
#[derive(Debug, Clone)]
pub struct NewPeer {
    pub name: String,
    pub public_key: PublicKey,
    /// As written in the file: relative paths are relative to the file's directory.
    pub preshared_key_file: Option<PathBuf>,
    pub allowed_ips: Vec<IpNet>,
}

/// What `vpn-ctl peer add NAME` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct AddRequest {
    /// `--interface`: the WireGuard interface; may be left out when the file has only one.
    pub interface: Option<String>,
    /// The peer's name: letters, digits, `-`, `_` and `.`; it names its key files too.
    pub name: String,
    /// `--ip`: the client's address, at most one per address family, inside the interface's
    /// subnet and free. A family without one gets the lowest free address
    /// ([`next_free_addresses`]).
    pub ips: Vec<IpAddr>,
    /// `--dns`: DNS servers for the client; `None` uses the interface's `client_dns`.
    pub dns: Option<Vec<IpAddr>>,
    /// Full tunnel (everything through the router) or split tunnel (the VPN subnets and the
    /// router's LANs only).
    pub tunnel: Tunnel,
    /// `--store-private-key`: also keep the client's private key, in `IFACE-NAME.key`
    /// beside the configuration (mode 0600). Without it the key exists only in the returned
    /// client config: show it once (QR code or file) and it is gone, as it should be; the
    /// router never needs it.
    pub store_private_key: bool,
}

/// What [`add`] did.
#[derive(Debug, Clone)]
pub struct Added {
    pub interface: String,
    pub name: String,
    /// The client's wg-quick config, with its private key: render it with
    /// [`crate::client::render`].
    pub client: ClientConfig,
    /// The preshared key file that was written (mode 0600).
    pub preshared_key_file: PathBuf,
    /// The client's private key file, when [`AddRequest::store_private_key`] asked for it.
    pub private_key_file: Option<PathBuf>,
}

/// What [`remove`] did.
#[derive(Debug, Clone)]
pub struct Removed {
    pub interface: String,
    pub name: String,
    pub public_key: PublicKey,
    /// Key files deleted with the peer (its preshared key file, its stored private key).
    pub removed_files: Vec<PathBuf>,
}

/// `vpn-ctl peer add`: generates the client's key pair and a preshared key, writes the
/// preshared key file (`IFACE-NAME.psk` beside `config_path`, mode 0600), appends the peer
/// to the file and returns the client's config. Prints nothing and needs no root, only
/// write access to the file and its directory.
///
/// The new file must pass the same validation as [`config::load`] before it replaces the
/// old one; otherwise the old one is left as it was and the key files are deleted again.
pub fn add(config_path: &Path, request: &AddRequest) -> Result<Added> {
    add_with(config_path, request, config::parse)
}

/// `vpn-ctl peer remove NAME`: deletes the peer's table from the file (comments elsewhere
/// stay), then its preshared key file (unless another peer uses the same file) and its
/// stored private key (`IFACE-NAME.key`), if any. `interface` may be left out when only one
/// interface has a peer called `name`.
pub fn remove(config_path: &Path, interface: Option<&str>, name: &str) -> Result<Removed> {
    remove_with(config_path, interface, name, config::parse)
}

/// How a configuration text is read into the model; [`config::parse`] except in tests.
trait Load: Fn(&Path, &str) -> Result<Config, config::Error> {}
impl<F: Fn(&Path, &str) -> Result<Config, config::Error>> Load for F {}

fn add_with(path: &Path, request: &AddRequest, load: impl Load) -> Result<Added> {
    let name = request.name.as_str();
    check_name(name)?;
    let text = read_config(path)?;
    let config = load(path, &text)
        .with_context(|| format!("fix {} before adding a peer to it", path.display()))?;
    let iface = pick_interface(&config, request.interface.as_deref())?;
    let file = path.display();
    if iface.peers.iter().any(|p| p.name == name) {
        bail!(
            "{file} already has a peer named {name:?} on {}: choose another name, or remove \
             it first with `vpn-ctl peer remove {name}`",
            iface.name
        );
    }
    let endpoint = iface.public_endpoint.clone().ok_or_else(|| {
        anyhow!(
            "[wireguard.{}] in {file} has no public_endpoint, and the client needs to know \
             where to dial: add public_endpoint = \"HOST:PORT\" (your public address or DNS \
             name, and the port forwarded to the router)",
            iface.name
        )
    })?;
    let addresses = client_addresses(iface, &request.ips).with_context(|| {
        format!(
            "cannot give peer {name:?} an address on {} in {file}",
            iface.name
        )
    })?;

    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("cannot parse {file} as TOML"))?;
    let dir = config_dir(path);
    let psk_name = format!("{}-{name}.psk", iface.name);
    let psk_path = dir.join(&psk_name);
    let private_key = Secret::generate_private();
    let preshared_key = Secret::generate_preshared();
    add_peer(
        &mut doc,
        &iface.name,
        &NewPeer {
            name: name.to_string(),
            public_key: private_key.public_key(),
            preshared_key_file: Some(PathBuf::from(&psk_name)),
            allowed_ips: addresses.clone(),
        },
    )
    .with_context(|| format!("cannot add the peer to {file}"))?;
    let new_text = same_line_endings(&text, doc.to_string());

    // From here on, every file written is deleted again unless the whole add succeeds.
    let mut created = CreatedFiles::default();
    write_secret_file(&psk_path, &preshared_key)?;
    created.0.push(psk_path.clone());
    let private_key_file = if request.store_private_key {
        let key_path = dir.join(format!("{}-{name}.key", iface.name));
        write_secret_file(&key_path, &private_key)?;
        created.0.push(key_path.clone());
        Some(key_path)
    } else {
        None
    };
    load(path, &new_text).with_context(|| {
        format!(
            "with peer {name:?} added, {file} would not be valid, so it was left unchanged \
             (this is a bug in vpn-ctl: please report it with the file, keys removed)"
        )
    })?;
    replace_file(path, &new_text)?;
    created.0.clear();

    let client = ClientConfig {
        private_key,
        addresses,
        dns: request
            .dns
            .clone()
            .unwrap_or_else(|| iface.client_dns.clone()),
        server_public_key: iface.public_key(),
        preshared_key: Some(preshared_key),
        endpoint,
        allowed_ips: request.tunnel.allowed_ips(iface, &config.router),
        persistent_keepalive: Some(PERSISTENT_KEEPALIVE),
    };
    Ok(Added {
        interface: iface.name.clone(),
        name: name.to_string(),
        client,
        preshared_key_file: psk_path,
        private_key_file,
    })
}

fn remove_with(
    path: &Path,
    interface: Option<&str>,
    name: &str,
    load: impl Load,
) -> Result<Removed> {
    let file = path.display();
    let text = read_config(path)?;
    let config =
        load(path, &text).with_context(|| format!("fix {file} before removing a peer from it"))?;
    let iface = match interface {
        Some(_) => pick_interface(&config, interface)?,
        None => {
            let having: Vec<&WgInterface> = config
                .wireguard
                .iter()
                .filter(|i| i.peers.iter().any(|p| p.name == name))
                .collect();
            match having.as_slice() {
                [one] => *one,
                [] => bail!(
                    "{file} has no peer named {name:?}; its peers are: {}",
                    all_peer_names(&config)
                ),
                several => bail!(
                    "{file} has a peer named {name:?} on {}: pass --interface to say which",
                    several
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            }
        }
    };
    let peer = iface.peers.iter().find(|p| p.name == name).ok_or_else(|| {
        anyhow!(
            "{file} has no peer named {name:?} on {}; its peers are: {}",
            iface.name,
            peer_names(iface)
        )
    })?;

    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("cannot parse {file} as TOML"))?;
    remove_peer(&mut doc, &iface.name, name)
        .with_context(|| format!("cannot remove the peer from {file}"))?;
    let new_text = same_line_endings(&text, doc.to_string());
    load(path, &new_text).with_context(|| {
        format!("with peer {name:?} removed, {file} would not be valid, so it was left unchanged")
    })?;
    replace_file(path, &new_text)?;

    // The file no longer names the peer; now its keys can go.
    let dir = config_dir(path);
    let resolve = |p: &Path| {
        if p.is_relative() {
            dir.join(p)
        } else {
            p.to_path_buf()
        }
    };
    let mut doomed = Vec::new();
    if let Some(psk) = &peer.preshared_key_file {
        let psk = resolve(psk);
        let shared = config
            .wireguard
            .iter()
            .flat_map(|i| i.peers.iter().map(move |p| (i, p)))
            .filter(|(i, p)| !(i.name == iface.name && p.name == name))
            .any(|(_, p)| p.preshared_key_file.as_deref().map(resolve).as_ref() == Some(&psk));
        if !shared {
            doomed.push(psk);
        }
    }
    doomed.push(dir.join(format!("{}-{name}.key", iface.name)));
    let mut removed_files = Vec::new();
    for key_file in doomed {
        match fs::remove_file(&key_file) {
            Ok(()) => removed_files.push(key_file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!(
                "peer {name:?} was removed from {file}, but its key file {} was not: {e}; \
                 delete it by hand",
                key_file.display()
            ),
        }
    }
    Ok(Removed {
        interface: iface.name.clone(),
        name: name.to_string(),
        public_key: peer.public_key.clone(),
        removed_files,
    })
}

/// For each address family of `iface` (IPv4 first), the lowest host address of its subnet
/// that neither the interface itself nor any peer's `allowed_ips` uses, as a /32 or /128.
///
/// IPv4 skips the network and broadcast addresses (except in /31 and /32), IPv6 the
/// subnet-router anycast address (the subnet's first). The first address of each family in
/// `addresses` is the subnet.
pub fn next_free_addresses(iface: &WgInterface) -> Result<Vec<IpNet>> {
    let addresses = families(iface)
        .map(|net| next_free_in(iface, net))
        .collect::<Result<Vec<_>>>()?;
    if addresses.is_empty() {
        bail!(
            "{} has no addresses to take client addresses from: add e.g. addresses = \
             [\"10.8.0.1/24\"] to [wireguard.{}]",
            iface.name,
            iface.name
        );
    }
    Ok(addresses)
}

/// The lowest free host address in `net`, one of `iface`'s addresses.
fn next_free_in(iface: &WgInterface, net: &IpNet) -> Result<IpNet> {
    let ipv4 = net.addr().is_ipv4();
    let (first, last) = host_range(net);
    let free = first_free(first, last, &used_ranges(iface, ipv4)).ok_or_else(|| {
        anyhow!(
            "no free address left in {} of {}: the interface and its peers use them all; \
             remove a peer (`vpn-ctl peer remove NAME`), or give the interface a larger \
             subnet in its addresses",
            net.trunc(),
            iface.name
        )
    })?;
    Ok(host_net(from_u128(free, ipv4)))
}

/// The client's addresses: `explicit` ones (checked) for their family, the lowest free one
/// for each other family of the interface.
fn client_addresses(iface: &WgInterface, explicit: &[IpAddr]) -> Result<Vec<IpNet>> {
    for (i, a) in explicit.iter().enumerate() {
        if explicit[..i].iter().any(|b| b.is_ipv4() == a.is_ipv4()) {
            bail!(
                "--ip was given twice for IPv{}: give at most one address per family",
                if a.is_ipv4() { 4 } else { 6 }
            );
        }
        check_free(iface, *a)?;
    }
    families(iface)
        .map(|net| {
            match explicit
                .iter()
                .find(|a| a.is_ipv4() == net.addr().is_ipv4())
            {
                Some(a) => Ok(host_net(*a)),
                None => next_free_in(iface, net),
            }
        })
        .collect()
}

/// Checks that `addr` is a host address of one of `iface`'s subnets and unused.
fn check_free(iface: &WgInterface, addr: IpAddr) -> Result<()> {
    let Some(net) = families(iface).find(|n| n.addr().is_ipv4() == addr.is_ipv4()) else {
        bail!(
            "--ip {addr}: {} has no IPv{} address, so it has no subnet for it",
            iface.name,
            if addr.is_ipv4() { 4 } else { 6 }
        );
    };
    let (first, last) = host_range(net);
    let n = to_u128(addr);
    if !net.contains(&addr) {
        bail!(
            "--ip {addr} is outside {}'s subnet {}: pick one inside it",
            iface.name,
            net.trunc()
        );
    }
    if n < first || n > last {
        bail!(
            "--ip {addr} is the network or broadcast address of {}: pick a host address",
            net.trunc()
        );
    }
    if iface.addresses.iter().any(|a| a.addr() == addr) {
        bail!("--ip {addr} is {}'s own address: pick another", iface.name);
    }
    if let Some(peer) = iface
        .peers
        .iter()
        .find(|p| p.allowed_ips.iter().any(|n| n.contains(&addr)))
    {
        bail!(
            "--ip {addr} is taken by peer {:?} (allowed_ips {}): pick another, or leave --ip \
             out to get the lowest free address",
            peer.name,
            peer.allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The first address of each family in `iface.addresses`, IPv4 first.
fn families(iface: &WgInterface) -> impl Iterator<Item = &IpNet> {
    let v4 = iface.addresses.iter().find(|a| a.addr().is_ipv4());
    let v6 = iface.addresses.iter().find(|a| a.addr().is_ipv6());
    v4.into_iter().chain(v6)
}

/// The subnet's host addresses, as an inclusive range.
fn host_range(net: &IpNet) -> (u128, u128) {
    let (first, last) = (to_u128(net.network()), to_u128(net.broadcast()));
    let skip_ends = match net {
        IpNet::V4(n) => n.prefix_len() <= 30,
        IpNet::V6(n) => n.prefix_len() <= 126,
    };
    match (skip_ends, net) {
        (false, _) => (first, last),
        (true, IpNet::V4(_)) => (first + 1, last - 1),
        (true, IpNet::V6(_)) => (first + 1, last),
    }
}

/// The inclusive address ranges of one family that the interface and its peers use.
fn used_ranges(iface: &WgInterface, ipv4: bool) -> Vec<(u128, u128)> {
    let own = iface.addresses.iter().map(|a| IpNet::from(a.addr()));
    let peers = iface
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter().copied());
    own.chain(peers)
        .filter(|n| n.addr().is_ipv4() == ipv4)
        .map(|n| (to_u128(n.network()), to_u128(n.broadcast())))
        .collect()
}

/// The lowest address in `first..=last` outside all `used` ranges. Jumps over whole used
/// ranges, so a peer routing a large part of a /64 costs one step, not billions.
fn first_free(first: u128, last: u128, used: &[(u128, u128)]) -> Option<u128> {
    let mut candidate = first;
    'next: while candidate <= last {
        for &(start, end) in used {
            if start <= candidate && candidate <= end {
                if end >= last {
                    return None;
                }
                candidate = end + 1;
                continue 'next;
            }
        }
        return Some(candidate);
    }
    None
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(n: u128, ipv4: bool) -> IpAddr {
    if ipv4 {
        IpAddr::V4(Ipv4Addr::from(
            u32::try_from(n).expect("an IPv4 address fits 32 bits"),
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// `addr/32` or `addr/128`.
fn host_net(addr: IpAddr) -> IpNet {
    IpNet::from(addr)
}

/// Appends a `[[wireguard.IFACE.peers]]` table for `peer` after the interface's last peer
/// (or after the interface's section when it has none). The rest of the document, comments
/// and layout included, stays as it was.
pub fn add_peer(doc: &mut DocumentMut, iface: &str, peer: &NewPeer) -> Result<()> {
    let table = interface_table(doc, iface)?;
    // No peers yet: none at all, or `peers = []` (no peers on purpose, see `crate::guard`).
    let no_peers = table
        .get("peers")
        .is_none_or(|p| p.as_array().is_some_and(|a| a.is_empty()));
    if no_peers {
        table.insert("peers", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let peers = peers_of(table, iface)?;
    if peers
        .iter()
        .any(|t| t.get("name").and_then(Item::as_str) == Some(peer.name.as_str()))
    {
        bail!(
            "a peer named {:?} already exists on {iface}: choose another name, or remove it \
             first with `vpn-ctl peer remove {}`",
            peer.name,
            peer.name
        );
    }
    let mut new = Table::new();
    new.insert("name", value(&peer.name));
    new.insert("public_key", value(peer.public_key.to_base64()));
    if let Some(psk) = &peer.preshared_key_file {
        let psk = psk
            .to_str()
            .ok_or_else(|| anyhow!("the preshared key file name {} is not UTF-8", psk.display()))?;
        new.insert("preshared_key_file", value(psk));
    }
    let mut allowed_ips = Array::new();
    for net in &peer.allowed_ips {
        allowed_ips.push(net.to_string());
    }
    new.insert("allowed_ips", value(allowed_ips));
    // A blank line before the header. Without a position of its own, the table is written
    // right after the table before it here: the interface's last peer, or the interface.
    new.decor_mut().set_prefix("\n");
    peers.push(new);
    Ok(())
}

/// Removes the `[[wireguard.IFACE.peers]]` table named `name`, with the comments directly
/// above its header; the rest of the document stays as it was.
pub fn remove_peer(doc: &mut DocumentMut, iface: &str, name: &str) -> Result<()> {
    let table = interface_table(doc, iface)?;
    if !table.contains_key("peers") {
        bail!("{iface} has no peers, so none named {name:?}");
    }
    let peers = peers_of(table, iface)?;
    let Some(index) = peers
        .iter()
        .position(|t| t.get("name").and_then(Item::as_str) == Some(name))
    else {
        bail!(
            "{iface} has no peer named {name:?}; its peers are: {}",
            name_list(
                peers
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Item::as_str))
            )
        );
    };
    peers.remove(index);
    if peers.is_empty() {
        // The last one: say "no peers" in the file, so `up` removes it from the device (an
        // interface without `peers` at all reads as a file cut short, see `crate::guard`).
        table.insert("peers", value(Array::new()));
    }
    Ok(())
}

/// `edited` (toml_edit's output, `\n` line endings, ending with one) written the way
/// `original` was: with `\r\n` line endings if it had them, without a final line ending if
/// it had none.
fn same_line_endings(original: &str, edited: String) -> String {
    let mut edited = if original.contains("\r\n") {
        edited.replace("\r\n", "\n").replace('\n', "\r\n")
    } else {
        edited
    };
    if !original.is_empty() && !original.ends_with('\n') {
        let trimmed = edited.trim_end_matches(['\r', '\n']).len();
        edited.truncate(trimmed);
    }
    edited
}

/// The `[wireguard.IFACE]` table.
fn interface_table<'d>(doc: &'d mut DocumentMut, iface: &str) -> Result<&'d mut Table> {
    let known: Vec<String> = doc
        .get("wireguard")
        .and_then(Item::as_table_like)
        .map(|w| w.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default();
    let table = doc
        .get_mut("wireguard")
        .and_then(Item::as_table_mut)
        .and_then(|w| w.get_mut(iface))
        .and_then(Item::as_table_mut);
    match table {
        Some(table) => Ok(table),
        None if known.iter().any(|k| k == iface) => Err(anyhow!(
            "[wireguard.{iface}] is written as an inline table; vpn-ctl edits peers only in \
             [wireguard.{iface}] sections: rewrite it as one"
        )),
        None => Err(anyhow!(
            "there is no [wireguard.{iface}] section; interfaces in the file: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )),
    }
}

fn peers_of<'t>(table: &'t mut Table, iface: &str) -> Result<&'t mut ArrayOfTables> {
    table
        .get_mut("peers")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| {
            anyhow!(
                "the peers of {iface} are not written as [[wireguard.{iface}.peers]] tables \
                 (an inline array?); vpn-ctl edits only those: rewrite them as tables"
            )
        })
}

/// A peer name as the configuration accepts it ([`config::peer_name_problem`]), and plain
/// enough to name files too (`wg0-NAME.psk`).
fn check_name(name: &str) -> Result<()> {
    let rules = format!(
        "use 1 to {} letters, digits, '-', '_' or '.', not starting with '.' (it names the \
         peer's key files too)",
        config::PEER_NAME_MAX
    );
    if let Some(problem) = config::peer_name_problem(name) {
        bail!("peer name {problem}: {rules}");
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.starts_with('.') || !name.chars().all(plain) {
        bail!("{name:?} cannot be a peer name: {rules}");
    }
    Ok(())
}

fn pick_interface<'c>(config: &'c Config, name: Option<&str>) -> Result<&'c WgInterface> {
    let file = config.path.display();
    let names = || {
        config
            .wireguard
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (name, config.wireguard.as_slice()) {
        (Some(name), _) => config.interface(name).ok_or_else(|| {
            anyhow!(
                "{file} has no [wireguard.{name}]; its WireGuard interfaces: {}",
                names()
            )
        }),
        (None, [one]) => Ok(one),
        (None, []) => Err(anyhow!(
            "{file} has no WireGuard interface: add a [wireguard.wg0] section first (see the \
             example in the README)"
        )),
        (None, _) => Err(anyhow!(
            "{file} has several WireGuard interfaces ({}): pass --interface to say which",
            names()
        )),
    }
}

fn peer_names(iface: &WgInterface) -> String {
    name_list(iface.peers.iter().map(|p| p.name.as_str()))
}

/// Names for a message: quoted, at most the first ten, then how many more.
fn name_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 10;
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        return "none".to_string();
    }
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

fn all_peer_names(config: &Config) -> String {
    let per_interface: Vec<String> = config
        .wireguard
        .iter()
        .map(|i| format!("{}: {}", i.name, peer_names(i)))
        .collect();
    if per_interface.is_empty() {
        "none".to_string()
    } else {
        per_interface.join("; ")
    }
}

/// The configuration's text as [`config::load`] reads it: a FIFO is refused, not waited on.
fn read_config(path: &Path) -> Result<String> {
    Ok(config::read(path)?)
}

/// The directory key files are written to and resolved against.
fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes a key as `wg genkey` does (base64 and a newline) to a new file, created with mode
/// 0600; an existing file is never overwritten.
fn write_secret_file(path: &Path, secret: &Secret) -> Result<()> {
    let text = zeroize::Zeroizing::new(format!("{}\n", secret.expose_base64()));
    crate::files::create_new(path, 0o600, text.as_bytes()).with_context(|| {
        format!(
            "cannot create the key file {}: if it is left from an earlier peer, delete it or \
             choose another name",
            path.display()
        )
    })
}

/// Files this run created, deleted again on drop unless the run succeeded (cleared).
#[derive(Default)]
struct CreatedFiles(Vec<PathBuf>);

impl Drop for CreatedFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// Replaces the file at `path` (following a symlink to the real file) with `text`,
/// atomically: a temporary file in the same directory with the old file's mode and owner,
/// synced, then renamed over it. Readers see the old file or the new one, never half of one.
fn replace_file(path: &Path, text: &str) -> Result<()> {
    crate::files::replace(path, text.as_bytes(), crate::files::Mode::KeepOr(0o600)).with_context(
        || {
            format!(
                "cannot write the new configuration over {} (it was left unchanged): vpn-ctl \
                 needs write access to its directory",
                path.display()
            )
        },
    )
}

#[cfg(test)]
mod tests;
