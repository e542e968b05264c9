//! The simulator's CLI habits: an about line naming every subcommand, help on every argument,
//! and shell completions generated from the same definitions.

use std::process::Command;

fn simulator(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(args)
        .output()
        .expect("run simulator");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const SUBCOMMANDS: [&str; 9] = [
    "demo",
    "run",
    "compare",
    "tui",
    "loadgen",
    "upstream",
    "issuer",
    "token",
    "completions",
];

#[test]
fn the_about_line_names_every_subcommand_and_every_argument_has_help() {
    let (code, stdout) = simulator(&["--help"]);
    assert_eq!(code, 0);
    let about = stdout.lines().next().expect("about line");
    for sub in SUBCOMMANDS {
        assert!(about.contains(sub), "about names {sub}: {about}");
    }
    for sub in SUBCOMMANDS {
        // `-h`: one line per argument, its help after two spaces.
        let (code, help) = simulator(&[sub, "-h"]);
        assert_eq!(code, 0, "{sub}");
        // clap puts the help after the flag, or — when some help is long — on the next line,
        // indented further: either way every flag and argument must have one.
        let mut in_list = false;
        let mut waiting: Option<&str> = None;
        for line in help.lines() {
            if line == "Options:" || line == "Arguments:" {
                in_list = true;
                continue;
            }
            if line.is_empty() {
                in_list = false;
                continue;
            }
            let text = line.trim_start();
            if in_list && text.starts_with(['-', '<', '[']) {
                assert!(
                    waiting.is_none(),
                    "`simulator {sub}` has no help for: {waiting:?}"
                );
                let inline = text.split_once("  ").map_or("", |(_, h)| h.trim());
                waiting = inline.is_empty().then_some(text);
            } else if in_list && !text.is_empty() {
                waiting = None;
            }
        }
        assert!(
            waiting.is_none(),
            "`simulator {sub}` has no help for: {waiting:?}"
        );
    }
}

#[test]
fn completions_cover_every_subcommand() {
    let (code, zsh) = simulator(&["completions", "zsh"]);
    assert_eq!(code, 0);
    assert!(zsh.starts_with("#compdef simulator"), "{zsh}");
    for sub in SUBCOMMANDS {
        assert!(zsh.contains(sub), "zsh completes {sub}");
    }
    let (code, _) = simulator(&["completions", "tcsh"]);
    assert_eq!(code, 1, "an unknown shell is a usage error");
}
