//! Progress of a replay command: a bar with rate and ETA on a terminal (`indicatif`), plain
//! periodic lines otherwise (logs, CI, a test's pipe), and one summary line at the end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the plain (non-terminal) output prints a line.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// One command's progress, on stderr.
pub struct Progress {
    what: &'static str,
    /// The terminal's bar; `None` when stderr is not a terminal.
    bar: Option<ProgressBar>,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Starts counting `what` (e.g. "users queued"), out of `total` when known.
    pub fn new(what: &'static str, total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            let template = if total.is_some() {
                "{msg} [{bar:40}] {pos}/{len} {per_sec} ETA {eta}"
            } else {
                "{msg} {spinner} {pos} {per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            what,
            bar,
            total,
            done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// Sets the count (it may start above 0 when a job resumes).
    pub fn set(&mut self, done: u64) {
        self.done = done;
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.last_line.elapsed() >= PLAIN_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    /// Adds `n` to the count.
    pub fn inc(&mut self, n: u64) {
        self.set(self.done + n);
    }

    /// A plain line: count, total, rate, ETA.
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        match self.total {
            Some(total) => {
                let left = total.saturating_sub(self.done) as f64;
                let eta = if rate > 0.0 {
                    format!("{:.0}s", left / rate)
                } else {
                    "?".into()
                };
                format!(
                    "{}: {}/{total} ({rate:.0}/s, ETA {eta})",
                    self.what, self.done
                )
            }
            None => format!("{}: {} ({rate:.0}/s)", self.what, self.done),
        }
    }

    /// Clears the bar and prints a final line for this phase.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{}", self.line());
    }

    /// Prints a message without breaking the bar.
    pub fn println(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
}
