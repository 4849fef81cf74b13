//! Footprint of the event log: bytes on disk and resident memory per million events.
//!
//! Run with `cargo bench -p attune-benches --bench footprint [-- EVENTS]` (default
//! 2,000,000). Appends synthetic click events in batches of 10,000 to a fresh store, then
//! prints the store's size on disk and the process's RSS before and after, per million.

use std::time::Instant;

use attune::store::{Store, StoreConfig};
use attune_benches::{disk_usage, events, rss_kib};

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let users: u64 = std::env::var("FOOTPRINT_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (rss0, _) = rss_kib();
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let batch: u64 = std::env::var("FOOTPRINT_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let k = batch.min(n - done);
        store
            .append(&events(
                done,
                k as usize,
                users,
                std::env::var("FOOTPRINT_ITEMS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1_000_000),
            ))
            .expect("append");
        done += k;
    }
    let secs = start.elapsed().as_secs_f64();
    store.sync_index();
    let indexed_secs = start.elapsed().as_secs_f64();
    store.close().expect("close");
    let (rss1, peak) = rss_kib();
    let disk = disk_usage(dir.path());
    let per_m = |x: f64| x / (n as f64 / 1e6);
    println!(
        "events appended       {n} in {secs:.2} s ({:.0} events/s, batches of {batch})",
        n as f64 / secs
    );
    println!("per-user index caught up {indexed_secs:.2} s after the first append");
    println!(
        "disk                  {:.1} MiB ({:.1} MiB per million events, {:.0} bytes/event)",
        disk as f64 / 1048576.0,
        per_m(disk as f64 / 1048576.0),
        disk as f64 / n as f64
    );
    println!(
        "sled size_on_disk     {:.1} MiB",
        store.size_on_disk().unwrap_or(0) as f64 / 1048576.0
    );
    println!("rss before/after/peak {:.1} / {:.1} / {:.1} MiB ({:.1} MiB per million events, sled cache 256 MiB max)",
        rss0 as f64 / 1024.0, rss1 as f64 / 1024.0, peak as f64 / 1024.0, per_m((rss1.saturating_sub(rss0)) as f64 / 1024.0));
}
