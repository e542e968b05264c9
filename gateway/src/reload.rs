//! Live config: a new runtime replaces the active one without a restart and without failing a
//! request.
//!
//! - [`install`] binds the new runtime to the live upstream state (so health, ejections,
//!   breakers, budgets and connection pools carry over for what did not change — see
//!   [`crate::resilience`]) and swaps it in atomically; requests in flight keep the runtime they
//!   started with, new requests get the new one.
//! - [`reload_file`] parses and checks a file first: when it has problems, each is logged with
//!   file and line, the failure is counted (`gatehouse_config_reloads_total{result="failure"}`)
//!   and remembered for the admin `/config` endpoint, and the active config stays.
//! - [`ConfigWatch`] is what `gateway run` runs: a reload on SIGHUP, and on every change to the
//!   file (the notify crate, watching the file's directory so editors that replace the file by
//!   rename are seen too).
//!
//! Listeners, the admin address and the access log are opened once at start; a reload that
//! changes them applies everything else and says that those need a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::{Diagnostic, Runtime};
use crate::resilience::metrics::ResultLabels;
use crate::state::GatewayState;
use crate::state::reload::Failure;

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub version: u64,
    pub hash: String,
    /// Changes the running gateway could not apply (listeners, admin address, access log).
    pub needs_restart: Vec<String>,
}

/// Makes `runtime` the active config for requests from now on.
pub fn install(state: &GatewayState, runtime: Runtime) -> Reloaded {
    let _one = state.reload.one_at_a_time();
    let needs_restart = needs_restart(&state.active.load().config, &runtime);
    for change in &needs_restart {
        tracing::warn!(source = %runtime.source, "{change} changed: restart the gateway to apply it; everything else is applied");
    }
    let version = state.reload.next_version();
    let hash = runtime.hash.clone();
    tracing::info!(source = %runtime.source, version, %hash, "config reloaded");
    let active = Arc::new(state.upstreams.bind(runtime, version));
    state.active.store(active.clone());
    // Issuer key caches for issuers the new config added or changed (crate::identity).
    let auth = &active.config.auth;
    state.identity.sync(&auth.issuers, auth.token_cache_entries);
    state.reload.set_last_failure(None);
    state
        .sinks
        .metrics
        .resilience
        .reloads
        .get_or_create(&ResultLabels { result: "success" })
        .inc();
    Reloaded {
        version,
        hash,
        needs_restart,
    }
}

/// Loads, checks and installs the config at `path`; on problems keeps the active config, logs
/// every problem and counts the failure.
pub fn reload_file(state: &GatewayState, path: &Path) -> Result<Reloaded, Vec<Diagnostic>> {
    match crate::config::load_file(path) {
        Ok(runtime) => Ok(install(state, runtime)),
        Err(diagnostics) => {
            refuse(state, &path.display().to_string(), &diagnostics);
            Err(diagnostics)
        }
    }
}

fn refuse(state: &GatewayState, source: &str, diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        tracing::error!("{d}");
    }
    let active = state.active.load();
    tracing::error!(
        source,
        problems = diagnostics.len(),
        active_version = active.upstreams.version,
        active_hash = %active.config.hash,
        "config reload refused; the active config stays"
    );
    state.reload.set_last_failure(Some(Failure {
        source: source.to_string(),
        problems: diagnostics.iter().map(ToString::to_string).collect(),
        unix_millis: state.clock.unix_millis(),
    }));
    state
        .sinks
        .metrics
        .resilience
        .reloads
        .get_or_create(&ResultLabels { result: "failure" })
        .inc();
}

fn needs_restart(active: &Runtime, next: &Runtime) -> Vec<String> {
    let mut changed = Vec::new();
    let listeners = |r: &Runtime| {
        r.listeners
            .iter()
            .map(|l| (l.name.clone(), l.address))
            .collect::<Vec<_>>()
    };
    if listeners(active) != listeners(next) {
        changed.push("listeners".to_string());
    }
    if active.admin != next.admin {
        changed.push("admin.address".to_string());
    }
    if active.workers != next.workers {
        changed.push("workers".to_string());
    }
    if active.access_log != next.access_log {
        changed.push("access_log".to_string());
    }
    if active.recording != next.recording {
        changed.push("recording".to_string());
    }
    changed
}

/// Changes to a file often come as several events (truncate, write, rename); reload once they
/// settle.
const SETTLE: Duration = Duration::from_millis(100);

/// What reloads `path`: the SIGHUP handler and the file watcher, armed by [`ConfigWatch::arm`]
/// before anything announces the gateway as listening, so no edit or signal sent after that
/// announcement can be missed (an unarmed SIGHUP would even end the process).
pub struct ConfigWatch {
    state: Arc<GatewayState>,
    path: PathBuf,
    hangup: Option<tokio::signal::unix::Signal>,
    changed: mpsc::UnboundedReceiver<()>,
    // Held for its drop: the watcher stops with it.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl ConfigWatch {
    /// Installs the SIGHUP handler and the file watcher now. Either one that cannot be had is
    /// logged and the other still works. Needs a tokio runtime (the signal driver).
    pub fn arm(state: Arc<GatewayState>, path: PathBuf) -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reload on file change only");
                None
            }
        };
        let (events, changed) = mpsc::unbounded_channel::<()>();
        let watcher = match file_watcher(&path, events) {
            Ok(w) => Some(w),
            Err(error) => {
                tracing::warn!(%error, file = %path.display(), "cannot watch the config file; reload on SIGHUP only");
                None
            }
        };
        ConfigWatch {
            state,
            path,
            hangup,
            changed,
            _watcher: watcher,
        }
    }

    /// Reloads on SIGHUP and whenever the file changes, until `shutdown` turns true. A file event
    /// whose content hashes like the active config is ignored; SIGHUP always reloads.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (state, path) = (&self.state, &self.path);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match self.hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!(file = %path.display(), "SIGHUP: reloading the config");
                    let _ = reload_file(state, path);
                }
                Some(()) = self.changed.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while self.changed.try_recv().is_ok() {}
                    reload_if_changed(state, path);
                }
            }
        }
    }
}

fn reload_if_changed(state: &GatewayState, path: &Path) {
    if let Ok(text) = std::fs::read_to_string(path) {
        if crate::config::compile::content_hash(&text) == state.active.load().config.hash {
            // A refused edit undone (the file is the active config again) is fixed too: the
            // admin `/config` must stop reporting a failure that no longer describes the file.
            if state.reload.last_failure().is_some() {
                state.reload.set_last_failure(None);
                tracing::info!(file = %path.display(), "config file is the active config again; the refused reload is cleared");
            } else {
                tracing::debug!(file = %path.display(), "config file touched but unchanged");
            }
            return;
        }
    }
    tracing::info!(file = %path.display(), "config file changed: reloading");
    let _ = reload_file(state, path);
}

fn file_watcher(
    path: &Path,
    events: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let name = path.file_name().map(ToOwned::to_owned);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        if event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
            let _ = events.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
