//! A suite of scenarios, as `simulator run` takes it: the files of the paths given (a directory
//! stands for the `*.yaml` files in it that are scenarios, sorted), every one checked before any
//! starts, then run a few at a time and collected in file order. It is here rather than in the
//! CLI so the binary only parses flags, writes reports and picks an exit code, and so anything
//! else can run a suite the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::check::check_file;
use super::outcome::{RunError, ScenarioResult, Status};
use super::run::{RunOptions, run};

/// The files a suite will run, and the YAML files of its directories it leaves alone.
#[derive(Debug, Default)]
pub struct Collected {
    pub scenarios: Vec<PathBuf>,
    /// YAML files found in a directory that are not scenarios (no top-level `steps:` key):
    /// gateway configs, fixtures, anything else kept beside the scenarios.
    pub skipped: Vec<PathBuf>,
}

/// What became of one scenario file.
#[derive(Debug)]
pub enum FileOutcome {
    Ran(ScenarioResult),
    /// The file could not be used: it did not parse, named something that does not exist, or its
    /// gateway config was not accepted. Nothing of it ran.
    Rejected(Rejected),
}

impl FileOutcome {
    pub fn status(&self) -> Status {
        match self {
            FileOutcome::Ran(result) => result.status(),
            FileOutcome::Rejected(_) => Status::Errored,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rejected {
    pub file: String,
    /// The scenario's `name` when the file got far enough to have one, else the file's stem.
    pub name: String,
    /// Each problem as `file:line:column: field: message`.
    pub diagnostics: Vec<String>,
}

/// What a suite produced.
#[derive(Debug, Default)]
pub struct SuiteOutcome {
    /// One per file that was checked, in file order.
    pub files: Vec<FileOutcome>,
    /// Files never started because the run was interrupted first.
    pub not_run: Vec<PathBuf>,
    pub interrupted: bool,
}

impl SuiteOutcome {
    /// The scenarios that ran (even if only partly), in file order.
    pub fn results(&self) -> impl Iterator<Item = &ScenarioResult> {
        self.files.iter().filter_map(|f| match f {
            FileOutcome::Ran(result) => Some(result),
            FileOutcome::Rejected(_) => None,
        })
    }

    pub fn rejected(&self) -> impl Iterator<Item = &Rejected> {
        self.files.iter().filter_map(|f| match f {
            FileOutcome::Rejected(rejected) => Some(rejected),
            FileOutcome::Ran(_) => None,
        })
    }
}

/// The scenario files of `paths`: files as given (a file named explicitly is always run, so a
/// wrong one is an error rather than silently left out), directories expanded to their `*.yaml`
/// and `*.yml` files in name order, keeping only those that look like scenarios. A path that
/// does not exist is an error.
pub fn collect_files(paths: &[PathBuf]) -> Result<Collected, String> {
    let mut collected = Collected::default();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            found.sort();
            for file in found {
                if looks_like_a_scenario(&file) {
                    collected.scenarios.push(file);
                } else {
                    collected.skipped.push(file);
                }
            }
        } else if path.exists() {
            collected.scenarios.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    Ok(collected)
}

/// A top-level `steps:` key, found by reading lines rather than parsing, so a scenario with a
/// syntax error still counts as one (and gets its diagnostic) instead of being skipped. A file
/// that cannot be read counts too, for the same reason.
fn looks_like_a_scenario(path: &Path) -> bool {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().any(|line| {
            line.strip_prefix("steps")
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        }),
        Err(_) => true,
    }
}

/// Checks every file, then runs those that passed, at most `jobs` at once. Each file's outcome
/// goes to `on_finished` as it is collected: the rejected ones first, before anything starts,
/// then the scenarios in file order.
pub async fn run_suite(
    files: Vec<PathBuf>,
    jobs: usize,
    options: &RunOptions,
    mut on_finished: impl AsyncFnMut(&FileOutcome),
) -> SuiteOutcome {
    let mut outcome = SuiteOutcome::default();
    let mut ordered: Vec<(usize, FileOutcome)> = Vec::new();
    let mut runnable = Vec::new();
    for (index, file) in files.into_iter().enumerate() {
        match check_file(&file) {
            Ok(scenario) => runnable.push((index, file, scenario)),
            Err(diagnostics) => {
                let rejected = FileOutcome::Rejected(Rejected {
                    name: name_of_unusable(&file),
                    file: file.display().to_string(),
                    diagnostics: diagnostics.iter().map(ToString::to_string).collect(),
                });
                on_finished(&rejected).await;
                ordered.push((index, rejected));
            }
        }
    }
    // `jobs` workers take the files in file order from one queue, so with `--jobs 1` the
    // scenarios run exactly in the order given (spawned tasks would start in any order); each
    // result comes back on its file's own channel, collected in file order as it completes.
    let mut queue = std::collections::VecDeque::new();
    let mut tasks = Vec::new();
    for (index, file, scenario) in runnable {
        let (done, result) = tokio::sync::oneshot::channel();
        queue.push_back((index, file, scenario, done));
        tasks.push(result);
    }
    let queue = Arc::new(parking_lot::Mutex::new(queue));
    for _ in 0..jobs.max(1) {
        let queue = queue.clone();
        let options = options.clone();
        tokio::spawn(async move {
            loop {
                let Some((index, file, scenario, done)) = queue.lock().pop_front() else {
                    return;
                };
                let result = if options.interrupt.is_raised() {
                    None
                } else {
                    let dir = file.parent().unwrap_or(Path::new("."));
                    Some(run(&scenario, dir, &file.display().to_string(), &options).await)
                };
                let _ = done.send((index, file, result));
            }
        });
    }
    for task in tasks {
        let (index, file_outcome) = match task.await {
            Ok((_, file, None)) => {
                outcome.not_run.push(file);
                continue;
            }
            Ok((index, _, Some(Ok(result)))) => (index, FileOutcome::Ran(result)),
            Ok((index, file, Some(Err(RunError::Parse(e))))) => (
                index,
                FileOutcome::Rejected(Rejected {
                    name: name_of_unusable(&file),
                    file: file.display().to_string(),
                    diagnostics: e.lines().map(str::to_owned).collect(),
                }),
            ),
            Err(e) => {
                // A worker only drops a file unanswered by panicking; the report must still show it.
                let rejected = Rejected {
                    name: "a scenario".into(),
                    file: String::new(),
                    diagnostics: vec![format!("a scenario task failed: {e}")],
                };
                (usize::MAX, FileOutcome::Rejected(rejected))
            }
        };
        on_finished(&file_outcome).await;
        ordered.push((index, file_outcome));
    }
    ordered.sort_by_key(|(index, _)| *index);
    outcome.files = ordered.into_iter().map(|(_, f)| f).collect();
    outcome.interrupted = options.interrupt.is_raised();
    outcome
}

/// What to call a file that could not be used: its `name:` if that much of it reads, else its
/// file stem (`over-quota` for `over-quota.yaml`), never the path, which CI tools split badly.
fn name_of_unusable(file: &Path) -> String {
    let declared = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text).ok())
        .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned));
    declared.unwrap_or_else(|| {
        file.file_stem().map_or_else(
            || file.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
    })
}
