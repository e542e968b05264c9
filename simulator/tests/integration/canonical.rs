//! Every scenario in scenarios/ passes against the real stages — none skipped, none expected
//! to fail. A failure prints the runner's own report, record included.

use std::path::Path;

use simulator::scenario::run::{RunOptions, run_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_canonical_scenario_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "the canonical set is in scenarios/: {files:?}"
    );
    let mut results = Vec::new();
    for file in &files {
        let result = run_file(file, &RunOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        results.push(result);
    }
    let report = simulator::report::render_text(&results);
    assert!(results.iter().all(|r| r.passed()), "{report}");
    assert!(results.iter().all(|r| !r.steps.is_empty()));
}
