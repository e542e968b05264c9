//! A suite of scenarios, as `simulator run` takes it: the files of the paths given (a directory
//! stands for its `*.yaml` files, sorted), run a few at a time, collected in file order. It is
//! here rather than in the CLI so the binary only parses flags, writes reports and picks an exit
//! code, and so anything else can run a suite the same way.

use std::path::PathBuf;
use std::sync::Arc;

use super::outcome::{RunError, ScenarioResult};
use super::run::{RunOptions, run_file};

/// What a suite produced.
#[derive(Debug, Default)]
pub struct SuiteOutcome {
    /// One per scenario that ran, in file order.
    pub results: Vec<ScenarioResult>,
    /// Files that could not be run: a scenario or its gateway config was not accepted (or a task
    /// failed), each naming its file.
    pub parse_errors: Vec<String>,
}

/// The scenario files of `paths`: files as given, directories expanded to their `*.yaml` and
/// `*.yml` files in name order. A path that does not exist is an error.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    Ok(files)
}

/// Runs every file, at most `jobs` at once, and collects the results in file order; each result
/// goes to `on_finished` as it is collected.
pub async fn run_suite(
    files: Vec<PathBuf>,
    jobs: usize,
    options: &RunOptions,
    mut on_finished: impl AsyncFnMut(&ScenarioResult),
) -> SuiteOutcome {
    let permits = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut tasks = Vec::new();
    for file in files {
        let permits = permits.clone();
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            (file.clone(), run_file(&file, &options).await)
        }));
    }
    let mut outcome = SuiteOutcome::default();
    for task in tasks {
        match task.await {
            Ok((_, Ok(result))) => {
                on_finished(&result).await;
                outcome.results.push(result)
            }
            Ok((file, Err(RunError::Parse(e)))) => {
                // Scenario errors name their file already; config errors name the config.
                if e.contains(&*file.to_string_lossy()) {
                    outcome.parse_errors.push(e);
                } else {
                    outcome
                        .parse_errors
                        .push(format!("{}: {e}", file.display()));
                }
            }
            Err(e) => outcome
                .parse_errors
                .push(format!("a scenario task failed: {e}")),
        }
    }
    outcome
}
