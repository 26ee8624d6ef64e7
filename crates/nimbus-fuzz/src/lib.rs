//! The bodies of Nimbus's fuzz targets.
//!
//! Each function takes the fuzzer's bytes, feeds them to a parser that reads
//! outside input and asserts what must hold whatever the input (no panic, plus
//! a property per parser: a signed request verifies, a schedule's next fire is
//! later, a zip never writes outside its directory, …). They live in a normal
//! workspace crate, not in `fuzz/`, so that the cargo-fuzz targets there are
//! one-line wrappers and the committed corpora can be replayed on stable Rust
//! by `cargo test -p nimbus-fuzz` (tests/replay.rs) in CI, where building the
//! instrumented targets from scratch would take too long.

pub mod asl;
pub mod eventstream;
pub mod jsonpath;
pub mod routes;
pub mod s3_xml;
pub mod schedule;
pub mod sigv4;
pub mod sqs_sns;
pub mod zip;

/// A fuzz target: its name (the file in `fuzz/fuzz_targets/` and the corpus
/// directory in `fuzz/corpus/`) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "sigv4",
        run: sigv4::run,
    },
    Target {
        name: "asl",
        run: asl::run,
    },
    Target {
        name: "jsonpath",
        run: jsonpath::run,
    },
    Target {
        name: "schedule",
        run: schedule::run,
    },
    Target {
        name: "routes",
        run: routes::run,
    },
    Target {
        name: "zip",
        run: zip::run,
    },
    Target {
        name: "eventstream",
        run: eventstream::run,
    },
    Target {
        name: "s3_xml",
        run: s3_xml::run,
    },
    Target {
        name: "sqs_sns",
        run: sqs_sns::run,
    },
];

/// Splits the input into `n` fields at `\n` (the last one takes the rest).
pub(crate) fn fields(text: &str, n: usize) -> Vec<&str> {
    text.splitn(n, '\n').collect()
}
