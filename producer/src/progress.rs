//! Progress of a long run: a live bar on a terminal, a log line every few seconds otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    /// A bar when stderr is a terminal, periodic log lines otherwise.
    pub fn new(enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} {human_pos} rows ({per_sec}) {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            started: now,
            last_log: now,
        }
    }

    /// `rows` read by `now`.
    pub fn update(&mut self, now: Instant, rows: u64, message: impl FnOnce() -> String) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(rows);
                if rows.is_multiple_of(4096) {
                    bar.set_message(message());
                }
            }
            None => {
                if now.saturating_duration_since(self.last_log) >= LOG_EVERY {
                    self.last_log = now;
                    let elapsed = now.saturating_duration_since(self.started);
                    let rate = rows as f64 / elapsed.as_secs_f64().max(1e-9);
                    tracing::info!(rows, rows_per_s = rate.round(), "{}", message());
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
