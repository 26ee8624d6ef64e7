//! Replays every committed corpus file and regression input of every fuzz
//! target (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through
//! the target's body: the stable-Rust, few-seconds form of the fuzzing that
//! runs in CI. The long runs are `scripts/fuzz` (see fuzz/README.md).

use std::fs;
use std::path::{Path, PathBuf};

use nimbus_fuzz::TARGETS;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_input_passes_its_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut total = 0;
    for target in TARGETS {
        let mut files = inputs(&fuzz.join("corpus").join(target.name));
        assert!(!files.is_empty(), "no corpus committed for {}", target.name);
        files.extend(inputs(&fuzz.join("regressions").join(target.name)));
        for file in &files {
            let data = fs::read(file).expect("read input");
            let outcome = std::panic::catch_unwind(|| (target.run)(&data));
            assert!(
                outcome.is_ok(),
                "{} fails on {}",
                target.name,
                file.display()
            );
        }
        total += files.len();
    }
    println!("{total} inputs replayed");
}
