//! Configuration errors that point at the file, line and column and say what to do.

use std::{fmt, path::Path, path::PathBuf};

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not at one place in the file (e.g. an unreadable file).
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at byte `offset` of `text`, the contents of `file`.
    pub(crate) fn at(
        file: &Path,
        text: &str,
        offset: usize,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = line_column(text, offset);
        Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            help: Some(help.into()),
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`; an offset past
/// the end is the position just after the last character.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration; nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub diagnostics: Vec<Diagnostic>,
}

/// `bytes` read from `file` as text: UTF-8 without NUL bytes. Where they are not, a
/// diagnostic at the first byte at fault: a file damaged by a power loss often ends in
/// zeros, and one saved in another encoding has bytes that are not UTF-8.
pub(crate) fn decode_text(file: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    let (valid, message) = match std::str::from_utf8(&bytes) {
        Ok(text) => match text.find('\0') {
            None => return Ok(String::from_utf8(bytes).expect("checked above")),
            Some(nul) => (nul, "a NUL byte (0x00) in the text".to_string()),
        },
        Err(e) => {
            let valid = e.valid_up_to();
            (
                valid,
                format!("not UTF-8 text: byte 0x{:02x}", bytes[valid]),
            )
        }
    };
    let before = std::str::from_utf8(&bytes[..valid]).expect("UTF-8 up to here");
    let (line, column) = line_column(before, valid);
    Err(Diagnostic {
        file: file.to_path_buf(),
        line,
        column,
        message,
        help: Some(format!(
            "the file must be UTF-8 text; it may be damaged (a power loss?) or saved in another \
             encoding: look at the line (`sed -n {line}p {} | od -c`) and retype what is wrong, \
             or convert the whole file (e.g. `iconv -f latin1 -t utf-8`)",
            super::validate::shell_quote(file)
        )),
    })
}

impl Error {
    pub(crate) fn unreadable(path: &Path, e: &std::io::Error) -> Error {
        let help = if e.kind() == std::io::ErrorKind::NotFound {
            "create it (see the README's example), or pass another file with --config".to_string()
        } else if crate::files::NotRegular::of(e).is_some() {
            "give the path of the configuration file itself: vpn-ctl reads only regular files \
             (reading a FIFO or a device could block it forever)"
                .to_string()
        } else if e
            .get_ref()
            .is_some_and(|inner| inner.is::<crate::files::TooLarge>())
        {
            "a vpn-ctl configuration is a text file of at most 64 MiB: check that --config \
             names the right file"
                .to_string()
        } else {
            "check the file's permissions; vpn-ctl needs to read it".to_string()
        };
        Error {
            diagnostics: vec![Diagnostic {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read the configuration: {e}"),
                help: Some(help),
            }],
        }
    }
}

impl From<Vec<Diagnostic>> for Error {
    fn from(diagnostics: Vec<Diagnostic>) -> Error {
        Error { diagnostics }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_diagnostics(f, &self.diagnostics, "nothing was applied")
    }
}

/// Every diagnostic, one after the other, and when there are several, how many and what was
/// therefore not done (`consequence`).
pub(crate) fn write_diagnostics(
    f: &mut fmt::Formatter<'_>,
    diagnostics: &[Diagnostic],
    consequence: &str,
) -> fmt::Result {
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            writeln!(f)?;
        }
        write!(f, "{d}")?;
    }
    if diagnostics.len() > 1 {
        write!(f, "\n{} problems; {consequence}", diagnostics.len())?;
    }
    Ok(())
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let text = "a = 1\r\nwan = \"Köln\" # x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 7), (2, 1));
        // After "Köln" (ö is two bytes): `#` is the 14th character of its line.
        assert_eq!(line_column(text, text.find('#').unwrap()), (2, 14));
        // Inside a character: its start. Past the end: after the last line.
        assert_eq!(line_column(text, text.find('ö').unwrap() + 1), (2, 9));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn rendering_with_and_without_a_place() {
        let at = Diagnostic::at(Path::new("vpn.toml"), "x\ny = 1\n", 6, "bad", "fix it");
        assert_eq!(at.to_string(), "vpn.toml:2:5: bad\n  help: fix it");
        let nowhere = Error::unreadable(
            Path::new("/etc/vpn-ctl/vpn.toml"),
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(
            nowhere.to_string(),
            "/etc/vpn-ctl/vpn.toml: cannot read the configuration: entity not found\n  help: \
             create it (see the README's example), or pass another file with --config"
        );
        let two = Error::from(vec![at.clone(), at]);
        assert!(
            two.to_string()
                .ends_with("\n2 problems; nothing was applied")
        );
    }
}
