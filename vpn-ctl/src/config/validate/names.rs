//! The rules for the names a user gives: peers, sites, hostnames.

use super::*;

/// Why `name` cannot be a peer's name, as the end of a sentence about it ("peer name
/// {problem}"); `None` when it can. The configuration and `vpn-ctl peer add` both check names
/// with it. A name is shown in `status`, logs and metric labels, so it holds no control
/// characters (a NUL, a terminal escape sequence), no Unicode direction controls (they make
/// a name display as another, as in "Trojan Source", CVE-2021-42574), and at most
/// [`PEER_NAME_MAX`] characters.
pub fn peer_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("is empty".to_string());
    }
    let length = name.chars().count();
    if length > PEER_NAME_MAX {
        let start: String = name.chars().take(20).collect();
        return Some(format!(
            "{start:?}... is {length} characters long; the most is {PEER_NAME_MAX}"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Some(format!("{name:?} contains the control character {c:?}"));
    }
    name.chars().find(|c| is_direction_control(*c)).map(|c| {
        format!(
            "{name:?} contains {c:?}, a Unicode direction control (it makes text display in \
             another order than it is written)"
        )
    })
}

/// The Unicode bidirectional formatting characters: the embeddings and overrides (U+202A-
/// U+202E), the isolates (U+2066-U+2069) and the marks (U+200E, U+200F, U+061C).
pub(super) fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
}

/// Why `name` cannot be an IPsec site's name, as the end of a sentence about it.
pub(super) fn site_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".to_string());
    }
    let length = name.chars().count();
    if length > SITE_NAME_MAX {
        return Some(format!(
            "{name:?} is {length} characters long; the most is {SITE_NAME_MAX}"
        ));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .map(|c| format!("{name:?} contains {c:?}"))
}
