use std::fs;

use super::*;

const PRIVATE: &str = "YAnz6N7eLtwMXw9JOuZUy0ohmrhCoQeZQXbaMFoc6mE=";
const PHONE: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const LAPTOP: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
const PSK: &str = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=";

fn path() -> &'static Path {
    Path::new("/etc/wireguard/wg0.conf")
}

/// Every field wg-quick knows, in the mixed case people write.
fn full() -> String {
    format!(
        "[Interface]
PrivateKey = {PRIVATE}
ListenPort = 51820
Address = 10.8.0.1/24, fd08::1/64
address = 10.9.0.1
MTU = 1420
FwMark = 0xca6c
DNS = 192.168.1.1, lan
Table = 1234
PreUp = sysctl -w net.ipv4.ip_forward=1
PostUp = iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
PreDown = logger wg0 going down
PostDown = iptables -D FORWARD -i %i -j ACCEPT
SaveConfig = true

# phone
[Peer]
PublicKey = {PHONE}
PresharedKey = {PSK}
AllowedIPs = 10.8.0.2/32, fd08::2/128
AllowedIPs = 10.8.1.0/24
PersistentKeepalive = 25

### begin laptop ###
[peer]
publickey = {LAPTOP}
allowedips = 0.0.0.0/0
endpoint = [2001:db8::7]:51821   # the office
persistentkeepalive = off
"
    )
}

#[test]
fn every_field_of_a_wg_quick_file_is_read() {
    let imported = from_text(path(), "wg0", &full()).unwrap();
    assert_eq!(imported.format, Format::WgQuick);
    assert_eq!(imported.source, path());
    let iface = &imported.interfaces[0];
    assert_eq!(iface.name, "wg0");
    assert_eq!(iface.private_key, PRIVATE.parse().unwrap());
    assert_eq!(iface.listen_port, Some(51820));
    let addresses: Vec<_> = iface.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(addresses, ["10.8.0.1/24", "fd08::1/64", "10.9.0.1/32"]);
    assert_eq!(iface.mtu, Some(1420));
    assert_eq!(iface.fwmark, Some(0xca6c));

    let [phone, laptop] = &iface.peers[..] else {
        panic!("two peers: {:?}", iface.peers)
    };
    assert_eq!(phone.name, "phone");
    assert_eq!(phone.line, 17);
    assert_eq!(phone.public_key, PHONE.parse().unwrap());
    assert_eq!(phone.preshared_key, Some(PSK.parse().unwrap()));
    let allowed: Vec<_> = phone.allowed_ips.iter().map(ToString::to_string).collect();
    assert_eq!(allowed, ["10.8.0.2/32", "fd08::2/128", "10.8.1.0/24"]);
    assert_eq!(phone.endpoint, None);
    assert_eq!(phone.persistent_keepalive, Some(25));
    assert!(phone.route);

    assert_eq!(laptop.name, "laptop");
    assert_eq!(laptop.public_key, LAPTOP.parse().unwrap());
    assert_eq!(laptop.preshared_key, None);
    assert_eq!(
        laptop.endpoint,
        Some("[2001:db8::7]:51821".parse().unwrap())
    );
    assert_eq!(laptop.persistent_keepalive, None);
}

#[test]
fn what_has_no_vpn_ctl_equivalent_is_noted() {
    let imported = from_text(path(), "wg0", &full()).unwrap();
    let notes = imported.notes.join("\n");
    for expected in [
        "line 8: `DNS = 192.168.1.1, lan`",
        "line 9: `Table = 1234`",
        "line 10: `PreUp = sysctl -w net.ipv4.ip_forward=1`",
        "line 11: `PostUp = iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A \
             POSTROUTING -o eth0 -j MASQUERADE`",
        "line 12: `PreDown = logger wg0 going down`",
        "line 13: `PostDown = iptables -D FORWARD -i %i -j ACCEPT`",
        "line 14: `SaveConfig = true`",
        "line 25: this peer's AllowedIPs include a default route",
    ] {
        assert!(notes.contains(expected), "missing {expected:?} in\n{notes}");
    }
    assert_eq!(imported.notes.len(), 8, "{notes}");
}

#[test]
fn table_off_means_no_routes() {
    let text = full().replace("Table = 1234", "Table = off");
    let imported = from_text(path(), "wg0", &text).unwrap();
    assert!(imported.interfaces[0].peers.iter().all(|p| !p.route));
    assert!(imported.notes.iter().any(|n| n.contains("`Table = off`")));
    // No default-route warning: wg-quick added no routes either.
    assert!(!imported.notes.iter().any(|n| n.contains("default route")));
}

#[test]
fn unknown_keys_are_noted_with_secrets_redacted() {
    let text = format!(
        "[Interface]\nPrivateKey = {PRIVATE}\nJc = 4\n[Peer]\nPublicKey = {PHONE}\n\
             WrongKey = {PSK}\n"
    );
    let imported = from_text(path(), "awg0", &text).unwrap();
    assert_eq!(
        imported.notes,
        [
            "not carried over: line 3: `Jc = 4` in [Interface] (not a wg-quick setting)",
            "not carried over: line 6: `WrongKey = (redacted)` in [Peer] (not a wg-quick \
                 setting)",
        ]
    );
    assert_eq!(imported.interfaces[0].peers[0].name, "peer1");
}

/// A key on a line that is not `Field = KEY` was split at its `=` padding, and the note
/// about the "unknown setting" showed the whole key, on the terminal and in the header
/// comment of the written vpn.toml.
#[test]
fn malformed_secret_lines_never_show_the_key() {
    let fresh = || Secret::generate_preshared().expose_base64();
    // Where the key goes: KEY.
    let forms = [
        ("[Peer]", "PresharedKey KEY"),
        ("[Peer]", "PresharedKey: KEY"),
        ("[Peer]", "presharedkey\tKEY"),
        ("[Peer]", "Preshared Key = KEY"),
        ("[Peer]", "PresharedKeyKEY"),
        ("[Interface]", "PrivateKey: KEY"),
        ("[Interface]", "PrivateKey KEY"),
        ("[Interface]", "private_key = KEY"),
        ("[Tunnel]", "PrivateKey KEY"),
        ("", "PrivateKey: KEY"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (section, form)) in forms.iter().enumerate() {
        let key = fresh();
        let line = form.replace("KEY", &key);
        let text = format!(
            "[Interface]\nPrivateKey = {PRIVATE}\n[Peer]\nPublicKey = {PHONE}\n\
                 {section}\n{line}\n"
        );
        let text = if section.is_empty() {
            format!("{line}\n{text}")
        } else {
            text
        };
        let file = dir.path().join(format!("wg{i}.conf"));
        fs::write(&file, &text).unwrap();
        let mut shown = String::new();
        match import_wg_quick(&file, None) {
            Ok(imported) => {
                shown.push_str(&imported.notes.join("\n"));
                let out = dir.path().join(format!("out{i}"));
                match crate::import::write(&imported, &out, "vpn.toml") {
                    Ok(written) => {
                        shown.push_str(&fs::read_to_string(written.config).unwrap());
                    }
                    Err(e) => shown.push_str(&format!("{e:#}")),
                }
            }
            Err(e) => shown.push_str(&format!("{e:#}")),
        }
        for part in [&key[..], &key[..20], &key[23..43], &key[24..]] {
            assert!(!shown.contains(part), "{line:?} shows {part:?}:\n{shown}");
        }
    }
    // Each is refused (wg-quick refuses them too), and the message names the field.
    let err = from_text(
            path(),
            "wg0",
            &format!("[Interface]\nPrivateKey = {PRIVATE}\n[Peer]\nPublicKey = {PHONE}\nPresharedKey: {PSK}\n"),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/wireguard/wg0.conf:5:1: this PresharedKey line is not `PresharedKey = KEY` (it \
             is not shown: it may hold a key)\n  help: write it as `PresharedKey = ` followed \
             by the key, as wg(8) reads it"
    );
}

#[test]
fn what_is_shown_of_a_line_never_holds_a_key_like_run() {
    assert_eq!(redact_keys("PostUp = echo hi"), "PostUp = echo hi");
    assert_eq!(
        redact_keys(&format!("Jc {PSK} and {PHONE}x")),
        "Jc (redacted) and (redacted)x"
    );
    // 39 base64 characters are not a key; hyphens and dots break runs.
    let short = "a".repeat(39);
    assert_eq!(redact_keys(&short), short);
    let script = "/usr/local/lib/wireguard-scripts/post-up.d/firewall.sh";
    assert_eq!(redact_keys(script), script);
    // A key in a malformed line, an unknown setting or a script is not shown.
    let bare = &PHONE[..43];
    let text = format!("[Interface]\nPrivateKey = {PRIVATE}\n{bare} garbage\n");
    let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
    assert!(err.contains("expected `Key = Value`, found \""), "{err}");
    assert!(!err.contains(&PHONE[..12]), "{err}");
    let text =
        format!("[Interface]\nPrivateKey = {PRIVATE}\nPostUp = echo {PSK}\n{PHONE} garbage\n");
    let notes = from_text(path(), "wg0", &text).unwrap().notes.join("\n");
    assert!(notes.contains("`PostUp = (redacted)`"), "{notes}");
    assert!(notes.contains("`(redacted) = garbage`"), "{notes}");
    assert!(
        !notes.contains(&PSK[..20]) && !notes.contains(&PHONE[..20]),
        "{notes}"
    );
}

#[test]
fn malformed_lines_are_reported_together_with_line_and_column() {
    let text = format!(
        "ListenPort = 1
[Interface]
PrivateKey = {PRIVATE}
ListenPort = 70000
Address = 10.8.0.1/33
MTU = big
garbage here
[Peer]
PublicKey = not-a-key
AllowedIPs = 10.8.0.2/32, 10.8.0.300
Endpoint = vpn.example.org
PersistentKeepalive = -1
[Peer]
AllowedIPs = 10.8.0.3/32
[Tunnel]
Foo = bar
"
    );
    let err = from_text(path(), "wg0", &text).unwrap_err();
    let at: Vec<_> = err.diagnostics.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(
        at,
        [
            (1, 1),
            (4, 14),
            (5, 11),
            (6, 7),
            (7, 1),
            (9, 13),
            (10, 14),
            (11, 12),
            (12, 23),
            (15, 1),
            (13, 1),
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("/etc/wireguard/wg0.conf:9:13: PublicKey: not a WireGuard key"),
        "{text}"
    );
    assert!(text.contains("[Peer] has no PublicKey"), "{text}");
    assert!(!text.contains("not-a-key"), "{text}");
}

#[test]
fn a_file_without_a_private_key_or_interface_is_refused() {
    let err = from_text(path(), "wg0", "[Interface]\nListenPort = 51820\n").unwrap_err();
    assert_eq!(err.diagnostics[0].line, 1);
    assert!(err.to_string().contains("no PrivateKey"), "{err}");
    let err = from_text(path(), "wg0", "# nothing\n").unwrap_err();
    assert!(err.to_string().contains("no [Interface] section"), "{err}");
}

#[test]
fn peer_names_come_from_the_comment_just_above() {
    for (comment, name) in [
        ("# phone", Some("phone")),
        ("#Name = Dad's phone", Some("Dad's phone")),
        ("### begin tablet ###", Some("tablet")),
        ("### Client work", Some("work")),
        ("### end tablet ###", None),
        ("# Endpoint = vpn.example.org:51820", None),
        ("#", None),
    ] {
        assert_eq!(name_from_comment(comment).as_deref(), name, "{comment:?}");
    }
    // A blank line between the comment and [Peer] breaks the link.
    let text =
        format!("[Interface]\nPrivateKey = {PRIVATE}\n# phone\n\n[Peer]\nPublicKey = {PHONE}\n");
    let imported = from_text(path(), "wg0", &text).unwrap();
    assert_eq!(imported.interfaces[0].peers[0].name, "peer1");
}

#[test]
fn a_key_under_a_mistyped_name_is_not_noted() {
    // Found by tests/fuzz_parsers.rs (the UCI importer's twin): the note on the unknown
    // setting quoted its value, a private key.
    let text = format!("[Interface]\nPrivateKey = {PRIVATE}\nPrivatKee = {PSK}\n");
    let notes = from_text(path(), "wg0", &text).unwrap().notes.join("\n");
    assert!(notes.contains("`PrivatKee = (redacted)`"), "{notes}");
    let text = format!("[Interface]\nPrivateKey = {PRIVATE}\nSecret = {PSK}\n");
    let notes = from_text(path(), "wg0", &text).unwrap().notes.join("\n");
    assert!(notes.contains("`Secret = (redacted)`"), "{notes}");
    // Found by a longer run: `PresharedKey <key>` without its `=` is split at the key's
    // own `=` padding, and the note quoted the "name", key included. Such a line is now
    // refused, and not shown.
    let text = format!(
        "[Interface]\nPrivateKey = {PRIVATE}\n[Peer]\nPublicKey = {PHONE}\nPresharedKey \0 {PSK}\n"
    );
    let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
    assert!(!err.contains(&PSK[..12]), "{err}");
    assert!(
        err.contains("this PresharedKey line is not `PresharedKey = KEY`"),
        "{err}"
    );
    // The same before the first section, and a key given where an address belongs.
    let text = format!("PrivateKey < {PRIVATE}\n[Interface]\nAddress = {PSK}\n");
    let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
    assert!(
        !err.contains(&PRIVATE[..12]) && !err.contains(&PSK[..12]),
        "{err}"
    );
    assert!(
        err.contains("a value that holds a key (not shown) is not an IP"),
        "{err}"
    );
}

#[test]
fn a_header_that_runs_on_into_a_setting_does_not_show_the_setting() {
    // Found by tests/fuzz_parsers.rs: `[Interfa` (or a header whose newline was lost)
    // followed by `PrivateKey = ...` put the private key into the error message.
    for (text, shown) in [
        (format!("[Interfa PrivateKey = {PRIVATE}\n"), "[Interfa..."),
        (format!("[PrivateKey = {PRIVATE}Peer]\n"), "[PrivateKey..."),
        (
            format!("[Interfa\0\0PrivateKey={PRIVATE}\n"),
            "[Interfa\0\0PrivateKey...",
        ),
        (
            format!("[Interface] PrivateKey = {PRIVATE}\n"),
            "[Interface]...",
        ),
    ] {
        let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
        assert!(!err.contains(&PRIVATE[..12]), "{err}");
        assert!(err.contains(&format!("unknown section {shown}")), "{err}");
    }
    // Found the same way: a setting without `=` was quoted whole.
    let text = format!(
        "[Interface]\nPrivateKey {}\n",
        PRIVATE.trim_end_matches('=')
    );
    let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
    assert!(!err.contains(&PRIVATE[..12]), "{err}");
    assert!(
        err.contains("this PrivateKey line is not `PrivateKey = KEY`"),
        "{err}"
    );
    // A header alone on its line is shown whole.
    let text = format!("[Interface]\nPrivateKey = {PRIVATE}\n[Peers]\n");
    let err = from_text(path(), "wg0", &text).unwrap_err().to_string();
    assert!(err.contains("unknown section [Peers]\n"), "{err}");
}

#[test]
fn the_interface_is_named_after_the_file_unless_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("home.conf");
    std::fs::write(&file, format!("[Interface]\nPrivateKey = {PRIVATE}\n")).unwrap();
    assert_eq!(
        import_wg_quick(&file, None).unwrap().interfaces[0].name,
        "home"
    );
    assert_eq!(
        import_wg_quick(&file, Some("wg7")).unwrap().interfaces[0].name,
        "wg7"
    );
    let err = import_wg_quick(&file, Some("a-name-longer-than-15")).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "interface name \"a-name-longer-than-15\" is 21 bytes long; Linux allows at \
                 most 15 (from --name)\n  help: give the interface a name of 1 to 15 bytes"
        ),
        "{err}"
    );
    for bad in [".", "..", "-wg0", "wg/0"] {
        let err = import_wg_quick(&file, Some(bad)).unwrap_err();
        assert!(
            err.to_string().starts_with("interface name ")
                && err.to_string().contains("(from --name)"),
            "{bad:?}: {err}"
        );
    }
    let dotted = dir.path().join("..conf");
    std::fs::write(&dotted, format!("[Interface]\nPrivateKey = {PRIVATE}\n")).unwrap();
    let err = import_wg_quick(&dotted, None).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "interface name \".\" is not allowed (from the file name {})",
            dotted.display()
        )),
        "{err}"
    );

    let other = dir.path().join("home.txt");
    std::fs::write(&other, "").unwrap();
    let err = import_wg_quick(&other, None).unwrap_err();
    assert!(err.to_string().contains("NAME.conf"), "{err}");
}
