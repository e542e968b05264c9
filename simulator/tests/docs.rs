//! The documentation's examples, run: every `console` block of README.md and docs/*.md through
//! the real `gateway` and `simulator` binaries (trycmd compares what they print, exit code
//! included), every `yaml,config` block through the config loader, every `yaml,cases` block
//! through the route tests against the config its fence names, and every `yaml,scenario` block
//! through `simulator run`. A page whose example stops matching fails CI.
//!
//! Plain `yaml` blocks are fragments of a larger file and `console,ignore` blocks are live
//! sessions (ports chosen at run time); neither is run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// `(line, info string, body)` of every fenced block of `text`.
fn blocks(text: &str) -> Vec<(usize, String, String)> {
    let mut found = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        for (_, line) in lines.by_ref() {
            if line.starts_with("```") {
                break;
            }
            body.push_str(line);
            body.push('\n');
        }
        found.push((n + 1, info.trim().to_string(), body));
    }
    found
}

fn gateway_binary() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_simulator")).with_file_name("gateway")
}

#[test]
fn every_console_example_prints_what_the_page_says() {
    // The examples name files relative to the repository root, as a reader types them there.
    std::env::set_current_dir(root()).expect("cd to the repository root");
    let cases = trycmd::TestCases::new();
    cases
        .register_bin("simulator", Path::new(env!("CARGO_BIN_EXE_simulator")))
        .register_bin("gateway", gateway_binary())
        .env("NO_COLOR", "1");
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read page");
        if blocks(&text).iter().any(|(_, info, _)| info == "console") {
            cases.case(page);
        }
    }
    cases.run();
}

#[test]
fn every_config_cases_and_scenario_example_is_accepted() {
    let root = root();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read page");
        let name = page
            .strip_prefix(&root)
            .unwrap_or(&page)
            .display()
            .to_string();
        for (line, info, body) in blocks(&text) {
            let mut words = info.split([',', ' ']);
            if words.next() != Some("yaml") {
                continue;
            }
            let kind = words.next().unwrap_or("");
            let at = format!("{name}:{line}");
            match kind {
                "config" => {
                    if let Err(problems) = gateway::config::load_str(&at, &body) {
                        panic!("{at}: the config example is refused:\n{problems:?}");
                    }
                }
                "cases" => {
                    let config = words
                        .find_map(|w| w.strip_prefix("config="))
                        .unwrap_or_else(|| panic!("{at}: a cases example names its config="));
                    let runtime = gateway::config::load_file(&root.join(config))
                        .unwrap_or_else(|d| panic!("{at}: {config}: {d:?}"));
                    let file = gateway::route_test::parse_cases(&at, &body)
                        .unwrap_or_else(|d| panic!("{at}: {d}"));
                    let clock = gateway::clock::SystemClock::shared();
                    let outcome = gateway::route_test::run_cases(&runtime, &file, clock.as_ref());
                    for case in &outcome.cases {
                        assert!(
                            case.mismatches.is_empty(),
                            "{at}: case `{}`: {:?}",
                            case.label,
                            case.mismatches
                        );
                    }
                }
                "scenario" => {
                    // Beside the canonical scenarios, so its relative config path reads as there.
                    let file = tempfile::Builder::new()
                        .prefix(".docs-example-")
                        .suffix(".yaml")
                        .tempfile_in(root.join("scenarios"))
                        .expect("temp scenario");
                    std::fs::write(file.path(), &body).expect("write scenario");
                    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
                        .arg("run")
                        .arg(file.path())
                        .env("NO_COLOR", "1")
                        .output()
                        .expect("run simulator");
                    assert!(
                        out.status.success(),
                        "{at}: the scenario example fails:\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                _ => continue,
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "the docs hold checked examples ({checked})");
}
