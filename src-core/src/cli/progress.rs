//! Progress bars for long command-line work. Where stderr is not a terminal (a log, CI,
//! a pipe) the bar is hidden and [`Steps`] prints a plain line at each tenth instead.

use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// A counting bar that, when hidden, prints `MSG: 40% (N of TOTAL)` lines on stderr at
/// each tenth of the work, so a job run from a script still shows that it advances.
pub struct Steps {
    bar: ProgressBar,
    msg: String,
    total: u64,
    /// The last tenth printed.
    tenth: AtomicU64,
}

impl Steps {
    pub fn new(total: u64, msg: &str) -> Steps {
        Steps {
            bar: count(total, msg),
            msg: msg.to_string(),
            total,
            tenth: AtomicU64::new(0),
        }
    }

    pub fn set_position(&self, done: u64) {
        self.bar.set_position(done);
        if !self.bar.is_hidden() || self.total == 0 {
            return;
        }
        let tenth = (done.min(self.total) * 10 / self.total).min(10);
        if tenth > self.tenth.fetch_max(tenth, Ordering::Relaxed) {
            eprintln!("{}: {}% ({done} of {})", self.msg, tenth * 10, self.total);
        }
    }

    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// A bar counting bytes, with the rate.
pub fn bytes(total: u64, msg: impl Into<String>) -> ProgressBar {
    bar(
        total,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        msg,
    )
}

/// A bar counting things (events, users), with the rate.
pub fn count(total: u64, msg: impl Into<String>) -> ProgressBar {
    bar(
        total,
        "{msg} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
        msg,
    )
}

fn bar(total: u64, template: &str, msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg.into());
    pb
}
