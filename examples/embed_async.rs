//! A host program that embeds Attune in its own async runtime.
//!
//! Run from the repository root: `cargo run --release -p attune --example embed_async`.
//! It opens an engine over a scratch store with the shipped synthetic checkpoint, records
//! a few clicks of a user, asks for recommendations (the last click shows at once), sends
//! feedback on one, and shuts the engine down cleanly.

use attune::engine::strategy::Strategy;
use attune::{Action, Engine, EngineConfig, EventKind, Feedback, RawEvent, RecommendOptions};

fn click(user: &str, item: &str) -> RawEvent {
    RawEvent {
        user: user.into(),
        ts: 1_700_000_000_000,
        action: Action::Click { item: item.into() },
    }
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(EngineConfig {
        store: dir.path().join("store"),
        model: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/synthetic-default").into()),
        strategy: Strategy::default(),
        ..EngineConfig::default()
    })?;

    for item in ["i17", "i42", "i42", "i103"] {
        let seq = engine.record(click("alice", item)).await?;
        println!("recorded alice → {item} (log sequence {seq})");
    }
    let rec = engine
        .recommend("alice", 5, RecommendOptions::default())
        .await?;
    println!(
        "request {} (strategy v{}, model v{}):",
        rec.request_id, rec.strategy_version, rec.model_version
    );
    for (rank, it) in rec.items.iter().enumerate() {
        let b = &it.breakdown;
        println!(
            "  {}. {:<6} score {:.3}  seq {:.2} itemknn {:.2} markov {:.2} pop {:.2}",
            rank + 1,
            it.item,
            it.score,
            b.seq,
            b.itemknn,
            b.markov,
            b.pop
        );
    }
    if let Some(first) = rec.items.first() {
        engine
            .feedback(Feedback {
                user: "alice".into(),
                item: first.item.clone(),
                kind: EventKind::Purchase,
                value: Some(19.99),
                request_id: Some(rec.request_id.clone()),
                ts: None,
            })
            .await?;
        println!("alice bought {}", first.item);
    }
    let m = engine.metrics();
    println!(
        "{} recommendations, {} events, recommend p50 {:.0} µs",
        m.recommendations, m.events, m.recommend_latency_us.p50
    );
    engine.shutdown().await?;
    Ok(())
}
