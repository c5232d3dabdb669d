//! `keying = "ike"`: version, identities' PSK, proposals and lifetimes of IKE sites.

use super::*;

/// The IKE keying of `[ipsec.NAME]`.
impl Validator<'_> {
    pub(super) fn ike_keying(
        &mut self,
        name: &str,
        header: &Range<usize>,
        raw: &RawSite,
        local_gateway: Option<&Gateway>,
    ) -> Option<IkeKeying> {
        let version = match &raw.ike_version {
            None => Some(IkeVersion::V2),
            Some(value) => {
                let version = IkeVersion::from_name(value.get_ref().trim());
                if version.is_none() {
                    self.error(
                        value.span(),
                        format!(
                            "ike_version {:?} is not \"ikev2\", \"ikev1-main\" or \
                             \"ikev1-aggressive\"",
                            value.get_ref()
                        ),
                        "use \"ikev2\" unless the other side speaks only IKEv1; a FRITZ!Box's \
                         LAN-to-LAN connection is \"ikev1-aggressive\"",
                    );
                }
                version
            }
        };
        let local_id = raw
            .local_id
            .as_ref()
            .and_then(|id| self.identity(id, "local_id"));
        let remote_id = raw
            .remote_id
            .as_ref()
            .and_then(|id| self.identity(id, "remote_id"));
        if let (Some(IkeVersion::V1Aggressive), None, Some(value)) =
            (version, &raw.local_id, &raw.ike_version)
        {
            let example = match local_gateway {
                Some(Gateway::Name(host)) => host.as_str(),
                _ => "left.domain.com",
            };
            self.error(
                value.span(),
                "ikev1-aggressive needs a local_id",
                format!(
                    "in aggressive mode the other side picks the pre-shared key by the identity \
                     this router sends: add local_id = \"{example}\", the name the other side \
                     has for this router"
                ),
            );
        }

        let psk = match &raw.psk_file {
            None => {
                let file = self.dir.join(format!("{name}.psk"));
                self.error(
                    header.clone(),
                    format!("site {name} has no psk_file"),
                    format!(
                        "add psk_file = \"{name}.psk\" and put the pre-shared key both sides \
                         use in it, or make one with `(umask 077; vpn-ctl genpsk > {})`",
                        shell_quote(&file)
                    ),
                );
                None
            }
            Some(value) => self.psk(name, value),
        };

        let allowed = self.allow_weak(raw.allow_weak.as_ref());
        let v = version.unwrap_or(IkeVersion::V2);
        let ike_proposals =
            self.proposals(raw.ike_proposals.as_ref(), ProposalFor::Ike, v, &allowed);
        let esp_proposals =
            self.proposals(raw.esp_proposals.as_ref(), ProposalFor::Esp, v, &allowed);
        let ike_lifetime = self.lifetime(
            raw.ike_lifetime.as_ref(),
            "ike_lifetime",
            ipsec::DEFAULT_IKE_LIFETIME,
        );
        let esp_lifetime = self.lifetime(
            raw.esp_lifetime.as_ref(),
            "esp_lifetime",
            ipsec::DEFAULT_ESP_LIFETIME,
        );
        let dpd = match &raw.dpd {
            None => Some(Some(ipsec::DEFAULT_DPD)),
            Some(value) => match *value.get_ref() {
                0 => Some(None),
                seconds @ 1..=DPD_MAX => Some(Some(Duration::from_secs(seconds.unsigned_abs()))),
                seconds => {
                    self.error(
                        value.span(),
                        format!("dpd {seconds} is outside 0-{DPD_MAX} seconds"),
                        "dpd = 30 checks every 30 seconds whether the other side still answers \
                         (the default); dpd = 0 turns the check off",
                    );
                    None
                }
            },
        };
        let (psk, psk_file) = psk?;
        Some(IkeKeying {
            version: version?,
            local_id,
            remote_id,
            psk,
            psk_file,
            ike_proposals: ike_proposals?,
            esp_proposals: esp_proposals?,
            ike_lifetime: ike_lifetime?,
            esp_lifetime: esp_lifetime?,
            dpd: dpd?,
            nat_traversal: raw.nat_traversal.as_ref().is_none_or(|b| *b.get_ref()),
        })
    }

    /// The pre-shared key: any text but empty, a trailing newline dropped.
    pub(super) fn psk(
        &mut self,
        name: &str,
        value: &Spanned<String>,
    ) -> Option<(SecretBytes, PathBuf)> {
        let example = format!("{name}.psk");
        let kind = SecretFileKind {
            field: "psk_file",
            example: &example,
            make: "vpn-ctl genpsk",
            holds: "the pre-shared key",
        };
        let file = self.read_secret_file(value, &kind, PSK_FILE_READ_MAX)?;
        let shown = shell_quote(&file.path);
        let problem = match std::str::from_utf8(&file.bytes) {
            _ if file.bytes.len() as u64 >= PSK_FILE_READ_MAX => Some(format!(
                "{} holds {PSK_FILE_READ_MAX} bytes or more, which is no pre-shared key",
                file.path.display()
            )),
            Err(_) => Some(format!("{} does not hold text", file.path.display())),
            Ok(text) if text.trim_end_matches(['\n', '\r']).is_empty() => {
                Some(format!("{} is empty", file.path.display()))
            }
            Ok(_) => None,
        };
        if let Some(message) = &problem {
            self.error(
                value.span(),
                message.clone(),
                format!(
                    "write the pre-shared key both sides use into it as one line of text, or \
                     make one with `(umask 077; vpn-ctl genpsk > {shown})`"
                ),
            );
        }
        if !self.owner_only(value, &file) || problem.is_some() {
            return None;
        }
        let text = String::from_utf8(file.bytes).expect("checked above");
        let key = text.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
        Some((SecretBytes::new(key), file.path))
    }

    /// `allow_weak`: the weak algorithms the user accepts by name.
    pub(super) fn allow_weak(
        &mut self,
        value: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Vec<&'static str> {
        let mut allowed = Vec::new();
        for name in value.map_or(&[][..], |v| v.get_ref().as_slice()) {
            match WEAK_ALGORITHMS
                .iter()
                .find(|w| **w == name.get_ref().trim())
            {
                Some(weak) => allowed.push(*weak),
                None => self.error(
                    name.span(),
                    format!(
                        "allow_weak names {:?}, which is not a weak algorithm",
                        name.get_ref()
                    ),
                    format!(
                        "allow_weak takes the weak algorithms a proposal uses: {}",
                        WEAK_ALGORITHMS.join(", ")
                    ),
                ),
            }
        }
        allowed
    }

    /// `ike_proposals` or `esp_proposals`, or the version's default when left out.
    pub(super) fn proposals(
        &mut self,
        value: Option<&Spanned<Vec<Spanned<String>>>>,
        kind: ProposalFor,
        version: IkeVersion,
        allowed: &[&'static str],
    ) -> Option<Vec<String>> {
        let (field, default) = match kind {
            ProposalFor::Ike => ("ike_proposals", version.default_ike_proposal()),
            ProposalFor::Esp => ("esp_proposals", version.default_esp_proposal()),
        };
        let Some(list) = value else {
            return Some(vec![default.to_string()]);
        };
        if list.get_ref().is_empty() {
            self.error(
                list.span(),
                format!("{field} is empty"),
                format!(
                    "list what the other side accepts, e.g. {field} = [\"{default}\"], or leave \
                     {field} out for that default"
                ),
            );
            return None;
        }
        let mut ok = true;
        for value in list.get_ref() {
            let text = value.get_ref().trim();
            let problem = match Proposal::parse(text, kind) {
                Err(e) => Some(proposal_problem(text, field, default, &e)),
                Ok(p) if kind == ProposalFor::Ike && version != IkeVersion::V2 && p.aead => Some((
                    format!(
                        "{text:?} uses the AEAD {}, which IKEv1 cannot use for the IKE SA",
                        p.encryption[0]
                    ),
                    format!(
                        "use a cipher with an integrity algorithm, e.g. {field} = \
                             [\"{default}\"] (ESP may use AEADs with IKEv1)"
                    ),
                )),
                Ok(p) => {
                    let refused: Vec<&str> = p
                        .weak
                        .iter()
                        .copied()
                        .filter(|w| !allowed.contains(w))
                        .collect();
                    (!refused.is_empty()).then(|| {
                        let mut accept: Vec<&str> = allowed.to_vec();
                        accept.extend(refused.iter().filter(|w| !allowed.contains(w)));
                        let accept: Vec<String> =
                            accept.iter().map(|w| format!("\"{w}\"")).collect();
                        (
                            format!(
                                "{text:?} uses weak algorithm{} {}",
                                if refused.len() > 1 { "s" } else { "" },
                                refused.join(", ")
                            ),
                            format!(
                                "these are breakable today; prefer e.g. \"{default}\". If the \
                                 other side offers nothing better (many FRITZ!Box setups need \
                                 modp1024 and sha1), accept them by name: allow_weak = [{}]",
                                accept.join(", ")
                            ),
                        )
                    })
                }
            };
            if let Some((message, help)) = problem {
                self.error(value.span(), message, help);
                ok = false;
            }
        }
        ok.then(|| {
            list.get_ref()
                .iter()
                .map(|p| p.get_ref().trim().to_string())
                .collect()
        })
    }

    pub(super) fn lifetime(
        &mut self,
        value: Option<&Spanned<i64>>,
        field: &str,
        default: Duration,
    ) -> Option<Duration> {
        let Some(value) = value else {
            return Some(default);
        };
        let seconds = *value.get_ref();
        if LIFETIME_RANGE.contains(&seconds) {
            return Some(Duration::from_secs(seconds.unsigned_abs()));
        }
        self.error(
            value.span(),
            format!(
                "{field} {seconds} is outside {}-{} seconds",
                LIFETIME_RANGE.start(),
                LIFETIME_RANGE.end()
            ),
            format!(
                "e.g. {field} = {} (the default), or leave {field} out",
                default.as_secs()
            ),
        );
        None
    }
}

/// The message and help for a proposal strongSwan would not take.
pub(super) fn proposal_problem(
    text: &str,
    field: &str,
    default: &str,
    e: &ProposalError,
) -> (String, String) {
    let form = format!(
        "write strongSwan's algorithm keywords joined by '-' (cipher-integrity-group), e.g. \
         {field} = [\"{default}\"]"
    );
    match e {
        ProposalError::Empty => (format!("an empty proposal in {field}"), form),
        ProposalError::Unknown(keyword) => (
            format!("{keyword:?} in proposal {text:?} is not an algorithm vpn-ctl knows"),
            form,
        ),
        ProposalError::Misplaced(keyword, kind) => (
            format!(
                "{keyword:?} in proposal {text:?} is {}, which {} proposals do not have",
                kind.describe(),
                if field == "esp_proposals" {
                    "ESP"
                } else {
                    "IKE"
                }
            ),
            format!("remove {keyword:?} from it"),
        ),
        ProposalError::Missing(kind) => {
            let help = match kind {
                AlgorithmKind::Encryption | AlgorithmKind::Aead => {
                    "add a cipher, e.g. aes256 (with an integrity algorithm) or aes256gcm16"
                        .to_string()
                }
                AlgorithmKind::Integrity => format!(
                    "add one, e.g. \"{}\", or use a cipher that includes it, such as \
                     aes256gcm16",
                    match text.split_once('-') {
                        Some((cipher, rest)) => format!("{cipher}-sha256-{rest}"),
                        None => format!("{text}-sha256"),
                    }
                ),
                AlgorithmKind::KeyExchange => format!("add one, e.g. \"{text}-ecp256\""),
                AlgorithmKind::Prf => "an AEAD cipher in IKE needs a pseudo-random function \
                                       named: add e.g. prfsha256, as in \
                                       \"aes256gcm16-prfsha256-ecp256\""
                    .to_string(),
                AlgorithmKind::Esn => form,
            };
            let what = kind.describe();
            let what = what.split_once(' ').map_or(what, |(_, noun)| noun);
            (format!("proposal {text:?} has no {what}"), help)
        }
        ProposalError::Mixed { aead, classic } => (
            format!("proposal {text:?} mixes the AEAD {aead} with the cipher {classic}"),
            "strongSwan cannot combine the two kinds in one proposal: write them as two \
             proposals"
                .to_string(),
        ),
    }
}
