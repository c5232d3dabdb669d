//! The account of a converge that failed: what it had applied before the failure, so the
//! user knows the kernel's state and that running the command again continues from there.
//! One wording for every subsystem (WireGuard, static IPsec, IKE).

/// `e`, with what `command` (`up`, `down`) had applied before it: "nothing was changed", or
/// "`vpn-ctl up` stopped part-way; applied before the failure: ...; fix the cause and run it
/// again: it continues from there".
pub fn failed(e: anyhow::Error, command: &str, applied: &[String]) -> anyhow::Error {
    if applied.is_empty() {
        e.context("nothing was changed")
    } else {
        e.context(format!(
            "`vpn-ctl {command}` stopped part-way; applied before the failure: {}. Fix the cause \
             and run `vpn-ctl {command}` again: it continues from there",
            applied.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::failed;

    #[test]
    fn the_account_says_what_was_applied_or_that_nothing_was() {
        let e = || anyhow::anyhow!("the kernel refused");
        assert_eq!(
            format!("{:#}", failed(e(), "up", &[])),
            "nothing was changed: the kernel refused"
        );
        let text = format!(
            "{:#}",
            failed(
                e(),
                "down",
                &["wg0: removed peer a".into(), "wg0: removed peer b".into()]
            )
        );
        assert!(
            text.starts_with(
                "`vpn-ctl down` stopped part-way; applied before the failure: wg0: removed \
                 peer a; wg0: removed peer b. Fix the cause and run `vpn-ctl down` again"
            ),
            "{text}"
        );
        assert!(text.ends_with(": the kernel refused"), "{text}");
    }
}
