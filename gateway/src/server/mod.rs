//! The server: listeners handed in or bound from config, HTTP/1.1 and HTTP/2 (h2c prior
//! knowledge) on every connection, the server limits, graceful shutdown, and the in-process API
//! the simulator embeds (start from a config value, learn the bound address, subscribe to
//! records, shut down).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod connection;
mod edge_records;
mod heap;

use arc_swap::ArcSwap;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Runtime;
use crate::identity::IdentityState;
use crate::ratelimit::store::Stores;
use crate::record::metrics::Metrics;
use crate::record::recording::Recorder;
use crate::record::{RecordSinks, RequestRecord};
use crate::state::upstreams::Registry;
use crate::state::{GatewayState, ReloadState};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Said once and plainly (`address already in use`, not the OS error's code): `gateway run`
    /// prints it as its one line of output.
    #[error("cannot listen on {address} ({listener}): {}", plain_io_error(error))]
    Bind {
        address: SocketAddr,
        /// Which config entry wanted it: `listeners[0] "public"` or `admin.address`.
        listener: String,
        error: std::io::Error,
    },
    #[error("the config has no listener and none was handed in")]
    NoListener,
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("cannot open the recording `{}`: {error}", path.display())]
    Recording {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
}

fn plain_io_error(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::AddrInUse => "address already in use".into(),
        ErrorKind::AddrNotAvailable => "address not available on this host".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string(),
    }
}

/// How to start a gateway in-process.
pub struct StartOptions {
    /// Serve on these instead of binding the config's listeners (tests and the simulator pass
    /// `127.0.0.1:0` listeners and read the bound address back).
    pub listeners: Option<Vec<TcpListener>>,
    /// Serve the admin endpoints here instead of the config's admin address.
    pub admin_listener: Option<TcpListener>,
    pub clock: SharedClock,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            listeners: None,
            admin_listener: None,
            clock: SystemClock::shared(),
        }
    }
}

/// A running gateway.
pub struct GatewayHandle {
    state: Arc<GatewayState>,
    addresses: Vec<SocketAddr>,
    admin_address: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl GatewayHandle {
    /// The first listener's bound address.
    pub fn address(&self) -> SocketAddr {
        self.addresses[0]
    }

    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin_address
    }

    /// Every request's record, from now on. A subscriber that falls more than 16,384 records
    /// behind is told how many it missed (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RequestRecord>> {
        self.state.sinks.subscribe()
    }

    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish within the drain timeout, then returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.state.upstreams.stop();
        while self.tasks.join_next().await.is_some() {}
        flush_recording(&self.state).await;
    }

    /// Resolves when a shutdown was requested through [`GatewayHandle::shutdown_trigger`] and
    /// everything drained.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
        self.state.upstreams.stop();
        flush_recording(&self.state).await;
    }

    /// Makes `runtime` the active config: requests from now on use it, requests in flight finish
    /// under theirs. Health, ejections, breakers, retry budgets and connection pools carry over
    /// for upstreams and instances whose settings did not change (crate::reload).
    pub fn reload(&self, runtime: Runtime) -> crate::reload::Reloaded {
        crate::reload::install(&self.state, runtime)
    }

    /// A sender that starts the graceful shutdown when `true` is sent (signal handlers use it).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// How long a stopping gateway waits for its recording's queued lines (and, as long again, for
/// its access log's) to reach the file.
const RECORDING_FLUSH: Duration = Duration::from_secs(5);

/// The last requests' access-log records and recording lines are written before the gateway's
/// stop returns.
async fn flush_recording(state: &Arc<GatewayState>) {
    let sinks = state.sinks.clone();
    let logged = tokio::task::spawn_blocking(move || sinks.flush(RECORDING_FLUSH))
        .await
        .unwrap_or(false);
    if !logged {
        tracing::warn!("the access log's last records were not written within {RECORDING_FLUSH:?}");
    }
    if let Some(recorder) = state.recorder.clone() {
        let flushed = tokio::task::spawn_blocking(move || recorder.flush(RECORDING_FLUSH))
            .await
            .unwrap_or(false);
        if !flushed {
            tracing::warn!(
                "the recording's last lines were not written within {RECORDING_FLUSH:?}"
            );
        }
    }
}

/// Starts a gateway for `runtime`: binds (or takes) its listeners and returns once they accept.
pub async fn start(runtime: Runtime, options: StartOptions) -> Result<GatewayHandle, StartError> {
    let metrics = Arc::new(Metrics::new());
    let sinks = RecordSinks::new(metrics, &runtime.access_log).map_err(StartError::AccessLog)?;
    let recorder =
        match &runtime.recording {
            Some(config) => Some(Recorder::start(config, sinks.metrics.clone()).map_err(
                |error| StartError::Recording {
                    path: config.path.clone(),
                    error,
                },
            )?),
            None => None,
        };
    let listeners = match options.listeners {
        Some(listeners) => listeners,
        None => {
            let mut bound = Vec::new();
            for (i, l) in runtime.listeners.iter().enumerate() {
                bound.push(bind(l.address, format!("listeners[{i}] \"{}\"", l.name)).await?);
            }
            bound
        }
    };
    if listeners.is_empty() {
        return Err(StartError::NoListener);
    }
    let admin_listener = match (options.admin_listener, runtime.admin) {
        (Some(l), _) => Some(l),
        (None, Some(address)) => Some(bind(address, "admin.address".into()).await?),
        (None, None) => None,
    };
    let auth = &runtime.auth;
    let identity = IdentityState::new(
        auth.token_cache_entries,
        options.clock.clone(),
        sinks.metrics.identity.clone(),
    );
    // Starts each issuer's JWKS fetch in the background: start never waits for an issuer.
    identity.sync(&auth.issuers, auth.token_cache_entries);
    let ratelimit = Stores::new(
        options.clock.clone(),
        runtime.rate_limits.max_keys,
        runtime.rate_limits.redis.as_ref(),
        sinks.metrics.ratelimit.clone(),
    );
    let upstreams = Registry::new(options.clock.clone(), sinks.metrics.clone());
    let reload = ReloadState::default();
    let active = reload.first(&upstreams, runtime);
    let state = Arc::new(GatewayState {
        active: ArcSwap::from_pointee(active),
        clock: options.clock,
        sinks,
        recorder,
        identity,
        ratelimit,
        upstreams,
        reload,
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let heap = heap::HeapRelease::new(state.clock.clone(), state.sinks.metrics.heap.clone());
    let mut addresses = Vec::new();
    // Listener i serves with the TLS of the config's listeners[i], handed in or bound here.
    for (index, listener) in listeners.into_iter().enumerate() {
        addresses.push(listener.local_addr().map_err(|error| StartError::Bind {
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
            listener: format!("listeners[{index}]"),
            error,
        })?);
        tasks.spawn(accept_loop(
            index,
            listener,
            state.clone(),
            heap.clone(),
            shutdown_rx.clone(),
        ));
    }
    let admin_address = match admin_listener {
        Some(l) => {
            let address = l.local_addr().ok();
            tasks.spawn(crate::admin::serve(l, state.clone(), shutdown_rx.clone()));
            address
        }
        None => None,
    };
    Ok(GatewayHandle {
        state,
        addresses,
        admin_address,
        shutdown,
        tasks,
    })
}

async fn bind(address: SocketAddr, listener: String) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|error| StartError::Bind {
            address,
            listener,
            error,
        })
}

async fn accept_loop(
    index: usize,
    listener: TcpListener,
    state: Arc<GatewayState>,
    heap: Arc<heap::HeapRelease>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut counted = ListenerConnections::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Past `limits.max_connections` the connection is closed at once, unread.
                    if let Some((permit, parked)) = counted.admit(&state, index) {
                        let (state, heap, shutdown) = (state.clone(), heap.clone(), shutdown.clone());
                        // The future is made inside the task's block, not moved into it: a
                        // captured future is kept beside the copy being awaited, which doubled
                        // every connection's task (3.8 KB, around a 1.9 KB future).
                        connections.spawn(async move {
                            let _counted = permit;
                            connection::serve_connection(index, stream, peer, state, heap, shutdown, parked).await;
                        });
                    } else {
                        tracing::debug!(%peer, "limits.max_connections reached; connection closed");
                        drop(stream);
                    }
                }
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drain = state.active.load().config.limits.drain_timeout;
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "drain timeout passed; closing the remaining connections"
        );
        connections.abort_all();
    }
}

/// The open connections of one listener, counted under `limits.max_connections` (read from the
/// config in force at each accept). Past it a new connection is accepted and closed at once, as
/// Envoy's connection limit does, rather than left in the kernel's backlog: the client learns at
/// once, the refusal is counted, and the backlog never fills with connections nobody will serve.
/// No HTTP answer is written: nothing of the request has been read, and the client may not even
/// speak HTTP/1.1 (h2c, TLS).
#[derive(Default)]
struct ListenerConnections {
    /// The listener's name, its gate and its parked-connections gauge, resolved again only when
    /// a reload renames it.
    gate: Option<(String, crate::resilience::concurrency::Gate, Gauge)>,
}

impl ListenerConnections {
    fn admit(
        &mut self,
        state: &GatewayState,
        index: usize,
    ) -> Option<(crate::resilience::concurrency::Permit, Gauge)> {
        let active = state.active.load();
        let max = active.config.limits.max_connections;
        let name = connection::listener_name(&active.config, index);
        let (_, gate, parked) = match &self.gate {
            Some((known, ..)) if *known == name => self.gate.as_ref()?,
            _ => {
                let concurrency = &state.sinks.metrics.concurrency;
                let (gate, parked) = (concurrency.connections(&name), concurrency.parked(&name));
                self.gate.insert((name, gate, parked))
            }
        };
        let permit = match max {
            Some(max) => gate.try_enter(max),
            None => Some(gate.enter()),
        }?;
        Some((permit, parked.clone()))
    }
}
