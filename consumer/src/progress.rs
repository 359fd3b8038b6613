//! Progress of a long command (`poll`, `compact`, `replay`): a live line on a terminal, a log line
//! every few seconds otherwise, and nothing at all where nobody watches (the Lambda, the tests).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a log line reports progress when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Counts work done and shows it.
#[derive(Debug)]
pub struct Progress {
    unit: &'static str,
    bar: Option<ProgressBar>,
    /// When the last log line was written; `None`: no log lines.
    last_log: Option<Mutex<Instant>>,
    started: Instant,
    done: AtomicU64,
}

impl Default for Progress {
    /// Shows nothing.
    fn default() -> Self {
        Self {
            unit: "",
            bar: None,
            last_log: None,
            started: Instant::now(),
            done: AtomicU64::new(0),
        }
    }
}

impl Progress {
    /// Progress in `unit`s (`records`, `days`): a bar on a terminal, log lines otherwise.
    pub fn new(unit: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} {{elapsed_precise}} {{human_pos}}{{len_part}} {unit} ({{per_sec}}) {{msg}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let last_log = bar.is_none().then(|| Mutex::new(Instant::now()));
        Self {
            unit,
            bar,
            last_log,
            ..Self::default()
        }
    }

    /// How many units the whole run has, once it is known.
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{bar:30}} {{elapsed_precise}} {{human_pos}}/{{human_len}} {} ({{per_sec}}, \
                     {{eta}} left) {{msg}}",
                    self.unit
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
    }

    /// `n` more units done; `message` says where the run is.
    pub fn advance(&self, n: u64, message: impl FnOnce() -> String) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(message());
        } else if let Some(last_log) = &self.last_log {
            let mut last_log = last_log.lock().unwrap_or_else(|e| e.into_inner());
            if last_log.elapsed() >= LOG_EVERY {
                *last_log = Instant::now();
                let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                tracing::info!(
                    done,
                    unit = self.unit,
                    per_s = rate.round(),
                    "{}",
                    message()
                );
            }
        }
    }

    /// Clears the bar (the command prints its summary next).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
