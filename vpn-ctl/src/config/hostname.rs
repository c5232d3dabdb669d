//! Host names, one rule for all of them.

/// Why `name` is not a DNS name vpn-ctl takes for a host (RFC 1123: letters, digits and '-'
/// in dot-separated labels of 1-63 characters, at most 253 in all; and '_', which resolvers
/// and dynamic-DNS providers accept), as the end of a sentence about it. The one rule for
/// every host a user writes: WireGuard endpoints, IPsec gateways, what imports take in.
pub fn hostname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".to_string());
    }
    if name.len() > 253 {
        return Some(format!(
            "it is {} characters long; a DNS name has at most 253",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!("it contains {c:?}"));
    }
    if name.ends_with('.') {
        return Some("it ends with '.'".to_string());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("it has an empty part between dots".to_string());
        }
        if label.len() > 63 {
            return Some(format!("its part {label:?} is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("its part {label:?} starts or ends with '-'"));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.chars().all(|c| c.is_ascii_digit()))
    {
        return Some("a DNS name does not end in a number".to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::hostname_problem;

    #[test]
    fn one_rule_for_every_host() {
        for good in [
            "vpn.example.org",
            "my_box.dyndns.example",
            "fritz.box",
            "a-b.c",
        ] {
            assert_eq!(hostname_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("", "it is empty"),
            ("your publicIP", "it contains ' '"),
            ("vpn.example.org.", "it ends with '.'"),
            ("a..b", "it has an empty part between dots"),
            ("-a.b", "its part \"-a\" starts or ends with '-'"),
            ("10.0.0.300", "a DNS name does not end in a number"),
        ] {
            assert_eq!(hostname_problem(bad).as_deref(), Some(why), "{bad}");
        }
        // A WireGuard endpoint's host goes by the same rule.
        let err = "your publicIP:51820"
            .parse::<crate::config::Endpoint>()
            .unwrap_err();
        assert_eq!(
            err,
            "\"your publicIP\" in \"your publicIP:51820\" is not an IP address or a DNS name: \
             it contains ' '"
        );
        assert!(
            "my_box.example:51820"
                .parse::<crate::config::Endpoint>()
                .is_ok()
        );
    }
}
