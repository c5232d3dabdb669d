//! A failed `initiate`, and charon's log lines turned into advice.

use super::*;

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
