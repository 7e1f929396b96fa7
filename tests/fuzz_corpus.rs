//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the functions the
//! cargo-fuzz targets call (`fuzz/harness.rs`): every input must pass without a panic. Fuzzing
//! itself needs an instrumented nightly build and runs from `scripts/fuzz.sh`, not here.

#[path = "../fuzz/harness.rs"]
mod harness;

#[test]
fn committed_fuzz_corpus_replays_without_panics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failures = Vec::new();
    for (name, f) in harness::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for target {name}");
        for path in &files {
            let data = std::fs::read(path).expect("corpus file");
            if std::panic::catch_unwind(|| f(&data)).is_err() {
                failures.push(path.display().to_string());
            }
        }
        println!("{name}: {} inputs replayed", files.len());
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}
