//! House rules that review would otherwise have to remember.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

#[test]
fn the_gateway_never_depends_on_the_simulator_or_its_ui_and_plotting_crates() {
    let manifest = read("Cargo.toml");
    for forbidden in ["simulator", "ratatui", "crossterm", "plotters"] {
        assert!(
            !manifest.contains(forbidden),
            "gateway/Cargo.toml must not depend on {forbidden}"
        );
    }
}

#[test]
fn only_clock_rs_reads_the_system_clock() {
    fn visit(dir: &Path, offenders: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                visit(&path, offenders);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("clock.rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                if text.contains("Instant::now") || text.contains("SystemTime::now") {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    let mut offenders = Vec::new();
    visit(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut offenders,
    );
    assert!(
        offenders.is_empty(),
        "read time through clock::Clock: {offenders:?}"
    );
}

#[test]
fn every_stage_has_its_own_module_named_by_its_id() {
    for stage in gateway::vocab::StageId::ALL {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/stage")
            .join(stage.as_str());
        assert!(
            file.with_extension("rs").exists() || file.join("mod.rs").exists(),
            "stage {stage} has no module at src/stage/{stage}"
        );
    }
}
