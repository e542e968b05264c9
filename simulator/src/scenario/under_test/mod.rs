//! The gateway under test — always the real one: in-process through `gateway::start`, or the
//! `gateway` binary as a child process ([`process`]). Either way every record it emits is
//! collected by request id, so a step can find the record that explains its request.

pub mod process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::record::RequestRecord;

use super::sink::RecordSink;

/// How the gateway under test runs.
#[derive(Debug, Clone, Default)]
pub enum GatewayMode {
    #[default]
    InProcess,
    /// The `gateway` binary at this path, as a child process.
    Process(PathBuf),
}

/// Collects every record the gateway emits, by request id, for the whole scenario.
#[derive(Clone, Default)]
pub struct Records {
    by_id: Arc<Mutex<HashMap<String, RequestRecord>>>,
}

impl Records {
    pub fn insert(&self, record: RequestRecord) {
        if let Ok(mut map) = self.by_id.lock() {
            map.insert(record.request_id.clone(), record);
        }
    }

    pub fn get(&self, id: &str) -> Option<RequestRecord> {
        self.by_id.lock().ok()?.get(id).cloned()
    }

    /// Waits until every id has its record, or `within` passes; returns those found.
    pub async fn wait_for(&self, ids: &[String], within: Duration) -> Vec<Option<RequestRecord>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Records are emitted as response bodies end, so nearly all are here on the first pass.
            let found: Vec<Option<RequestRecord>> = match self.by_id.lock() {
                Ok(map) => ids.iter().map(|id| map.get(id).cloned()).collect(),
                Err(_) => vec![None; ids.len()],
            };
            if found.iter().all(Option::is_some) || tokio::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A running gateway under test.
pub struct RunningGateway {
    pub address: SocketAddr,
    pub records: Records,
    stop: Option<Box<dyn FnOnce() + Send + Sync>>,
    handle: Option<gateway::GatewayHandle>,
}

impl RunningGateway {
    pub fn from_process(
        address: SocketAddr,
        records: Records,
        stop: Box<dyn FnOnce() + Send + Sync>,
    ) -> Self {
        Self {
            address,
            records,
            stop: Some(stop),
            handle: None,
        }
    }

    /// Every record from now on, for an in-process gateway.
    pub fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<RequestRecord>>> {
        self.handle.as_ref().map(gateway::GatewayHandle::subscribe)
    }

    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// Starts the gateway on a config text; every record it emits is collected in its
/// [`RunningGateway::records`] and offered to `watchers`.
pub async fn start_gateway(
    source: &str,
    config_text: &str,
    mode: &GatewayMode,
    watchers: &RecordSink,
) -> Result<RunningGateway, String> {
    start_gateway_on_clock(
        source,
        config_text,
        mode,
        watchers,
        gateway::clock::SystemClock::shared(),
    )
    .await
}

/// [`start_gateway`] with the clock an in-process gateway runs on (a `ManualClock` for virtual
/// time); the binary always runs on the system clock.
pub async fn start_gateway_on_clock(
    source: &str,
    config_text: &str,
    mode: &GatewayMode,
    watchers: &RecordSink,
    clock: gateway::clock::SharedClock,
) -> Result<RunningGateway, String> {
    match mode {
        GatewayMode::InProcess => {
            let runtime = gateway::config::load_str(source, config_text).map_err(|d| {
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("cannot bind the gateway listener: {e}"))?;
            let handle = gateway::start(
                runtime,
                gateway::StartOptions {
                    listeners: Some(vec![listener]),
                    clock,
                    ..gateway::StartOptions::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            let records = Records::default();
            let mut receiver = handle.subscribe();
            let collected = records.clone();
            let watchers = watchers.clone();
            tokio::spawn(async move {
                loop {
                    match receiver.recv().await {
                        Ok(record) => {
                            watchers.offer(&record);
                            collected.insert((*record).clone());
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    }
                }
            });
            Ok(RunningGateway {
                address: handle.address(),
                records,
                stop: None,
                handle: Some(handle),
            })
        }
        GatewayMode::Process(binary) => process::start(binary, config_text, watchers).await,
    }
}
