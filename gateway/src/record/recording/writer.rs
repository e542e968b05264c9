//! The recording's writer thread: takes captures off the bounded queue, turns each into its
//! redacted line ([`super::redact`]), appends it, flushes when the queue is empty, and rotates by
//! size — `path` → `path.1` → … → `path.<keep>`, the oldest removed — never splitting a line
//! across two files.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};

use super::redact::ClaimsCache;
use super::{Entry, Queued};
use crate::config::compiled::RecordingConfig;
use crate::record::json::Json;
use crate::record::metrics::Metrics;

/// Opens the file and starts the thread; the returned sender is the queue.
pub(super) fn spawn(
    config: &RecordingConfig,
    metrics: Arc<Metrics>,
) -> std::io::Result<SyncSender<Queued>> {
    let file = RotatingFile::open(config)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(config.queue);
    std::thread::Builder::new()
        .name("recording".into())
        .spawn(move || run(&rx, file, &metrics))?;
    Ok(tx)
}

fn run(rx: &Receiver<Queued>, mut file: RotatingFile, metrics: &Metrics) {
    let mut line = Json::default();
    let mut claims = ClaimsCache::default();
    let mut barriers = Vec::new();
    while let Ok(first) = rx.recv() {
        // Whatever else is queued goes out before the flush.
        let mut next = Some(first);
        while let Some(queued) = next.take().or_else(|| rx.try_recv().ok()) {
            match queued {
                Queued::Line(entry) => {
                    write_entry(entry, &mut claims, &mut line, &mut file, metrics)
                }
                Queued::Barrier(done) => barriers.push(done),
            }
        }
        if let Err(error) = file.flush() {
            tracing::warn!(%error, "the recording could not be flushed");
        }
        for done in barriers.drain(..) {
            let _ = done.send(());
        }
    }
    let _ = file.flush();
}

fn write_entry(
    entry: Entry,
    claims: &mut ClaimsCache,
    line: &mut Json,
    file: &mut RotatingFile,
    metrics: &Metrics,
) {
    if super::redact::write(entry, claims, line).is_err() {
        metrics.recording_dropped.inc();
        return;
    }
    line.out.push(b'\n');
    match file.write_line(&line.out) {
        Ok(()) => {
            metrics.recording_written.inc();
        }
        Err(error) => {
            metrics.recording_dropped.inc();
            tracing::warn!(%error, path = %file.path.display(), "a recording line could not be written");
        }
    }
}

/// The file being written, its size, and where rotated files go.
struct RotatingFile {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    rotate_bytes: u64,
    keep: usize,
}

impl RotatingFile {
    fn open(config: &RecordingConfig) -> std::io::Result<Self> {
        let (out, size) = open_append(&config.path)?;
        Ok(Self {
            path: config.path.clone(),
            out,
            size,
            rotate_bytes: config.rotate_bytes,
            keep: config.keep,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64;
        if self.rotate_bytes > 0 && self.size > 0 && self.size + len > self.rotate_bytes {
            self.rotate()?;
        }
        self.out.write_all(line)?;
        self.size += len;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// `path.<keep-1>` → `path.<keep>` (replacing it) … `path` → `path.1`, then a new `path`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        for i in (1..self.keep).rev() {
            let from = numbered(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, i + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        let (out, size) = open_append(&self.path)?;
        self.out = out;
        self.size = size;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata().map_or(0, |m| m.len());
    Ok((BufWriter::with_capacity(64 * 1024, file), size))
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}
