//! House rules that review would otherwise have to remember.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

/// Every `.rs` file under `dir`, at any depth.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                visit(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    visit(dir, &mut files);
    files
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
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let offenders: Vec<String> = rust_files(&src)
        .into_iter()
        .filter(|path| !path.ends_with("clock.rs"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("read source");
            text.contains("Instant::now") || text.contains("SystemTime::now")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "read time through clock::Clock: {offenders:?}"
    );
}

#[test]
fn unsafe_code_is_only_in_the_heap_trim() {
    // The workspace denies `unsafe_code` rather than forbidding it for one call, glibc's
    // `malloc_trim` (server/heap.rs); this keeps it to that file, in both crates (this file
    // names the word only to look for it).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = [
        "src",
        "tests",
        "benches",
        "../simulator/src",
        "../simulator/tests",
    ];
    let offenders: Vec<String> = dirs
        .iter()
        .map(|dir| root.join(dir))
        .filter(|dir| dir.is_dir())
        .flat_map(|dir| rust_files(&dir))
        .filter(|path| !path.ends_with("server/heap.rs") && !path.ends_with("integration/tidy.rs"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("read source");
            text.contains("unsafe")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "`unsafe` outside server/heap.rs: {offenders:?}"
    );
    let heap = read("src/server/heap.rs");
    assert_eq!(
        heap.matches("unsafe {").count(),
        1,
        "server/heap.rs holds one unsafe block, the malloc_trim call"
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

/// The gateway's layers, bottom to top (ARCHITECTURE.md). A module may import from modules of
/// lower layers only; modules of one layer do not import each other.
const LAYERS: &[(&str, u8)] = &[
    ("clock", 0),
    ("vocab", 0),
    ("routing", 1),
    ("ratelimit", 1),
    ("identity", 1),
    ("resilience", 1),
    ("wire", 1),
    ("config", 2),
    ("record", 3),
    ("body", 4),
    ("state", 5),
    ("stage", 6),
    ("pipeline", 7),
    ("admin", 8),
    ("reload", 8),
    ("route_test", 8),
    ("server", 9),
];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

/// Every `crate::<module>` a file of top-level module `from` names outside comments and its
/// test module, that is not in a layer below `from`'s: `(line, module)`.
fn upward_imports(from: &str, source: &str) -> Vec<(usize, String)> {
    let Some(own) = layer_of(from) else {
        return Vec::new();
    };
    // Test modules may build fixtures from any layer; they come last in a file.
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let module: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if module == from {
                continue;
            }
            if layer_of(&module).is_some_and(|l| l >= own) {
                found.push((n + 1, module));
            }
        }
    }
    found
}

#[test]
fn the_layer_check_catches_an_upward_import() {
    // A stage reaching into the driver, and the config reaching into the live state: both up.
    let fixture = "//! A fixture.\nuse crate::vocab::StageId;\nuse crate::pipeline::handle;\n";
    assert_eq!(
        upward_imports("stage", fixture),
        vec![(3, "pipeline".to_string())]
    );
    assert_eq!(
        upward_imports("config", "fn f() { crate::state::GatewayState::x(); }"),
        vec![(1, "state".to_string())]
    );
    // Same layer is refused too; comments, own-module paths and test modules are not imports.
    assert_eq!(
        upward_imports("routing", "use crate::identity::x;"),
        vec![(1, "identity".to_string())]
    );
    let fine = "use crate::clock::Nanos; // crate::server\nuse crate::stage::x;\n#[cfg(test)]\nuse crate::server::y;";
    assert!(upward_imports("stage", fine).is_empty());
}

#[test]
fn every_module_imports_only_from_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    // A sibling `tests.rs` is a test module: fixtures may come from any layer.
    let files = rust_files(&src)
        .into_iter()
        .filter(|path| !path.ends_with("tests.rs"));
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default()
            .trim_end_matches(".rs");
        if top == "lib" || top == "main" {
            continue;
        }
        assert!(
            layer_of(top).is_some(),
            "src/{top} has no layer: add it to LAYERS and to ARCHITECTURE.md"
        );
        let text = std::fs::read_to_string(&file).expect("read source");
        for (line, module) in upward_imports(top, &text) {
            offenders.push(format!(
                "src/{}:{line}: {top} -> {module}",
                relative.display()
            ));
        }
    }
    assert!(
        offenders.is_empty(),
        "imports that run up or across the layers:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_stop_reasons_table_in_docs_is_reason_all() {
    use gateway::vocab::{Reason, StageId};
    let docs = read("../docs/records.md");
    let table = docs
        .split("## Stop reasons")
        .nth(1)
        .expect("docs/records.md has a Stop reasons section");
    let mut documented = Vec::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let stage = cells[1].trim_matches('`');
        let reason = cells[2].split('`').nth(1).unwrap_or_default();
        documented.push((stage.to_string(), reason.to_string(), cells[3].to_string()));
    }
    let mut expected = Vec::new();
    for reason in Reason::ALL {
        for stage in reason.stages() {
            let status = if reason == Reason::CatchAll {
                "its status".to_string()
            } else if matches!(
                reason,
                Reason::StreamDurationExceeded | Reason::UpstreamIdleTimeout
            ) {
                // A cut after the head: the record keeps the status already sent.
                "the one sent".to_string()
            } else {
                reason.status().as_u16().to_string()
            };
            expected.push((
                stage.as_str().to_string(),
                reason.as_str().to_string(),
                status,
            ));
        }
    }
    let key = |r: &(String, String, String)| {
        (
            StageId::parse(&r.0).map(StageId::index),
            Reason::parse(&r.1),
        )
    };
    documented.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(
        documented, expected,
        "docs/records.md's stop reasons vs Reason::ALL"
    );
}
