//! A host program without an async runtime: the blocking wrappers of the engine.
//!
//! Run from the repository root: `cargo run --release -p attune --example embed_blocking`.
//! Each call blocks the calling thread until the engine answers; the engine's actors run on
//! threads of their own.

use attune::{Action, Engine, EngineConfig, RawEvent, RecommendOptions};

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(EngineConfig {
        store: dir.path().join("store"),
        model: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/synthetic-default").into()),
        ..EngineConfig::default()
    })?
    .blocking();

    let mut last = String::from("i7");
    for step in 0..5 {
        engine.record(RawEvent {
            user: "bob".into(),
            ts: 1_700_000_000_000 + step,
            action: Action::Click { item: last.clone() },
        })?;
        let rec = engine.recommend("bob", 3, RecommendOptions::default())?;
        let items: Vec<&str> = rec.items.iter().map(|i| i.item.as_str()).collect();
        println!("after clicking {last}: {}", items.join(", "));
        // Bob follows the first recommendation.
        last = rec.items[0].item.clone();
    }
    let info = engine.session_info("bob")?;
    println!(
        "bob's session: {} steps, recent {:?}, model window {}",
        info.interactions, info.recent, info.state_len
    );
    engine.shutdown()?;
    Ok(())
}
