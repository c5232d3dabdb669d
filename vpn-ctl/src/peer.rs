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
mod tests {
    use std::{fs::Permissions, os::unix::fs::PermissionsExt as _};

    use tempfile::TempDir;

    use super::*;
    use crate::client::render;

    /// A configuration with comments everywhere a person puts them.
    const CONFIG: &str = r#"# vpn-ctl configuration for the home router
[router]
wan = "eth0"   # the uplink
lan = ["192.168.1.0/24"]

# The road-warrior tunnel.
[wireguard.wg0]
private_key_file = "wg0.key"  # mode 0600
listen_port = 51820
addresses = ["10.8.0.1/24", "fd08::1/64"]
public_endpoint = "home.example.org:51820"
client_dns = ["192.168.1.1"]

# Alice's phone
[[wireguard.wg0.peers]]
name = "alice"
public_key = "YAnz6N7eLtwMXw9JOuZUy0ohmrhCoQeZQXbaMFoc6mE="
allowed_ips = ["10.8.0.2/32", "fd08::2/128"]   # fixed

#   Site link -- keep it last.
[wireguard.wg1]
private_key_file = "wg1.key"
listen_port = 51821
addresses = ["10.9.0.1/30"]
public_endpoint = "home.example.org:51821"
"#;

    /// A directory with `vpn.toml` (mode 0640) holding `text`, and the interfaces' keys.
    fn setup(text: &str) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for key in ["wg0.key", "wg1.key"] {
            write_secret_file(&dir.path().join(key), &Secret::generate_private()).unwrap();
        }
        let path = dir.path().join("vpn.toml");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        (dir, path)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn request(name: &str) -> AddRequest {
        AddRequest {
            name: name.into(),
            interface: Some("wg0".into()),
            ..AddRequest::default()
        }
    }

    fn interface(addresses: &[&str], peers: &[&[&str]]) -> WgInterface {
        WgInterface {
            name: "wg0".into(),
            private_key: Secret::generate_private(),
            private_key_file: "wg0.key".into(),
            listen_port: None,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            mtu: None,
            fwmark: None,
            public_endpoint: None,
            client_dns: vec![],
            internet: true,
            peers: peers
                .iter()
                .enumerate()
                .map(|(i, ips)| config::Peer {
                    name: format!("peer{i}"),
                    public_key: Secret::generate_private().public_key(),
                    preshared_key: None,
                    preshared_key_file: None,
                    allowed_ips: ips.iter().map(|a| a.parse().unwrap()).collect(),
                    endpoint: None,
                    persistent_keepalive: None,
                    route: true,
                })
                .collect(),
            peers_listed: true,
        }
    }

    fn strings(nets: &[IpNet]) -> Vec<String> {
        nets.iter().map(ToString::to_string).collect()
    }

    /// The table `add` appends for a peer, as it appears in the file.
    fn peer_table(iface: &str, name: &str, key: &PublicKey, ips: &str) -> String {
        format!(
            "\n[[wireguard.{iface}.peers]]\nname = \"{name}\"\npublic_key = \"{key}\"\n\
             preshared_key_file = \"{iface}-{name}.psk\"\nallowed_ips = [{ips}]\n"
        )
    }

    #[test]
    fn next_free_addresses_skip_the_interface_and_the_peers() {
        let iface = interface(
            &["10.8.0.1/24", "fd08::1/64"],
            &[
                &["10.8.0.2/32", "fd08::2/128"],
                &["10.8.0.3/32"],
                // A site behind a peer, overlapping the subnet: .4 to .7.
                &["10.8.0.4/30", "192.168.7.0/24", "fd08::3/128"],
            ],
        );
        let free = next_free_addresses(&iface).unwrap();
        assert_eq!(strings(&free), ["10.8.0.8/32", "fd08::4/128"]);
    }

    #[test]
    fn next_free_addresses_skip_network_and_broadcast_addresses() {
        // The interface is the last host of 10.8.0.4/30: the network address .4 is not
        // handed out, .5 is.
        let iface = interface(&["10.8.0.6/30"], &[]);
        assert_eq!(
            strings(&next_free_addresses(&iface).unwrap()),
            ["10.8.0.5/32"]
        );
        // IPv6 starts after the subnet-router anycast address.
        let iface = interface(&["fd08::ff/64"], &[]);
        assert_eq!(
            strings(&next_free_addresses(&iface).unwrap()),
            ["fd08::1/128"]
        );
    }

    #[test]
    fn next_free_addresses_jump_over_large_used_ranges() {
        let iface = interface(
            &["fd08::1/64"],
            &[&["fd08::/65"], &["fd08:0:0:0:8000::/66"]],
        );
        assert_eq!(
            strings(&next_free_addresses(&iface).unwrap()),
            ["fd08::c000:0:0:0/128"]
        );
    }

    #[test]
    fn a_full_subnet_is_a_clear_error() {
        // .1 is the interface, .2 the only other host; .3 the broadcast address.
        let iface = interface(&["10.9.0.1/30"], &[&["10.9.0.2/32"]]);
        let err = format!("{:#}", next_free_addresses(&iface).unwrap_err());
        assert!(
            err.contains("no free address left in 10.9.0.0/30 of wg0"),
            "{err}"
        );
        let iface = interface(&["fd08::1/64"], &[&["fd08::/64"]]);
        let err = format!("{:#}", next_free_addresses(&iface).unwrap_err());
        assert!(err.contains("no free address left in fd08::/64"), "{err}");
    }

    #[test]
    fn add_peer_keeps_the_rest_of_the_file_byte_for_byte() {
        let mut doc: DocumentMut = CONFIG.parse().unwrap();
        let key = Secret::generate_private().public_key();
        let peer = NewPeer {
            name: "bob".into(),
            public_key: key.clone(),
            preshared_key_file: Some("wg0-bob.psk".into()),
            allowed_ips: vec![
                "10.8.0.3/32".parse().unwrap(),
                "fd08::3/128".parse().unwrap(),
            ],
        };
        add_peer(&mut doc, "wg0", &peer).unwrap();
        let table = peer_table("wg0", "bob", &key, "\"10.8.0.3/32\", \"fd08::3/128\"");
        // Right after the interface's last peer, before the next interface and its comment.
        let expected = CONFIG.replacen("# fixed\n", &format!("# fixed\n{table}"), 1);
        assert_eq!(doc.to_string(), expected);
    }

    #[test]
    fn add_peer_to_an_interface_without_peers_puts_it_after_the_interface() {
        let text = format!("{CONFIG}\n# trailing comment\n");
        let mut doc: DocumentMut = text.parse().unwrap();
        let key = Secret::generate_private().public_key();
        let peer = NewPeer {
            name: "site".into(),
            public_key: key.clone(),
            preshared_key_file: Some("wg1-site.psk".into()),
            allowed_ips: vec!["10.9.0.2/32".parse().unwrap()],
        };
        add_peer(&mut doc, "wg1", &peer).unwrap();
        let table = peer_table("wg1", "site", &key, "\"10.9.0.2/32\"");
        let expected = format!("{CONFIG}{table}\n# trailing comment\n");
        assert_eq!(doc.to_string(), expected);
        // Without its last peer the interface says so (`peers = []`), so that `up` removes the
        // peer rather than refusing a file that looks cut short; a new peer replaces it.
        remove_peer(&mut doc, "wg1", "site").unwrap();
        let no_peers = format!("{CONFIG}peers = []\n\n# trailing comment\n");
        assert_eq!(doc.to_string(), no_peers);
        add_peer(&mut doc, "wg1", &peer).unwrap();
        assert_eq!(doc.to_string(), expected);
    }

    #[test]
    fn add_peer_refuses_a_taken_name_and_a_missing_interface() {
        let mut doc: DocumentMut = CONFIG.parse().unwrap();
        let peer = NewPeer {
            name: "alice".into(),
            public_key: Secret::generate_private().public_key(),
            preshared_key_file: None,
            allowed_ips: vec![],
        };
        let err = add_peer(&mut doc, "wg0", &peer).unwrap_err().to_string();
        assert!(
            err.contains("a peer named \"alice\" already exists on wg0"),
            "{err}"
        );
        let err = add_peer(&mut doc, "wg7", &peer).unwrap_err().to_string();
        assert!(err.contains("no [wireguard.wg7] section"), "{err}");
        assert!(err.contains("wg0, wg1"), "{err}");
        assert_eq!(doc.to_string(), CONFIG);
    }

    #[test]
    fn remove_peer_takes_out_exactly_that_table() {
        let mut doc: DocumentMut = CONFIG.parse().unwrap();
        remove_peer(&mut doc, "wg0", "alice").unwrap();
        let start = CONFIG.find("\n# Alice's phone").unwrap();
        let end = CONFIG.find("# fixed\n").unwrap() + "# fixed\n".len();
        let expected = format!("{}peers = []\n{}", &CONFIG[..start], &CONFIG[end..]);
        assert_eq!(doc.to_string(), expected);
    }

    #[test]
    fn remove_peer_names_the_existing_peers_when_not_found() {
        let mut doc: DocumentMut = CONFIG.parse().unwrap();
        let err = remove_peer(&mut doc, "wg0", "bob").unwrap_err().to_string();
        assert!(
            err.contains("no peer named \"bob\"; its peers are: \"alice\""),
            "{err}"
        );
        let err = remove_peer(&mut doc, "wg1", "bob").unwrap_err().to_string();
        assert!(err.contains("wg1 has no peers"), "{err}");
    }

    #[test]
    fn add_writes_the_peer_the_key_file_and_the_client_config() {
        let (dir, path) = setup(CONFIG);
        let added = add(&path, &request("bob")).unwrap();

        let psk_path = dir.path().join("wg0-bob.psk");
        assert_eq!(added.preshared_key_file, psk_path);
        assert_eq!(mode(&psk_path), 0o600);
        let psk: Secret = fs::read_to_string(&psk_path).unwrap().parse().unwrap();
        assert_eq!(Some(&psk), added.client.preshared_key.as_ref());
        assert_eq!(added.private_key_file, None);
        assert!(!dir.path().join("wg0-bob.key").exists());

        let key = added.client.private_key.public_key();
        let table = peer_table("wg0", "bob", &key, "\"10.8.0.3/32\", \"fd08::3/128\"");
        let expected = CONFIG.replacen("# fixed\n", &format!("# fixed\n{table}"), 1);
        assert_eq!(fs::read_to_string(&path).unwrap(), expected);
        assert_eq!(mode(&path), 0o640, "the file keeps its mode");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let config = config::parse(&path, &expected).unwrap();
        let wg0 = config.interface("wg0").unwrap();
        let text = render(&added.client);
        assert!(
            text.contains("\nAddress = 10.8.0.3/32, fd08::3/128\n"),
            "{text}"
        );
        assert!(text.contains("\nDNS = 192.168.1.1\n"), "{text}");
        assert!(
            text.contains(&format!("\nPublicKey = {}\n", wg0.public_key())),
            "{text}"
        );
        assert!(
            text.contains("\nEndpoint = home.example.org:51820\n"),
            "{text}"
        );
        assert!(text.contains("\nAllowedIPs = 0.0.0.0/0, ::/0\n"), "{text}");
        assert_eq!(wg0.peers[1].public_key, key);
    }

    #[test]
    fn add_with_split_tunnel_explicit_ip_and_dns() {
        let (_dir, path) = setup(CONFIG);
        let added = add(
            &path,
            &AddRequest {
                ips: vec!["10.8.0.20".parse().unwrap()],
                dns: Some(vec!["9.9.9.9".parse().unwrap()]),
                tunnel: Tunnel::Split,
                ..request("laptop")
            },
        )
        .unwrap();
        let client = &added.client;
        assert_eq!(strings(&client.addresses), ["10.8.0.20/32", "fd08::3/128"]);
        assert_eq!(client.dns, ["9.9.9.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            strings(&client.allowed_ips),
            ["10.8.0.0/24", "fd08::/64", "192.168.1.0/24"]
        );
    }

    #[test]
    fn add_refuses_an_ip_outside_the_subnet_or_taken() {
        let (dir, path) = setup(CONFIG);
        for (ip, says) in [
            ("10.7.0.5", "outside wg0's subnet 10.8.0.0/24"),
            ("10.8.0.2", "taken by peer \"alice\""),
            ("10.8.0.1", "wg0's own address"),
            ("10.8.0.255", "network or broadcast address"),
        ] {
            let request = AddRequest {
                ips: vec![ip.parse().unwrap()],
                ..request("bob")
            };
            let err = format!("{:#}", add(&path, &request).unwrap_err());
            assert!(err.contains(says), "{ip}: {err}");
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
        assert!(!dir.path().join("wg0-bob.psk").exists());
    }

    #[test]
    fn add_stores_the_private_key_only_when_asked() {
        let (dir, path) = setup(CONFIG);
        let added = add(
            &path,
            &AddRequest {
                store_private_key: true,
                ..request("bob")
            },
        )
        .unwrap();
        let key_path = dir.path().join("wg0-bob.key");
        assert_eq!(added.private_key_file.as_ref(), Some(&key_path));
        assert_eq!(mode(&key_path), 0o600);
        let stored: Secret = fs::read_to_string(&key_path).unwrap().parse().unwrap();
        assert_eq!(stored, added.client.private_key);
    }

    #[test]
    fn add_that_would_not_validate_leaves_everything_as_it_was() {
        let (dir, path) = setup(CONFIG);
        let picky = |path: &Path, text: &str| {
            let config = config::parse(path, text)?;
            if text.contains("bob") {
                return Err(config::Error {
                    diagnostics: vec![config::Diagnostic {
                        file: path.to_path_buf(),
                        line: 1,
                        column: 1,
                        message: "no bobs".into(),
                        help: None,
                    }],
                });
            }
            Ok(config)
        };
        let request = AddRequest {
            store_private_key: true,
            ..request("bob")
        };
        let err = format!("{:#}", add_with(&path, &request, picky).unwrap_err());
        assert!(
            err.contains("would not be valid, so it was left unchanged"),
            "{err}"
        );
        assert!(err.contains("no bobs"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
        let mut files: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["vpn.toml", "wg0.key", "wg1.key"]);
    }

    #[test]
    fn add_until_the_subnet_is_full() {
        let (_dir, path) = setup(CONFIG);
        let to_wg1 = |name: &str| AddRequest {
            interface: Some("wg1".into()),
            ..request(name)
        };
        let added = add(&path, &to_wg1("site")).unwrap();
        assert_eq!(strings(&added.client.addresses), ["10.9.0.2/32"]);
        let before = fs::read_to_string(&path).unwrap();
        let err = format!("{:#}", add(&path, &to_wg1("other")).unwrap_err());
        assert!(
            err.contains("no free address left in 10.9.0.0/30 of wg1"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn add_needs_a_plain_name_an_interface_choice_and_an_endpoint() {
        let (_dir, path) = setup(CONFIG);
        let err = add(&path, &request("../etc/passwd"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be a peer name"), "{err}");
        for (name, problem) in [
            ("bob\0", r#""bob\0" contains the control character '\0'"#),
            (
                "bob\u{202e}",
                r#""bob\u{202e}" contains '\u{202e}', a Unicode direction"#,
            ),
            (&"b".repeat(65), "is 65 characters long; the most is 64"),
        ] {
            let err = add(&path, &request(name)).unwrap_err().to_string();
            assert!(err.starts_with("peer name "), "{err}");
            assert!(err.contains(problem), "{err}");
            assert!(err.contains("use 1 to 64 letters"), "{err}");
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
        let err = format!(
            "{:#}",
            add(
                &path,
                &AddRequest {
                    interface: None,
                    ..request("bob")
                }
            )
            .unwrap_err()
        );
        assert!(
            err.contains("several WireGuard interfaces (wg0, wg1): pass --interface"),
            "{err}"
        );

        let no_endpoint = CONFIG.replace("public_endpoint = \"home.example.org:51820\"\n", "");
        let (_dir, path) = setup(&no_endpoint);
        let err = format!("{:#}", add(&path, &request("bob")).unwrap_err());
        assert!(err.contains("[wireguard.wg0] in"), "{err}");
        assert!(err.contains("has no public_endpoint"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), no_endpoint);
    }

    #[test]
    fn a_configuration_that_is_a_fifo_is_refused_at_once() {
        use crate::files::tests::{mkfifo, within_5_seconds};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vpn.toml");
        mkfifo(&path);
        let errors = within_5_seconds(move || {
            let errors = [
                add(&path, &request("bob")).unwrap_err().to_string(),
                remove(&path, None, "bob").unwrap_err().to_string(),
            ];
            drop(dir);
            errors
        });
        for err in errors {
            assert!(
                err.contains("cannot read the configuration: it is a FIFO, not a regular file"),
                "{err}"
            );
        }
    }

    #[test]
    fn remove_restores_the_original_file_and_deletes_the_key_files() {
        let (dir, path) = setup(CONFIG);
        let added = add(
            &path,
            &AddRequest {
                store_private_key: true,
                ..request("bob")
            },
        )
        .unwrap();
        let removed = remove(&path, None, "bob").unwrap();
        assert_eq!(removed.interface, "wg0");
        assert_eq!(removed.public_key, added.client.private_key.public_key());
        assert_eq!(
            removed.removed_files,
            [
                dir.path().join("wg0-bob.psk"),
                dir.path().join("wg0-bob.key")
            ]
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
        assert_eq!(mode(&path), 0o640);
        assert!(!dir.path().join("wg0-bob.psk").exists());
    }

    #[test]
    fn remove_of_an_unknown_peer_names_the_peers() {
        let (_dir, path) = setup(CONFIG);
        let err = format!("{:#}", remove(&path, None, "bob").unwrap_err());
        assert!(err.contains("no peer named \"bob\""), "{err}");
        assert!(err.contains("wg0: \"alice\"; wg1: none"), "{err}");
        let err = format!("{:#}", remove(&path, Some("wg1"), "alice").unwrap_err());
        assert!(err.contains("no peer named \"alice\" on wg1"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
    }

    #[test]
    fn add_and_remove_keep_crlf_line_endings_and_a_missing_final_newline() {
        let original = CONFIG.trim_end().replace('\n', "\r\n");
        let (_dir, path) = setup(&original);
        let added = add(&path, &request("bob")).unwrap();
        let key = added.client.private_key.public_key();
        let table = peer_table("wg0", "bob", &key, "\"10.8.0.3/32\", \"fd08::3/128\"")
            .replace('\n', "\r\n");
        let expected = original.replacen("# fixed\r\n", &format!("# fixed\r\n{table}"), 1);
        assert_eq!(fs::read_to_string(&path).unwrap(), expected);
        remove(&path, Some("wg0"), "bob").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), original);
    }

    #[test]
    fn replace_file_follows_a_symlink() {
        let (dir, path) = setup(CONFIG);
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        replace_file(&link, "# new\n").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "# new\n");
        assert_eq!(mode(&path), 0o640);
    }
}
