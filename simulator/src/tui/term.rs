//! The terminal loop: raw mode and the alternate screen (restored on exit, on error and on
//! panic), keys from a reader thread, records from a [`Feed`] channel, and a redraw at least
//! every 100 ms. Time comes from tokio's clock, never the system clock directly.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use gateway::record::RequestRecord;
use http_body_util::BodyExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::crossterm::{cursor, execute};
use tokio::sync::{broadcast, mpsc};

use super::app::{App, ChangedRequest};
use super::ui;
use crate::compare::{CompareParams, Trace};
use crate::scenario::outcome::ScenarioResult;
use crate::scenario::sink::RecordSink;

/// What a record source sends the TUI.
#[derive(Debug)]
pub enum Feed {
    Record(Arc<RequestRecord>),
    /// The source lost this many records.
    Lagged(u64),
    /// A line the source could not read (shown, and the stream goes on).
    Note(String),
    /// The source ended, and why.
    Ended(String),
    /// A request the two configs of `replay --against` decided differently.
    Changed(ChangedRequest),
}

/// Redraws per second, at least.
pub const FRAMES_PER_SECOND: u64 = 10;
/// Records taken from the channel between two looks at the keyboard and the clock.
const BATCH: usize = 4_096;

/// Puts the terminal back as it was: cooked mode, main screen, cursor shown. Safe to call twice.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// Restores the terminal when dropped — on return, on `?` and on unwinding.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

type Hook = Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync + 'static>;

/// While the TUI runs, a panic first restores the terminal, then reports as it would have.
struct PanicHook {
    previous: Hook,
}

impl PanicHook {
    fn install() -> Self {
        let previous: Hook = Arc::from(std::panic::take_hook());
        let chained = previous.clone();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            chained(info);
        }));
        Self { previous }
    }
}

impl Drop for PanicHook {
    fn drop(&mut self) {
        let previous = self.previous.clone();
        if !std::thread::panicking() {
            std::panic::set_hook(Box::new(move |info| previous(info)));
        }
    }
}

/// Runs the TUI until the user quits; returns the final state.
pub async fn run(mut app: App, mut feed: Option<mpsc::Receiver<Feed>>) -> anyhow::Result<App> {
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("the TUI needs a terminal on stdout");
    }
    let _hook = PanicHook::install();
    enable_raw_mode().context("cannot put the terminal in raw mode")?;
    let _restore = Restore;
    execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)
        .context("cannot open the alternate screen")?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))
        .context("cannot draw on the terminal")?;
    terminal.clear()?;

    // Keys and resizes, read on their own thread (crossterm's reads block).
    let (keys_tx, mut keys) = mpsc::channel::<Event>(256);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("tui-input".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match event::poll(Duration::from_millis(50)) {
                        Ok(true) => match event::read() {
                            Ok(e) => {
                                if keys_tx.blocking_send(e).is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        },
                        Ok(false) => {}
                        Err(_) => return,
                    }
                }
            })
            .context("cannot start the input thread")?
    };

    let started = tokio::time::Instant::now();
    let mut frames = tokio::time::interval(Duration::from_millis(1_000 / FRAMES_PER_SECOND));
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let elapsed = |started: tokio::time::Instant| {
        u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    };
    let result: anyhow::Result<()> = async {
        loop {
            tokio::select! {
                _ = frames.tick() => {
                    app.tick(elapsed(started));
                    terminal.draw(|f| ui::draw(f, &app))?;
                }
                key = keys.recv() => {
                    match key {
                        Some(Event::Key(k)) => app.on_key(k),
                        Some(Event::Resize(_, _)) => { terminal.autoresize()?; }
                        Some(_) => {}
                        None => anyhow::bail!("the terminal's input ended"),
                    }
                    if app.should_quit {
                        return Ok(());
                    }
                    terminal.draw(|f| ui::draw(f, &app))?;
                }
                item = recv(&mut feed) => {
                    let mut next = item;
                    let mut taken = 0;
                    while let Some(item) = next {
                        match item {
                            Feed::Record(r) => app.ingest(r),
                            Feed::Lagged(n) => app.lagged(n),
                            Feed::Note(note) => app.status = note,
                            Feed::Changed(change) => app.changed(change),
                            Feed::Ended(why) => {
                                app.status = why;
                                feed = None;
                                break;
                            }
                        }
                        taken += 1;
                        if taken == BATCH {
                            break;
                        }
                        next = feed.as_mut().and_then(|f| f.try_recv().ok());
                    }
                }
            }
        }
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    drop(keys);
    let _ = reader.join();
    drop(terminal);
    result.map(|()| app)
}

/// The next feed item, or never when there is no feed.
async fn recv(feed: &mut Option<mpsc::Receiver<Feed>>) -> Option<Feed> {
    match feed {
        Some(f) => match f.recv().await {
            Some(item) => Some(item),
            None => Some(Feed::Ended("the record source closed".into())),
        },
        None => std::future::pending().await,
    }
}

/// The compare view on a fixed trace (`simulator compare --tui`).
pub async fn run_compare(trace: Trace, params: CompareParams) -> anyhow::Result<()> {
    run(App::comparing(trace, params), None).await.map(drop)
}

/// Forwards an in-process gateway's records (`GatewayHandle::subscribe`) to the TUI.
pub fn from_broadcast(
    mut records: broadcast::Receiver<Arc<RequestRecord>>,
) -> mpsc::Receiver<Feed> {
    let (tx, rx) = mpsc::channel(65_536);
    tokio::spawn(async move {
        loop {
            let item = match records.recv().await {
                Ok(r) => Feed::Record(r),
                Err(broadcast::error::RecvError::Lagged(n)) => Feed::Lagged(n),
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = tx.send(Feed::Ended("the gateway stopped".into())).await;
                    return;
                }
            };
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// The rate-limit policies of the gateway behind `admin`, from its `/config`.
pub async fn admin_policies(admin: &str) -> anyhow::Result<Vec<crate::tui::app::LabPolicy>> {
    let base = admin.trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let url = format!("{base}/config");
    let request = http::Request::get(&url)
        .body(Default::default())
        .with_context(|| format!("not a URL: {url}"))?;
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        crate::http_client::new().request(request),
    )
    .await
    .with_context(|| format!("{url}: no answer within 5 s"))?
    .with_context(|| format!("cannot reach {url}"))?;
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("{url}: the answer broke off"))?
        .to_bytes();
    let config: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("{url}: not JSON"))?;
    Ok(crate::tui::app::policies_of_admin_config(&config))
}

/// Opens a running gateway's record stream: `GET {admin}/records`, NDJSON. Fails when the admin
/// endpoint cannot be reached or does not answer 200; once open, the stream's end (or a bad
/// line) is reported in the TUI.
pub async fn attach(admin: &str) -> anyhow::Result<mpsc::Receiver<Feed>> {
    let base = admin.trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let url = format!("{base}/records");
    let request = http::Request::get(&url)
        .body(Default::default())
        .with_context(|| format!("not a URL: {url}"))?;
    let client = crate::http_client::new();
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .with_context(|| format!("{url}: no answer within 5 s"))?
        .with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        anyhow::bail!("{url} answered {}", response.status());
    }
    let (tx, rx) = mpsc::channel(65_536);
    tokio::spawn(async move {
        let mut body = response.into_body();
        let mut pending: Vec<u8> = Vec::new();
        let mut line_number = 0u64;
        loop {
            let frame = match body.frame().await {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    let _ = tx
                        .send(Feed::Ended(format!("the record stream failed: {e}")))
                        .await;
                    return;
                }
                None => {
                    let _ = tx
                        .send(Feed::Ended("the gateway closed the record stream".into()))
                        .await;
                    return;
                }
            };
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                let line = &pending[start..start + end];
                start += end + 1;
                line_number += 1;
                if let Some(item) = parse_line(line, line_number) {
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            }
            pending.drain(..start);
        }
    });
    Ok(rx)
}

/// One line of the admin record stream: a record, a `{"lagged": n}` notice, or nothing (blank).
pub fn parse_line(line: &[u8], number: u64) -> Option<Feed> {
    let text = std::str::from_utf8(line).unwrap_or("").trim();
    if text.is_empty() {
        return None;
    }
    if text.starts_with("{\"lagged\"") {
        #[derive(serde::Deserialize)]
        struct Lagged {
            lagged: u64,
        }
        return serde_json::from_str::<Lagged>(text)
            .ok()
            .map(|l| Feed::Lagged(l.lagged));
    }
    Some(match serde_json::from_str::<RequestRecord>(text) {
        Ok(record) => Feed::Record(Arc::new(record)),
        Err(e) => Feed::Note(format!("record stream line {number} is not a record: {e}")),
    })
}

/// `simulator tui --attach ADMIN`.
pub async fn run_attached(admin: &str) -> anyhow::Result<()> {
    let feed = attach(admin).await?;
    // The lab starts from the gateway's own policies; without them (an older gateway, an error)
    // it starts from the default quota and says so.
    let policies = admin_policies(admin).await.unwrap_or_default();
    run(
        App::live_with_policies(format!("attached to {admin}"), policies),
        Some(feed),
    )
    .await
    .map(drop)
}

/// The TUI beside `simulator run`: it shows the records the runner offers to its [`sink`]
/// (pass it in the runner's options) and, as each scenario ends, its verdict (and, when no record
/// came through the sink, the records of its single-request steps).
///
/// [`sink`]: RunTui::sink
pub struct RunTui {
    ui: tokio::task::JoinHandle<anyhow::Result<App>>,
    notes: mpsc::Sender<Feed>,
    sink: RecordSink,
    records_seen: Arc<std::sync::atomic::AtomicU64>,
}

impl RunTui {
    /// Opens the TUI, its lab starting from `policies` (the first scenario's gateway config's);
    /// fails at once when stdout is not a terminal.
    pub fn start(policies: Vec<crate::tui::app::LabPolicy>) -> anyhow::Result<Self> {
        Self::start_app(App::live_with_policies("simulator run", policies))
    }

    /// Opens the TUI beside a replay (`replay --tui`): records offered to [`sink`] flow into the
    /// pipeline, feed and latency views as for `run --tui`, the lab starts from `policies` (the
    /// replayed config's), and `against` adds the Changed view, fed by [`changed`].
    ///
    /// [`sink`]: RunTui::sink
    /// [`changed`]: RunTui::changed
    pub fn start_replay(
        source: impl Into<String>,
        policies: Vec<crate::tui::app::LabPolicy>,
        against: bool,
    ) -> anyhow::Result<Self> {
        let mut app = App::live_with_policies(source, policies);
        if against {
            app.enable_changes();
        }
        Self::start_app(app)
    }

    fn start_app(app: App) -> anyhow::Result<Self> {
        if !std::io::stdout().is_terminal() {
            anyhow::bail!("the TUI needs a terminal on stdout");
        }
        let (notes, feed) = mpsc::channel(65_536);
        let records_seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (sink, mut records) = RecordSink::watched();
        let (forward, counter) = (notes.clone(), records_seen.clone());
        tokio::spawn(async move {
            loop {
                let item = match records.recv().await {
                    Ok(r) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        Feed::Record(r)
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => Feed::Lagged(n),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if forward.send(item).await.is_err() {
                    return;
                }
            }
        });
        let ui = tokio::spawn(run(app, Some(feed)));
        Ok(Self {
            ui,
            notes,
            sink,
            records_seen,
        })
    }

    /// True once the user has quit the TUI (or it failed): a run watching it may stop early.
    pub fn is_closed(&self) -> bool {
        self.ui.is_finished()
    }

    /// Where the runner offers its records to this TUI.
    pub fn sink(&self) -> RecordSink {
        self.sink.clone()
    }

    /// A scenario finished.
    pub async fn scenario_done(&self, result: &ScenarioResult) {
        if self.records_seen.load(Ordering::Relaxed) == 0 {
            for record in result.steps.iter().filter_map(|s| s.record.clone()) {
                let _ = self.notes.send(Feed::Record(Arc::new(record))).await;
            }
        }
        let failed = result.steps.iter().filter(|s| !s.passed).count();
        let verdict = if result.passed() { "PASS" } else { "FAIL" };
        let _ = self
            .notes
            .send(Feed::Note(format!(
                "{verdict} {} ({} steps, {failed} failed)",
                result.name,
                result.steps.len()
            )))
            .await;
    }

    /// A request the two configs decided differently, for the Changed view (which it opens
    /// if `start_replay` did not).
    pub async fn changed(&self, change: ChangedRequest) {
        let _ = self.notes.send(Feed::Changed(change)).await;
    }

    /// A line for the footer (progress, a phase that began).
    pub async fn note(&self, text: impl Into<String>) {
        let _ = self.notes.send(Feed::Note(text.into())).await;
    }

    /// Every scenario has finished: wait for the user to quit.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.finish_with("all scenarios finished — q shows the report")
            .await
    }

    /// The run has finished: say so in the footer and wait for the user to quit.
    pub async fn finish_with(self, message: impl Into<String>) -> anyhow::Result<()> {
        let _ = self.notes.send(Feed::Note(message.into())).await;
        self.ui.await.context("the TUI task failed")?.map(drop)
    }
}
