//! Shared helpers for the criterion benches and the measurement binaries: synthetic event
//! batches, the shared data sets, and process memory readings.

use std::path::{Path, PathBuf};

use attune::event::{Action, Event, RawEvent};
use attune::model::{checkpoint, fresh, Config};

/// The value of the environment variable `name`, or `default` when it is not set; a value
/// that does not parse stops the run with exit status 2 (a typo must not measure the
/// default instead).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a valid value");
            std::process::exit(2)
        }),
    }
}

/// A random-weight attention checkpoint over `i0..i{items-1}` (d 64, 2 layers, max_len
/// 200) in `dir/model`: the cost of an ml-1m-sized model without training one.
pub fn random_checkpoint(dir: &Path, items: usize) -> PathBuf {
    let out = dir.join("model");
    let cfg = Config {
        n_items: items,
        max_len: 200,
        ..Config::default()
    };
    let (varmap, _) = fresh(&cfg, &candle_core::Device::Cpu, 1).expect("model");
    let names: Vec<String> = (0..items).map(|i| format!("i{i}")).collect();
    checkpoint::save(&out, &varmap, &cfg, &names).expect("save");
    out
}

/// `n` click events of `users` users over `items` items, starting at counter `start`.
pub fn events(start: u64, n: usize, users: u64, items: u64) -> Vec<RawEvent> {
    (start..start + n as u64)
        .map(|c| Event {
            user: format!("u{}", c % users),
            ts: c as i64,
            action: Action::Click {
                item: format!("i{}", (c * 7919) % items),
            },
        })
        .collect()
}

/// A file under `../shared/data`, if present.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    p.exists().then_some(p)
}

/// Resident set size and its peak, in KiB, from `/proc/self/status` (Linux).
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes used by the files under `dir` (allocated blocks, as `du` counts them).
pub fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}
