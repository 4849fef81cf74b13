//! Throughput of the text encoder (all-MiniLM-L6-v2 on the CPU): items per second at
//! batch sizes 1, 32 and 128 over real item texts, the process's RSS, and the time to
//! embed a whole catalogue (the ml-1m movies when `../shared/data` is there, else the
//! synthetic catalogue).
//!
//! Run with `cargo bench -p attune-benches --bench encoder [-- ENCODER_DIR]` (default
//! `models/minilm-l6`, fetched by `scripts/fetch-encoder.sh`).

use std::path::PathBuf;
use std::time::Instant;

use attune::import::{self, Format, ImportOptions};
use attune::text::{embed_items, encoder::DEFAULT_BATCH, Encoder, TextFields};
use attune::Item;
use attune_benches::{rss_kib, shared_data};

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/minilm-l6"));
    let (rss0, _) = rss_kib();
    let t = Instant::now();
    let encoder = match Encoder::load(&dir, &candle_core::Device::Cpu) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("encoder bench: {e}");
            std::process::exit(1);
        }
    };
    let (rss1, _) = rss_kib();
    println!(
        "loaded {} in {:.2} s; RSS {} -> {} MiB",
        encoder.id(),
        t.elapsed().as_secs_f64(),
        rss0 / 1024,
        rss1 / 1024
    );
    let (name, items) = catalogue();
    let fields = TextFields::default();
    let texts: Vec<String> = items.iter().map(|i| fields.text_of(i)).collect();
    let mean_len = texts.iter().map(String::len).sum::<usize>() as f64 / texts.len() as f64;
    println!(
        "{name}: {} items, mean text {mean_len:.0} bytes",
        items.len()
    );
    for batch in [1usize, 32, 128] {
        // The same 512 texts (in catalogue order, as items arrive) at each batch size.
        let sample: Vec<&str> = texts.iter().take(512).map(String::as_str).collect();
        let t = Instant::now();
        encoder.encode_batched(&sample, batch).expect("encodes");
        let secs = t.elapsed().as_secs_f64();
        let (rss, peak) = rss_kib();
        println!(
            "batch {batch:>3}: {:>6.0} items/s ({:.2} ms per item); RSS {} MiB, peak {} MiB",
            sample.len() as f64 / secs,
            1000.0 * secs / sample.len() as f64,
            rss / 1024,
            peak / 1024
        );
    }
    let t = Instant::now();
    let table =
        embed_items(&encoder, &items, &fields, DEFAULT_BATCH, &mut |_, _| {}).expect("embeds");
    let secs = t.elapsed().as_secs_f64();
    let (_, peak) = rss_kib();
    println!(
        "whole catalogue ({name}, sorted by length, batches of {DEFAULT_BATCH}): {} items in {secs:.1} s ({:.0} items/s); peak RSS {} MiB",
        table.count(),
        table.count() as f64 / secs,
        peak / 1024
    );
}

/// The ml-1m movies, or the synthetic catalogue.
fn catalogue() -> (String, Vec<Item>) {
    if let Some(p) = shared_data("ml-1m/movies.dat") {
        let parsed = import::parse_file(
            &p,
            Format::Movielens,
            &ImportOptions::default(),
            &mut |_, _| {},
        )
        .expect("movies.dat parses");
        return ("ml-1m movies.dat".into(), parsed.parsed.items);
    }
    let gen = attune::synth::Generator::new(attune::synth::SynthConfig::default()).expect("gen");
    ("synthetic".into(), gen.items().collect())
}
