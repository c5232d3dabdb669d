//! The kernel's XFRM error counters (`/proc/net/xfrm_stat`, kernel
//! `Documentation/networking/xfrm_proc.rst`): where a wrong SPI, key or policy shows when
//! the SAs themselves look fine. They count since the network namespace was created.

use anyhow::{Context as _, anyhow};

/// The counters of the calling thread's network namespace. `/proc/net` would be the
/// process's (its main thread's) namespace, which is not the same for a thread that entered
/// another one.
pub const XFRM_STAT_PATH: &str = "/proc/thread-self/net/xfrm_stat";

/// Every counter of `/proc/net/xfrm_stat`, in the kernel's order: `(name, value)`.
pub fn xfrm_stat() -> anyhow::Result<Vec<(String, u64)>> {
    let text = std::fs::read_to_string(XFRM_STAT_PATH).with_context(|| {
        format!(
            "cannot read {XFRM_STAT_PATH}; the kernel needs CONFIG_XFRM_STATISTICS for the \
             XFRM error counters"
        )
    })?;
    parse(&text).with_context(|| format!("cannot parse {XFRM_STAT_PATH}"))
}

/// Parses the `NAME<spaces/tab>VALUE` lines of `xfrm_stat`.
pub fn parse(text: &str) -> anyhow::Result<Vec<(String, u64)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let (Some(name), Some(value), None) = (words.next(), words.next(), words.next()) else {
                return Err(anyhow!("unexpected line {line:?}"));
            };
            let value = value
                .parse()
                .with_context(|| format!("the value of {name} is not a number: {value:?}"))?;
            Ok((name.to_string(), value))
        })
        .collect()
}

/// The counters that grew from `before` to `after`, with how much: what the watchdog and a
/// repeated `status` look at ("XfrmInNoStates rising").
pub fn rising(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(name, value)| {
            let old = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v);
            (*value > old).then(|| (name.clone(), value - old))
        })
        .collect()
}

/// What a counter counts, in plain words; `None` for names this version does not know.
pub fn explain(name: &str) -> Option<&'static str> {
    Some(match name {
        "XfrmInError" => "incoming IPsec packets dropped for an error not counted elsewhere",
        "XfrmInBufferError" => "incoming IPsec packets dropped for lack of memory",
        "XfrmInHdrError" => "incoming IPsec packets with a malformed header",
        "XfrmInNoStates" => {
            "ESP packets arrived for which no SA exists: the SPI (or destination address) is \
             not one we have; the peer sends with an SPI we don't have"
        }
        "XfrmInStateProtoError" => {
            "ESP packets that failed to decrypt or authenticate: the keys do not match"
        }
        "XfrmInStateModeError" => "incoming packets that did not fit the SA's mode",
        "XfrmInStateSeqError" => {
            "incoming packets outside the replay window (replayed, or far out of order)"
        }
        "XfrmInStateExpired" => "incoming packets for an SA whose lifetime is over",
        "XfrmInStateMismatch" => {
            "incoming packets that do not fit their SA's options (e.g. UDP encapsulation on \
             one side only)"
        }
        "XfrmInStateInvalid" => "incoming packets for an SA that is no longer valid",
        "XfrmInTmplMismatch" => {
            "decrypted packets that do not fit the policy's template: the SA is right but the \
             policy names other gateways or another reqid"
        }
        "XfrmInNoPols" => {
            "decrypted packets for which no in/fwd policy exists: the subnets differ between \
             the two sides"
        }
        "XfrmInPolBlock" => "incoming packets dropped by a block policy",
        "XfrmInPolError" => "incoming packets dropped for a policy error",
        "XfrmOutError" => "outgoing packets dropped for an error not counted elsewhere",
        "XfrmOutBundleGenError" => "outgoing packets for which the transform could not be built",
        "XfrmOutBundleCheckError" => "outgoing packets whose transform was no longer valid",
        "XfrmOutNoStates" => {
            "outgoing packets matched a policy but no SA exists to encrypt them with: the SA \
             is missing"
        }
        "XfrmOutStateProtoError" => "outgoing packets that failed to encrypt",
        "XfrmOutStateModeError" => "outgoing packets that did not fit the SA's mode",
        "XfrmOutStateSeqError" => {
            "outgoing packets dropped because the SA's sequence number ran out: it needs new \
             keys"
        }
        "XfrmOutStateExpired" => "outgoing packets for an SA whose lifetime is over",
        "XfrmOutPolBlock" => "outgoing packets dropped by a block policy",
        "XfrmOutPolDead" => "outgoing packets that met a policy being removed",
        "XfrmOutPolError" => "outgoing packets dropped for a policy error",
        "XfrmFwdHdrError" => {
            "forwarded packets dropped: they arrived unencrypted (or through another SA) where \
             a fwd policy requires ESP"
        }
        "XfrmOutStateInvalid" => "outgoing packets for an SA that is no longer valid",
        "XfrmAcquireError" => "an IKE daemon was asked for an SA and could not provide it",
        "XfrmOutStateDirError" => "outgoing packets that met an SA meant for incoming ones",
        "XfrmInStateDirError" => "incoming packets that met an SA meant for outgoing ones",
        "XfrmInIptfsError" => "incoming IP-TFS packets dropped",
        "XfrmOutNoQueueSpace" => "outgoing packets dropped because a queue was full",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "XfrmInError             \t0\nXfrmInNoStates          \t7\n\
                          XfrmOutNoStates         \t0\nXfrmSomethingNew        \t2\n";

    #[test]
    fn parses_every_line_in_order() {
        let stats = parse(SAMPLE).unwrap();
        let names: Vec<&str> = stats.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "XfrmInError",
                "XfrmInNoStates",
                "XfrmOutNoStates",
                "XfrmSomethingNew"
            ]
        );
        assert_eq!(stats[1].1, 7);
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_it() {
        let err = parse("XfrmInError 0\nXfrmInNoStates lots\n").unwrap_err();
        assert!(format!("{err:#}").contains("XfrmInNoStates"), "{err:#}");
    }

    #[test]
    fn rising_lists_only_counters_that_grew_with_the_increase() {
        let before = parse(SAMPLE).unwrap();
        let mut after = before.clone();
        after[1].1 = 10;
        after[2].1 = 0;
        assert_eq!(rising(&before, &after), [("XfrmInNoStates".to_string(), 3)]);
    }

    #[test]
    fn the_counters_status_relies_on_exist_in_this_kernel_and_are_explained() {
        let Ok(stats) = xfrm_stat() else {
            return; // a kernel without CONFIG_XFRM_STATISTICS
        };
        for name in [
            "XfrmInNoStates",
            "XfrmInStateProtoError",
            "XfrmInTmplMismatch",
            "XfrmInNoPols",
            "XfrmOutNoStates",
            "XfrmFwdHdrError",
        ] {
            assert!(
                stats.iter().any(|(n, _)| n == name),
                "{name} not in {XFRM_STAT_PATH}"
            );
            assert!(explain(name).is_some(), "no explanation for {name}");
        }
    }

    #[test]
    fn the_spi_counter_says_what_to_check() {
        assert!(explain("XfrmInNoStates").unwrap().contains("SPI"));
        assert!(explain("XfrmNoSuchCounter").is_none());
    }
}
