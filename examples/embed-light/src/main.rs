//! The lightest host program: the engine embedded with `default-features = false`, so its
//! build holds none of the command line's, the HTTP service's or the report's dependencies.
//!
//! `cargo run --release -p attune-embed-light [STORE_DIR]`: records a few clicks for one
//! user and prints what the engine recommends after each (the shipped checkpoint's world).

use attune::{Action, Engine, EngineConfig, RawEvent, RecommendOptions};

fn main() -> Result<(), attune::Error> {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let scratch = std::env::temp_dir().join(format!("attune-embed-light-{}", std::process::id()));
    let store = dir.clone().unwrap_or_else(|| scratch.clone());
    let engine = Engine::open(EngineConfig {
        store,
        model: Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../models/synthetic-default"
            )
            .into(),
        ),
        ..EngineConfig::default()
    })?
    .blocking();
    let mut last = String::from("i3");
    for step in 0..3 {
        engine.record(RawEvent {
            user: "carol".into(),
            ts: 1_700_000_000_000 + step,
            action: Action::Click { item: last.clone() },
        })?;
        let rec = engine.recommend("carol", 3, RecommendOptions::default())?;
        let items: Vec<&str> = rec.items.iter().map(|i| i.item.as_str()).collect();
        println!("after {last}: {}", items.join(", "));
        last = rec.items[0].item.clone();
    }
    engine.shutdown()?;
    if dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}
