//! Input generators for the property tests that attack vpn-ctl's parsers of outside input
//! (`vpn-ctl/tests/fuzz_*.rs`, the `mod fuzz` unit modules, `vpn-common/tests/fuzz_*.rs`).
//!
//! Random bytes rarely get past a parser's first check, so most inputs start from a valid
//! seed (a real configuration, a real `nft -j` listing, a real VICI message...) and are
//! mutated: bit flips, bytes set to edge values, insertions of random bytes and of tokens
//! the format cares about (quotes, brackets, separators, multi-byte characters, numbers at
//! the edges of their types), deletions, truncations, lines duplicated, dropped and swapped,
//! numbers replaced, pieces of another seed spliced in, big-endian fields overwritten. Every
//! mutation is a proptest value, so a failing input shrinks to the fewest, smallest
//! mutations of the seed that still fail.
//!
//! [`config`] is the run's configuration: a fixed RNG seed (a CI run is reproducible), the
//! target's default number of cases, both overridable from the environment
//! (`PROPTEST_CASES=100000`, `PROPTEST_RNG_SEED=N` for other inputs), no regression files
//! (found crashers become named tests). [`bounded`] turns a hang into a failure.

use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use proptest::{
    prelude::*,
    test_runner::{Config, RngSeed},
};

/// A position or a choice, scaled to what it picks from when used (so it stays valid
/// whatever the mutations before it did). Shrinks towards the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Index(pub u64);

impl Index {
    /// The index this picks among `size` things (`size` > 0).
    pub fn index(self, size: usize) -> usize {
        assert!(size > 0, "an index into nothing");
        ((u128::from(self.0) * size as u128) >> 64) as usize
    }
}

impl Arbitrary for Index {
    type Parameters = ();
    type Strategy = prop::strategy::Map<prop::num::u64::Any, fn(u64) -> Index>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        any::<u64>().prop_map(Index)
    }
}

/// The RNG seed of a default run.
pub const DEFAULT_SEED: u64 = 0x7670_6e2d_6374_6c00;

/// How long one case may take before it counts as a hang. Parsing a few kilobytes takes
/// microseconds to milliseconds; this is generous for a loaded CI machine.
pub const CASE_LIMIT: Duration = Duration::from_secs(10);

/// [`CASE_LIMIT`] here: in the QEMU guest, whose software emulation runs the tests' debug
/// builds many times slower (the slowest generated firewall ruleset, which the tracer's step
/// budget stops after 1.0 s on the host, took over 10 s there), twelve times as long.
pub fn case_limit() -> Duration {
    if std::env::var_os(crate::kernel::GUEST_ENV).is_some() {
        CASE_LIMIT * 12
    } else {
        CASE_LIMIT
    }
}

/// The run's configuration: `cases` unless `PROPTEST_CASES` says otherwise, a fixed seed
/// unless `PROPTEST_RNG_SEED` gives one, shrinking bounded in time, no persistence files.
/// In the QEMU guest (`cargo xtask guest`, software emulation) a tenth of the cases: the
/// host suite runs them all, the guest only tries its own kernel.
pub fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = if std::env::var_os(crate::kernel::GUEST_ENV).is_some() {
            cases.div_ceil(10)
        } else {
            cases
        };
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    if std::env::var_os("PROPTEST_MAX_SHRINK_TIME").is_none() {
        config.max_shrink_time = 120_000;
    }
    config.failure_persistence = None;
    config
}

/// Whether this run has the default number of cases (no `PROPTEST_CASES`, not the guest):
/// what checks of a run's coverage (every kind reached...) are calibrated for.
pub fn default_run() -> bool {
    std::env::var_os("PROPTEST_CASES").is_none()
        && std::env::var_os(crate::kernel::GUEST_ENV).is_none()
}

/// Runs the property `test` on `cases` inputs from `strategy` (see [`config`]); on a
/// failure, panics with the shrunk input. Prints how many cases ran and how long they took
/// (`cargo test -- --nocapture` shows it).
pub fn check<S>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let config = config(cases);
    let (cases, seed) = (config.cases, config.rng_seed);
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let started = Instant::now();
    let result = runner.run(&strategy, test);
    eprintln!(
        "{name}: {cases} cases (seed {seed}) in {:.2?}",
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// Runs `f` on its own thread and returns its result; panics (a test failure proptest then
/// shrinks) when it panics or takes longer than [`case_limit`]. A hung thread is left
/// behind: the test fails anyway.
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let handle = std::thread::Builder::new()
        .name(format!("bounded {what}"))
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawning a thread");
    match rx.recv_timeout(case_limit()) {
        Ok(value) => {
            let _ = handle.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer after {:?} (a hang?)", started.elapsed())
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("the thread ended without sending"),
        },
    }
}

/// Tokens worth inserting into any text format.
pub const TEXT_TOKENS: &[&str] = &[
    "\n",
    "\r\n",
    "\r",
    "\t",
    " ",
    "\0",
    "\"",
    "'",
    "\\",
    "\\u{0}",
    "#",
    "=",
    ":",
    ";",
    ",",
    ".",
    "/",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "-",
    "+",
    "*",
    "@",
    "%",
    "0x",
    "ö",
    "€",
    "😀",
    "\u{feff}",
    "\u{202e}",
    "\u{ffff}",
    "\u{10ffff}",
    "",
];

/// Numbers at the edges of the integer types, and things that almost are numbers.
pub const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "+1",
    "127",
    "128",
    "255",
    "256",
    "1280",
    "1500",
    "9000",
    "65535",
    "65536",
    "-65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "00000000000000000000000000001",
    "1_000",
    "0x7fffffff",
    "0xffffffffffffffff",
    "0o777",
    "0b1",
    "1e3",
    "1e999",
    "nan",
    "inf",
    "1.5",
    "",
];

/// Edge values for bytes and big-endian fields of binary formats.
const EDGE_U8: &[u8] = &[0, 1, 2, 0x7f, 0x80, 0xfe, 0xff];
const EDGE_U16: &[u16] = &[
    0, 1, 2, 3, 4, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xfffe, 0xffff,
];
const EDGE_U32: &[u32] = &[0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];

/// One change to an input; positions are [`Index`]es scaled to the input's length.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, Index),
    InsertBytes(Index, Vec<u8>),
    InsertToken(Index, Index),
    Delete(Index, usize),
    Truncate(Index),
    DuplicateLine(Index),
    DeleteLine(Index),
    SwapLines(Index, Index),
    /// Replaces the n-th run of digits with one of [`NUMBERS`].
    ReplaceNumber(Index, Index),
    /// Inserts a piece of a seed (maybe another one) at a position.
    Splice {
        seed: Index,
        from: Index,
        len: usize,
        at: Index,
    },
    SetU16(Index, Index),
    SetU32(Index, Index),
}

/// Up to `max` mutations, to [`apply`] to an input built by the test.
pub fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 0..=max)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<Index>;
    prop_oneof![
        3 => (i(), 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        2 => (i(), i()).prop_map(|(p, v)| Mutation::SetByte(p, v)),
        2 => (i(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Mutation::InsertBytes(p, b)),
        4 => (i(), i()).prop_map(|(p, t)| Mutation::InsertToken(p, t)),
        2 => (i(), 1usize..32).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => i().prop_map(Mutation::Truncate),
        2 => i().prop_map(Mutation::DuplicateLine),
        2 => i().prop_map(Mutation::DeleteLine),
        2 => (i(), i()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        3 => (i(), i()).prop_map(|(n, v)| Mutation::ReplaceNumber(n, v)),
        2 => (i(), i(), 1usize..64, i()).prop_map(|(seed, from, len, at)| Mutation::Splice {
            seed,
            from,
            len,
            at
        }),
        1 => (i(), i()).prop_map(|(p, v)| Mutation::SetU16(p, v)),
        1 => (i(), i()).prop_map(|(p, v)| Mutation::SetU32(p, v)),
    ]
}

/// `index` scaled to `0..=len` (an insertion point).
fn point(index: &Index, len: usize) -> usize {
    index.index(len + 1)
}

/// `index` scaled to `0..len`, `None` for an empty input.
fn position(index: &Index, len: usize) -> Option<usize> {
    (len > 0).then(|| index.index(len))
}

/// The byte ranges of the lines of `input`, each with its `\n`.
fn lines(input: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in input.iter().enumerate() {
        if *b == b'\n' {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < input.len() {
        out.push(start..input.len());
    }
    out
}

/// The byte ranges of the runs of ASCII digits in `input`.
fn numbers(input: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, b) in input.iter().enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..input.len());
    }
    out
}

/// Applies `m` to `input`. `seeds` are for splicing, `tokens` the format's dictionary.
pub fn apply(input: &mut Vec<u8>, m: &Mutation, seeds: &[Vec<u8>], tokens: &[&[u8]]) {
    let len = input.len();
    match m {
        Mutation::FlipBit(p, bit) => {
            if let Some(p) = position(p, len) {
                input[p] ^= 1 << bit;
            }
        }
        Mutation::SetByte(p, v) => {
            if let Some(p) = position(p, len) {
                input[p] = EDGE_U8[v.index(EDGE_U8.len())];
            }
        }
        Mutation::InsertBytes(p, bytes) => {
            let p = point(p, len);
            input.splice(p..p, bytes.iter().copied());
        }
        Mutation::InsertToken(p, t) => {
            let p = point(p, len);
            let token = tokens[t.index(tokens.len())];
            input.splice(p..p, token.iter().copied());
        }
        Mutation::Delete(p, n) => {
            if let Some(p) = position(p, len) {
                input.drain(p..(p + n).min(len));
            }
        }
        Mutation::Truncate(p) => input.truncate(point(p, len)),
        Mutation::DuplicateLine(l) => {
            let lines = lines(input);
            if let Some(l) = position(l, lines.len()) {
                let range = lines[l].clone();
                let mut line = input[range.clone()].to_vec();
                if line.last() != Some(&b'\n') {
                    line.insert(0, b'\n');
                }
                input.splice(range.end..range.end, line);
            }
        }
        Mutation::DeleteLine(l) => {
            let lines = lines(input);
            if let Some(l) = position(l, lines.len()) {
                input.drain(lines[l].clone());
            }
        }
        Mutation::SwapLines(a, b) => {
            let lines = lines(input);
            if let (Some(a), Some(b)) = (position(a, lines.len()), position(b, lines.len())) {
                let (a, b) = (a.min(b), a.max(b));
                if a != b {
                    let (ra, rb) = (lines[a].clone(), lines[b].clone());
                    let mut out = input[..ra.start].to_vec();
                    out.extend_from_slice(&input[rb.clone()]);
                    if out.last() != Some(&b'\n') {
                        out.push(b'\n');
                    }
                    out.extend_from_slice(&input[ra.end..rb.start]);
                    out.extend_from_slice(&input[ra.clone()]);
                    out.extend_from_slice(&input[rb.end..]);
                    *input = out;
                }
            }
        }
        Mutation::ReplaceNumber(n, v) => {
            let runs = numbers(input);
            if let Some(n) = position(n, runs.len()) {
                let number = NUMBERS[v.index(NUMBERS.len())];
                input.splice(runs[n].clone(), number.bytes());
            }
        }
        Mutation::Splice {
            seed,
            from,
            len: n,
            at,
        } => {
            let seed = &seeds[seed.index(seeds.len())];
            if let Some(from) = position(from, seed.len()) {
                let piece = seed[from..(from + n).min(seed.len())].to_vec();
                let at = point(at, len);
                input.splice(at..at, piece);
            }
        }
        Mutation::SetU16(p, v) => {
            if len >= 2 {
                let p = p.index(len - 1);
                let v = EDGE_U16[v.index(EDGE_U16.len())];
                input[p..p + 2].copy_from_slice(&v.to_be_bytes());
            }
        }
        Mutation::SetU32(p, v) => {
            if len >= 4 {
                let p = p.index(len - 3);
                let v = EDGE_U32[v.index(EDGE_U32.len())];
                input[p..p + 4].copy_from_slice(&v.to_be_bytes());
            }
        }
    }
}

/// Inputs made from `seeds`: mostly a seed under 1 to `max_mutations` mutations, sometimes
/// a seed as it is, sometimes random bytes. `tokens` are inserted besides [`TEXT_TOKENS`]
/// and [`NUMBERS`]: the format's keywords, field names, values.
pub fn mutated_bytes(
    seeds: Vec<Vec<u8>>,
    tokens: &[&str],
    max_mutations: usize,
) -> impl Strategy<Value = Vec<u8>> + use<> {
    assert!(!seeds.is_empty(), "mutations need a seed");
    let mut dictionary: Vec<Vec<u8>> = Vec::new();
    for t in TEXT_TOKENS.iter().chain(NUMBERS).chain(tokens) {
        dictionary.push(t.as_bytes().to_vec());
    }
    let seeds = std::sync::Arc::new(seeds);
    let dictionary = std::sync::Arc::new(dictionary);
    let count = seeds.len();
    let from_seed = (
        0..count,
        prop::collection::vec(mutation(), 0..=max_mutations),
    )
        .prop_map(move |(seed, mutations)| {
            let tokens: Vec<&[u8]> = dictionary.iter().map(Vec::as_slice).collect();
            let mut input = seeds[seed].clone();
            for m in &mutations {
                apply(&mut input, m, &seeds, &tokens);
            }
            input
        });
    prop_oneof![
        20 => from_seed,
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Text inputs made from `seeds` as [`mutated_bytes`] makes them; bytes that are not UTF-8
/// become U+FFFD (what a reader that decodes lossily would see; the parsers take `&str`).
pub fn mutated_text(
    seeds: &[&str],
    tokens: &[&str],
    max_mutations: usize,
) -> impl Strategy<Value = String> + use<> {
    let seeds = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
    mutated_bytes(seeds, tokens, max_mutations)
        .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Every prefix of `text` that ends on a character boundary: the truncations a cut-off read
/// or a full disk leave.
pub fn truncations(text: &str) -> impl Iterator<Item = &str> {
    (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .map(|i| &text[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str, m: Mutation) -> String {
        let mut bytes = input.as_bytes().to_vec();
        apply(&mut bytes, &m, &[b"SEED".to_vec()], &[b"TOKEN"]);
        String::from_utf8(bytes).unwrap()
    }

    fn idx(n: usize, of: usize) -> Index {
        let i = Index(((n as u128) << 64).div_ceil(of as u128) as u64);
        assert_eq!(i.index(of), n);
        i
    }

    #[test]
    fn line_mutations_keep_lines_whole() {
        let text = "a = 1\nb = 2\nc = 3";
        assert_eq!(
            run(text, Mutation::DuplicateLine(idx(2, 3))),
            "a = 1\nb = 2\nc = 3\nc = 3"
        );
        assert_eq!(run(text, Mutation::DeleteLine(idx(1, 3))), "a = 1\nc = 3");
        assert_eq!(
            run(text, Mutation::SwapLines(idx(0, 3), idx(2, 3))),
            "c = 3\nb = 2\na = 1\n"
        );
        assert_eq!(
            run(
                text,
                Mutation::ReplaceNumber(idx(1, 3), idx(0, NUMBERS.len()))
            ),
            "a = 1\nb = 0\nc = 3"
        );
        assert_eq!(run("", Mutation::DeleteLine(idx(0, 1))), "");
    }

    #[test]
    fn truncations_are_every_prefix_on_a_character_boundary() {
        let all: Vec<&str> = truncations("aö").collect();
        assert_eq!(all, ["", "a", "aö"]);
    }
}
