//! [`ViciValue`]: a VICI message as a tree, read from and written to the wire through serde.

use super::*;

/// A value in a VICI message: a string, a list of strings, or a section of named values.
/// Strings are bytes on the wire; they are kept as text (lossily) since charon sends text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViciValue {
    Str(String),
    List(Vec<String>),
    Section(BTreeMap<String, ViciValue>),
}

impl ViciValue {
    /// The value of `key` in a section.
    pub fn get(&self, key: &str) -> Option<&ViciValue> {
        match self {
            ViciValue::Section(map) => map.get(key),
            _ => None,
        }
    }

    /// The string under `key`, if it is one.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            ViciValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number under `key` (charon sends numbers as decimal text).
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.str(key)?.trim().parse().ok()
    }

    /// The list under `key`; empty when missing.
    pub fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(ViciValue::List(items)) => items.clone(),
            Some(ViciValue::Str(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    /// `yes` under `key`.
    pub fn yes(&self, key: &str) -> bool {
        self.str(key) == Some("yes")
    }

    /// The section's entries; empty for a string or a list.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &ViciValue)> {
        let map = match self {
            ViciValue::Section(map) => Some(map),
            _ => None,
        };
        map.into_iter().flatten()
    }

    /// `key = value` lines, nested keys joined with dots, in key order: a stable text form of
    /// a message (what [`super::conn::Connection::record`] stores and diffs).
    pub fn flatten(&self) -> Vec<(String, String)> {
        fn walk(prefix: &str, value: &ViciValue, out: &mut Vec<(String, String)>) {
            match value {
                ViciValue::Str(s) => out.push((prefix.to_string(), s.clone())),
                ViciValue::List(items) => out.push((prefix.to_string(), items.join(", "))),
                ViciValue::Section(map) => {
                    for (key, value) in map {
                        let key = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        walk(&key, value, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk("", self, &mut out);
        out
    }
}

impl fmt::Display for ViciValue {
    /// The form `swanctl --raw` prints: `key=value list=[a b] section {...}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViciValue::Str(s) => f.write_str(s),
            ViciValue::List(items) => write!(f, "[{}]", items.join(" ")),
            ViciValue::Section(map) => {
                f.write_str("{")?;
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    match value {
                        ViciValue::Section(_) => write!(f, "{key} {value}")?,
                        _ => write!(f, "{key}={value}")?,
                    }
                }
                f.write_str("}")
            }
        }
    }
}

/// Sections and lists nested deeper than this are refused. charon's answers nest a few
/// levels; decoding recurses once per level, and a message of nested sections (3 bytes
/// each) would overflow the stack (an abort, not an error) long before any size limit.
pub const MAX_NESTING: usize = 64;

thread_local! {
    /// How deep the [`ViciValue`] being decoded on this thread is (decoding is synchronous).
    static NESTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<'de> Deserialize<'de> for ViciValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<ViciValue, D::Error> {
        /// Leaves a level on drop, also when decoding fails.
        struct Level(usize);
        impl Drop for Level {
            fn drop(&mut self) {
                NESTING.set(self.0);
            }
        }

        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = ViciValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a VICI string, list or section")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ViciValue, E> {
                Ok(ViciValue::Str(v.to_string()))
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ViciValue, E> {
                Ok(ViciValue::Str(String::from_utf8_lossy(v).into_owned()))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ViciValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<ViciValue>()? {
                    match item {
                        ViciValue::Str(s) => items.push(s),
                        other => items.push(other.to_string()),
                    }
                }
                Ok(ViciValue::List(items))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ViciValue, A::Error> {
                let mut section = BTreeMap::new();
                while let Some((key, value)) = map.next_entry::<String, ViciValue>()? {
                    section.insert(key, value);
                }
                Ok(ViciValue::Section(section))
            }
        }

        let depth = NESTING.get();
        if depth >= MAX_NESTING {
            return Err(de::Error::custom(format!(
                "VICI message nested more than {MAX_NESTING} levels deep"
            )));
        }
        NESTING.set(depth + 1);
        let _level = Level(depth);
        deserializer.deserialize_any(Visitor)
    }
}

/// Bytes sent as one VICI value (serde would send a `&[u8]` as a list of numbers).
pub(crate) struct RawBytes<'a>(pub &'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}
