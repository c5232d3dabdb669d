//! `keying = "static"`: SPIs and key files of manually keyed sites.

use super::*;

/// The static keying of `[ipsec.NAME]`.
impl Validator<'_> {
    pub(super) fn static_keying(
        &mut self,
        name: &str,
        header: &Range<usize>,
        raw: &RawSite,
        local_gateway: Option<&Gateway>,
        remote_gateway: Option<&Gateway>,
    ) -> Option<StaticKeying> {
        // The kernel's SAs are bound to the two addresses.
        match (&raw.local_gateway, local_gateway) {
            (None, _) => self.error(
                header.clone(),
                format!("site {name} has no local_gateway"),
                "static keying needs this router's public address: add e.g. local_gateway = \
                 \"198.51.100.1\"",
            ),
            (Some(value), Some(Gateway::Name(host))) => {
                self.static_gateway_is_a_name(value, "local_gateway", host)
            }
            _ => {}
        }
        if let (Some(value), Some(Gateway::Name(host))) = (&raw.remote_gateway, remote_gateway) {
            self.static_gateway_is_a_name(value, "remote_gateway", host);
        }

        let esp = match &raw.esp {
            None => {
                self.error(
                    header.clone(),
                    format!("site {name} has no esp"),
                    "static keying uses one AEAD both ways: add esp = \"aes256gcm16\" (or \
                     \"aes128gcm16\")",
                );
                None
            }
            Some(value) => {
                let aead = StaticAead::from_name(value.get_ref().trim());
                if aead.is_none() {
                    self.error(
                        value.span(),
                        format!(
                            "esp {:?} is not an algorithm static keying offers",
                            value.get_ref()
                        ),
                        "use esp = \"aes256gcm16\" or \"aes128gcm16\" (AES-GCM with a 16-byte \
                         ICV, the kernel's rfc4106(gcm(aes)))",
                    );
                }
                aead
            }
        };

        let spi_out = self.spi(name, header, raw.spi_out.as_ref(), "spi_out");
        let spi_in = self.spi(name, header, raw.spi_in.as_ref(), "spi_in");
        match (spi_out, spi_in, &raw.spi_in) {
            (Some(out), Some(inbound), Some(value)) if out == inbound => {
                let other = if out == u32::MAX { SPI_MIN } else { out + 1 };
                self.error(
                    value.span(),
                    format!("spi_in {out:#x} is the same as spi_out"),
                    format!(
                        "each direction needs its own SPI, e.g. spi_in = {other:#x}; the other \
                         router has them swapped (its spi_out is this spi_in)"
                    ),
                );
                self.claim_spi(name, "spi_out", raw.spi_out.as_ref(), out);
            }
            _ => {
                if let Some(out) = spi_out {
                    self.claim_spi(name, "spi_out", raw.spi_out.as_ref(), out);
                }
                if let Some(inbound) = spi_in {
                    self.claim_spi(name, "spi_in", raw.spi_in.as_ref(), inbound);
                }
            }
        }

        let key_out = self.static_key(name, header, raw.key_out_file.as_ref(), "key_out_file", esp);
        let key_in = self.static_key(name, header, raw.key_in_file.as_ref(), "key_in_file", esp);
        if let (Some((out, out_path)), Some((inbound, in_path)), Some(value)) =
            (&key_out, &key_in, &raw.key_in_file)
            && out == inbound
        {
            let len = esp.map_or(StaticAead::Aes256Gcm16.key_len(), StaticAead::key_len);
            let make = make_static_key(len);
            let help = if out_path == in_path {
                let example = format!("{name}-in.key");
                format!(
                    "each direction needs its own key (AES-GCM with one key both ways repeats \
                     nonces, which breaks it): make a second one with `(umask 077; {make} > \
                     {})` and set key_in_file = \"{example}\"",
                    shell_quote(&self.dir.join(&example))
                )
            } else {
                format!(
                    "each direction needs its own key (AES-GCM with one key both ways repeats \
                     nonces, which breaks it): make another with `(umask 077; {make} > {})`, \
                     and give it to the other router as its key_out_file",
                    shell_quote(in_path)
                )
            };
            let message = if out_path == in_path {
                "key_in_file is the same file as key_out_file"
            } else {
                "key_in_file holds the same key as key_out_file"
            };
            self.error(value.span(), message, help);
            return None;
        }

        let ((key_out, key_out_file), (key_in, key_in_file)) = (key_out?, key_in?);
        Some(StaticKeying {
            esp: esp?,
            spi_out: spi_out?,
            spi_in: spi_in?,
            key_out,
            key_in,
            key_out_file,
            key_in_file,
        })
    }

    pub(super) fn static_gateway_is_a_name(
        &mut self,
        value: &Spanned<String>,
        field: &str,
        host: &str,
    ) {
        self.error(
            value.span(),
            format!("{field} {host:?} is a DNS name, but static keying needs an address"),
            format!(
                "the kernel's SAs are bound to addresses: write the IP address, e.g. {field} = \
                 \"{}\", or use keying = \"ike\", which follows DNS names",
                if field == "local_gateway" {
                    "198.51.100.1"
                } else {
                    "203.0.113.1"
                }
            ),
        );
    }

    pub(super) fn spi(
        &mut self,
        name: &str,
        header: &Range<usize>,
        value: Option<&Spanned<i64>>,
        field: &str,
    ) -> Option<u32> {
        let example = if field == "spi_out" {
            "spi_out = 0x1001"
        } else {
            "spi_in = 0x1002"
        };
        let Some(value) = value else {
            let partner = if field == "spi_out" {
                "spi_in"
            } else {
                "spi_out"
            };
            self.error(
                header.clone(),
                format!("site {name} has no {field}"),
                format!(
                    "add e.g. {example}: any number from 0x100 to 0xffffffff, the same as the \
                     other router's {partner}"
                ),
            );
            return None;
        };
        let number = *value.get_ref();
        let problem = match u32::try_from(number) {
            Err(_) => format!("{field} {number} does not fit in 32 bits"),
            Ok(spi) if spi < SPI_MIN => {
                format!("{field} {spi:#x} is below 0x100: SPIs 1-255 are reserved (RFC 4303)")
            }
            Ok(spi) => return Some(spi),
        };
        self.error(
            value.span(),
            problem,
            format!("use a number from 0x100 to 0xffffffff, e.g. {example}"),
        );
        None
    }

    /// Every SPI of a static site must be unique on this router.
    pub(super) fn claim_spi(
        &mut self,
        name: &str,
        field: &str,
        value: Option<&Spanned<i64>>,
        spi: u32,
    ) {
        let Some(value) = value else { return };
        let line = self.line(&value.span());
        if let Some((_, whose, other_line)) = self.spis.iter().find(|(s, ..)| *s == spi) {
            let message = format!("{field} {spi:#x} is already {whose} (line {other_line})");
            let free = (spi..=u32::MAX)
                .chain(SPI_MIN..spi)
                .find(|candidate| !self.spis.iter().any(|(s, ..)| s == candidate))
                .unwrap_or(spi);
            self.error(
                value.span(),
                message,
                format!(
                    "every SPI on this router must be different: pick another, e.g. {field} = \
                     {free:#x} (and the same on the other router)"
                ),
            );
        }
        self.spis
            .push((spi, format!("site {name}'s {field}"), line));
    }

    /// A static key file: hex (an optional `0x`, whitespace anywhere) of the AEAD's key
    /// length, mode 0600.
    pub(super) fn static_key(
        &mut self,
        name: &str,
        header: &Range<usize>,
        value: Option<&Spanned<String>>,
        field: &str,
        esp: Option<StaticAead>,
    ) -> Option<(SecretBytes, PathBuf)> {
        let len = esp.map_or(StaticAead::Aes256Gcm16.key_len(), StaticAead::key_len);
        let make = make_static_key(len);
        let direction = if field == "key_out_file" { "out" } else { "in" };
        let example = format!("{name}-{direction}.key");
        let partner = if field == "key_out_file" {
            "key_in_file"
        } else {
            "key_out_file"
        };
        let Some(value) = value else {
            self.error(
                header.clone(),
                format!("site {name} has no {field}"),
                format!(
                    "add {field} = \"{example}\" and make the key with `(umask 077; {make} > \
                     {})`; the other router uses the same file as its {partner}",
                    shell_quote(&self.dir.join(&example))
                ),
            );
            return None;
        };
        let kind = SecretFileKind {
            field,
            example: &example,
            make: &make,
            holds: "one key in hex",
        };
        let file = self.read_secret_file(value, &kind, KEY_FILE_READ_MAX)?;
        let shown = shell_quote(&file.path);
        let key = match hex_key(&file.bytes) {
            Err(problem) => {
                self.error(
                    value.span(),
                    format!("{} does not hold a hex key: {problem}", file.path.display()),
                    format!(
                        "a static key file holds {len} bytes as hex digits (a leading 0x and \
                         whitespace are fine); make one with `(umask 077; {make} > {shown})` \
                         and give the other router the same file as its {partner}"
                    ),
                );
                None
            }
            Ok(key) if esp.is_some() && key.len() != len => {
                self.error(
                    value.span(),
                    format!(
                        "{} holds {} bytes, but {} needs {len} (a {}-byte key and a 4-byte \
                         salt)",
                        file.path.display(),
                        key.len(),
                        esp.map_or("", StaticAead::name),
                        len - 4
                    ),
                    format!(
                        "make a key of the right length with `(umask 077; {make} > {shown})` \
                         and give the other router the same file as its {partner}"
                    ),
                );
                None
            }
            Ok(key) => Some(SecretBytes::new(key)),
        };
        if !self.owner_only(value, &file) {
            return None;
        }
        Some((key?, file.path))
    }
}

/// The shell command that prints a new static key of `len` bytes as hex.
pub(super) fn make_static_key(len: usize) -> String {
    format!("head -c {len} /dev/urandom | od -An -tx1 | tr -d ' \\n'")
}

/// The bytes of a hex key file: an optional `0x`, whitespace anywhere.
pub(super) fn hex_key(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not text".to_string())?;
    let digits: String = text.split_whitespace().collect();
    let digits = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
        .unwrap_or(&digits);
    if digits.is_empty() {
        return Err("it is empty".to_string());
    }
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("{c:?} is not a hex digit"));
    }
    if digits.len() % 2 == 1 {
        return Err(format!("{} hex digits are no whole bytes", digits.len()));
    }
    Ok((0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digits"))
        .collect())
}
