//! OpenWrt's fw4: it owns `table inet fw4` and regenerates it on every reload, so vpn-ctl
//! does not add a table beside it but drops its rules into fw4's include directories, which
//! fw4 splices into its own chains (`/usr/share/nftables.d/chain-pre/CHAIN/*.nft`), and
//! reloads fw4.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::needs::{Hook, Need};

/// Where fw4 looks for includes; `VPN_CTL_FW4_INCLUDES` overrides it (tests, or a build
/// that moved it).
pub const DEFAULT_INCLUDES: &str = "/usr/share/nftables.d";
/// The file vpn-ctl owns in each chain's directory.
const FILE: &str = "30-vpn-ctl.nft";
const HOOKS: [Hook; 3] = [Hook::Input, Hook::Forward, Hook::Postrouting];

pub fn includes_dir() -> PathBuf {
    std::env::var_os("VPN_CTL_FW4_INCLUDES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_INCLUDES))
}

/// `DIR/chain-pre/CHAIN/30-vpn-ctl.nft` for a hook.
pub fn include_file(dir: &Path, hook: Hook) -> PathBuf {
    dir.join("chain-pre").join(hook.fw4_chain()).join(FILE)
}

/// The include file's text for `hook`: one rule per line, `None` when there is none.
pub fn include_text(needs: &[Need], hook: Hook) -> Option<String> {
    let rules: Vec<String> = needs
        .iter()
        .filter(|n| n.hook == hook)
        .map(Need::nft_rule)
        .collect();
    if rules.is_empty() {
        return None;
    }
    Some(format!(
        "# Written by vpn-ctl (`vpn-ctl down` removes it); fw4 includes it in chain {}.\n{}\n",
        hook.fw4_chain(),
        rules.join("\n")
    ))
}

/// Writes (or removes) the include files so they hold `needs`; returns the files changed.
pub fn write(dir: &Path, needs: &[Need]) -> anyhow::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    for hook in HOOKS {
        let file = include_file(dir, hook);
        let want = include_text(needs, hook);
        let have = std::fs::read_to_string(&file).ok();
        if want == have {
            continue;
        }
        match &want {
            Some(text) => {
                let parent = file.parent().expect("include files have a directory");
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
                crate::files::replace(&file, text.as_bytes(), crate::files::Mode::Set(0o644))
                    .with_context(|| format!("writing {}", file.display()))?;
            }
            None => std::fs::remove_file(&file)
                .with_context(|| format!("removing {}", file.display()))?,
        }
        changed.push(file);
    }
    Ok(changed)
}

/// `fw4 reload`: fw4 regenerates its table with the includes.
pub fn reload() -> anyhow::Result<()> {
    let output = Command::new("fw4")
        .arg("reload")
        .output()
        .context("running `fw4 reload` (is this OpenWrt with firewall4?)")?;
    if !output.status.success() {
        anyhow::bail!(
            "`fw4 reload` failed: {}{}\nvpn-ctl's include files may have a rule fw4's nft \
             rejects: look at {}/chain-pre/*/{FILE}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim(),
            includes_dir().display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::needs::{Action, Expect, Match};

    fn need(hook: Hook, port: u16) -> Need {
        Need {
            hook,
            matches: vec![Match::Iif("wan".into()), Match::Udp(port)],
            action: Action::Accept,
            purpose: format!("port {port}"),
            expect: Expect::Passes,
        }
    }

    #[test]
    fn writes_one_file_per_chain_and_removes_emptied_ones() {
        let dir = tempfile::tempdir().unwrap();
        let needs = [need(Hook::Input, 51820), need(Hook::Input, 500)];
        let changed = write(dir.path(), &needs).unwrap();
        let input = dir.path().join("chain-pre/input/30-vpn-ctl.nft");
        assert_eq!(changed, std::slice::from_ref(&input));
        let text = std::fs::read_to_string(&input).unwrap();
        assert!(
            text.contains(
                "\niifname \"wan\" udp dport 51820 counter accept comment \"vpn-ctl: port 51820 ["
            ),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(write(dir.path(), &needs).unwrap().is_empty(), "unchanged");
        assert_eq!(
            write(dir.path(), &[]).unwrap(),
            std::slice::from_ref(&input)
        );
        assert!(!input.exists());
    }
}
