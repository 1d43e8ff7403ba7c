//! What plugins write to the host's log: `host.log` calls and their stdout and stderr, all through
//! `tracing` (so `RUST_LOG` and `--log-format json` apply), attributed to the plugin, and capped so
//! a plugin cannot flood the host's log or its disk:
//! - a line is cut at [`MAX_LINE_BYTES`] (the cut is said at the end of the line);
//! - each plugin may write [`LINES_PER_SECOND`] lines a second on average, in bursts of up to
//!   [`BURST_LINES`]; lines past that are dropped, counted in
//!   `weft_plugin_log_lines_dropped_total{plugin}`, and the next line that passes says how many
//!   were dropped.

use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use tracing::Level;

/// Longest line kept, in bytes; the rest of the line is cut.
pub const MAX_LINE_BYTES: usize = 4096;
/// Lines a second one plugin may write on average.
pub const LINES_PER_SECOND: f64 = 100.0;
/// Lines one plugin may write at once before the rate applies.
pub const BURST_LINES: f64 = 1000.0;

/// One plugin's log: its rate budget and its drop counter.
pub struct PluginLog {
    plugin: String,
    budget: Mutex<Budget>,
    /// Lines dropped and not yet counted in the metric (see [`PluginLog::take_dropped`]).
    dropped: AtomicU64,
}

struct Budget {
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last line that passed.
    dropped: u64,
}

impl PluginLog {
    /// The log of plugin `plugin`.
    pub fn new(plugin: &str) -> Self {
        Self {
            plugin: plugin.to_string(),
            budget: Mutex::new(Budget { tokens: BURST_LINES, refilled: Instant::now(), dropped: 0 }),
            dropped: AtomicU64::new(0),
        }
    }

    /// Lines dropped since the last call, for `weft_plugin_log_lines_dropped_total`.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    /// Writes one line at `level`, within the caps; `event` is the CloudEvent id being handled.
    pub fn line(&self, level: Level, event: &str, message: &str) {
        if !self.admit(level) {
            return;
        }
        let plugin = self.plugin.as_str();
        let text = bounded(message);
        match level {
            Level::TRACE => tracing::trace!(plugin, ce.id = event, "{text}"),
            Level::DEBUG => tracing::debug!(plugin, ce.id = event, "{text}"),
            Level::INFO => tracing::info!(plugin, ce.id = event, "{text}"),
            Level::WARN => tracing::warn!(plugin, ce.id = event, "{text}"),
            Level::ERROR => tracing::error!(plugin, ce.id = event, "{text}"),
        }
    }

    /// Whether a line at `level` may be written now: one the plugin writes, or one of the host's
    /// that carries the plugin's text (a failure's reason, a topic it emitted to), which is charged
    /// to the same budget (and should be cut with [`bounded`]). `false`: the line is dropped and
    /// counted. A line the log level filters out costs nothing.
    pub fn admit(&self, level: Level) -> bool {
        let enabled = match level {
            Level::TRACE => tracing::enabled!(Level::TRACE),
            Level::DEBUG => tracing::enabled!(Level::DEBUG),
            Level::INFO => tracing::enabled!(Level::INFO),
            Level::WARN => tracing::enabled!(Level::WARN),
            Level::ERROR => tracing::enabled!(Level::ERROR),
        };
        if !enabled {
            return false;
        }
        let dropped_before = {
            let mut budget = self.budget.lock().expect("log budget lock poisoned");
            let now = Instant::now();
            let refill = now.duration_since(budget.refilled).as_secs_f64() * LINES_PER_SECOND;
            budget.tokens = (budget.tokens + refill).min(BURST_LINES);
            budget.refilled = now;
            if budget.tokens < 1.0 {
                budget.dropped += 1;
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            budget.tokens -= 1.0;
            std::mem::take(&mut budget.dropped)
        };
        if dropped_before > 0 {
            tracing::warn!(plugin = %self.plugin, dropped = dropped_before, "plugin log lines dropped (rate limit)");
        }
        true
    }
}

/// `text` as a log line may carry it: cut at [`MAX_LINE_BYTES`], with the cut said at the end.
pub fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    match cut(text) {
        (text, 0) => std::borrow::Cow::Borrowed(text),
        (text, cut) => std::borrow::Cow::Owned(format!("{text} … ({cut} bytes cut)")),
    }
}

/// `text` cut to [`MAX_LINE_BYTES`] at a character boundary, and how many bytes were cut.
fn cut(text: &str) -> (&str, usize) {
    if text.len() <= MAX_LINE_BYTES {
        return (text, 0);
    }
    let mut end = MAX_LINE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], text.len() - end)
}

/// A plugin's stdout or stderr: complete lines go to its [`PluginLog`] (stdout at info level,
/// stderr at warn), so a guest panic message lands in the host's log like any other line.
#[derive(Clone)]
pub struct Stdio {
    log: std::sync::Arc<PluginLog>,
    level: Level,
}

impl Stdio {
    /// Stdout of the plugin whose log is `log`.
    pub fn stdout(log: std::sync::Arc<PluginLog>) -> Self {
        Self { log, level: Level::INFO }
    }

    /// Stderr of the plugin whose log is `log`.
    pub fn stderr(log: std::sync::Arc<PluginLog>) -> Self {
        Self { log, level: Level::WARN }
    }
}

impl wasmtime_wasi::cli::IsTerminal for Stdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for Stdio {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter { stdio: self.clone(), pending: Vec::new(), overflow: 0 })
    }
}

/// Splits what the guest writes into lines; never blocks and never fails.
struct LineWriter {
    stdio: Stdio,
    /// The current line so far (at most [`MAX_LINE_BYTES`]).
    pending: Vec<u8>,
    /// Bytes of the current line past [`MAX_LINE_BYTES`], dropped.
    overflow: usize,
}

impl LineWriter {
    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.trim_end_matches('\r');
        if self.overflow > 0 {
            let text = format!("{line} … ({} bytes cut)", self.overflow);
            self.stdio.log.line(self.stdio.level, "", &text);
        } else {
            self.stdio.log.line(self.stdio.level, "", line);
        }
        self.pending.clear();
        self.overflow = 0;
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (text, newline) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(this.pending.len());
            this.pending.extend_from_slice(&text[..text.len().min(room)]);
            this.overflow += text.len().saturating_sub(room);
            if newline {
                this.emit();
            }
        }
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.pending.is_empty() || self.overflow > 0 {
            self.emit();
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> PluginLog {
        PluginLog::new("flood")
    }

    /// Runs `f` with logs enabled up to `level`, written nowhere.
    fn logging_at<T>(level: Level, f: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::sink).finish();
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn a_burst_past_the_budget_is_dropped_and_counted() {
        let log = log();
        logging_at(Level::TRACE, || {
            for _ in 0..(BURST_LINES as usize + 500) {
                log.line(Level::TRACE, "e", "line");
            }
        });
        let dropped = log.take_dropped();
        // A few lines come back while the loop runs; most of the 500 extra are dropped.
        assert!((400..=500).contains(&dropped), "dropped {dropped}");
        assert_eq!(log.budget.lock().unwrap().dropped, dropped, "reported with the next line that passes");
        assert_eq!(log.take_dropped(), 0, "counted once");
    }

    #[test]
    fn the_hosts_lines_with_the_plugins_text_share_its_budget() {
        let log = log();
        logging_at(Level::INFO, || {
            for _ in 0..BURST_LINES as usize {
                log.line(Level::INFO, "e", "the plugin's own line");
            }
            assert!(!log.admit(Level::INFO), "a host line carrying the plugin's text past its budget");
        });
        assert!(log.take_dropped() >= 1, "and it is counted as dropped");
        let long = "x".repeat(MAX_LINE_BYTES * 3);
        let line = bounded(&long);
        assert!(line.len() < MAX_LINE_BYTES + 40 && line.ends_with("bytes cut)"), "{}", line.len());
    }

    #[test]
    fn lines_below_the_log_level_cost_no_budget() {
        let log = log();
        logging_at(Level::INFO, || {
            for _ in 0..(BURST_LINES as usize * 3) {
                log.line(Level::DEBUG, "e", "not shown");
            }
            log.line(Level::INFO, "e", "shown");
        });
        assert_eq!(log.take_dropped(), 0, "debug lines filtered out by the level used up the budget");
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_LINE_BYTES);
        let (kept, cut_bytes) = cut(&text);
        assert!(kept.len() <= MAX_LINE_BYTES);
        assert_eq!(kept.len() + cut_bytes, text.len());
    }

    #[tokio::test]
    async fn stdout_is_split_into_capped_lines() {
        use tokio::io::AsyncWriteExt;
        let subscriber =
            tracing_subscriber::fmt().with_max_level(Level::TRACE).with_writer(std::io::sink).finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        let log = std::sync::Arc::new(log());
        let mut writer = LineWriter { stdio: Stdio::stdout(log.clone()), pending: Vec::new(), overflow: 0 };
        writer.write_all(b"first\nsecond, in ").await.unwrap();
        assert_eq!(writer.pending, b"second, in ");
        writer.write_all(b"two writes\n").await.unwrap();
        assert!(writer.pending.is_empty());
        writer.write_all(&vec![b'x'; MAX_LINE_BYTES * 3]).await.unwrap();
        assert_eq!(writer.pending.len(), MAX_LINE_BYTES, "a line never holds more than the cap");
        assert_eq!(writer.overflow, MAX_LINE_BYTES * 2);
        writer.shutdown().await.unwrap();
        assert_eq!(log.budget.lock().unwrap().tokens.round() as usize, BURST_LINES as usize - 3);
    }
}
