//! `simulator`: the testbed binary. Its fakes, scenario runner, replay and TUI arrive with their issues;
//! today it only proves the dependency direction (simulator → gateway) builds.

fn main() {
    eprintln!(
        "simulator: not built yet — the gateway's stages are {}",
        gateway::pipeline::StageId::ALL
            .map(|s| s.as_str())
            .join(" · ")
    );
    std::process::exit(1);
}
