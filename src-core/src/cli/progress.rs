//! Progress bars for long command-line work (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

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
