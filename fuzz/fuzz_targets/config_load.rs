//! The config loader as `gateway check` runs it (YAML syntax, schema, compile): any text gives a
//! runtime or located diagnostics, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// A name no file has: relative paths the config names (certificates, the API-key file) are
/// then resolved from the working directory, as for an inline config.
const SOURCE: &str = "fuzz-config.yaml";

fuzz_target!(|data: &[u8]| {
    // The loader reads the file as UTF-8 text; other bytes never reach it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(diagnostics) = gateway::config::load_str(SOURCE, text) else {
        return;
    };
    assert!(!diagnostics.is_empty(), "refused without a diagnostic");
    let last_line = yaml_lines(text);
    for d in &diagnostics {
        assert_eq!(d.file, SOURCE);
        assert!(!d.message.is_empty(), "an empty message: {d:?}");
        if let Some(line) = d.line {
            assert!(
                (1..=last_line).contains(&line),
                "line out of the file: {d:?}"
            );
        }
        assert!(
            d.column.is_none() || d.line.is_some(),
            "a column without a line: {d:?}"
        );
        let _ = d.to_string();
    }
});

/// Lines as YAML counts them: CR LF, a lone CR, LF, and YAML 1.1's NEL, LS and PS each end one.
fn yaml_lines(text: &str) -> usize {
    let breaks = text
        .matches(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        .count();
    breaks - text.matches("\r\n").count() + 1
}
