//! Behaviour of the engine's actors: batching, overload, ordering, supervision, live
//! strategies, hot swaps, eviction and restore.
//!
//! This file holds the fixture and helpers the behaviours share; each file below tests
//! one behaviour.

mod batching;
mod eviction;
mod forgetting;
mod host;
mod ordering;
mod strategies;
mod supervision;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::strategy::{Batching, Learning, SourceWeights, Strategy};
use super::*;
use crate::event::{Action, RawEvent};
use crate::synth::{Generator, SynthConfig};

fn checkpoint() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/synthetic-default")
}

/// A store holding the catalogue and the first `users` users of the default synthetic
/// data (the world the shipped checkpoint was trained on).
fn fixture(users: usize) -> (tempfile::TempDir, EngineConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let store = Store::open(&path, StoreConfig::default()).expect("store");
        let gen = Generator::new(SynthConfig::default()).expect("generator");
        store
            .put_items(&gen.items().collect::<Vec<_>>())
            .expect("items");
        let events: Vec<RawEvent> = (0..users).flat_map(|u| gen.user_events(u)).collect();
        store.append(&events).expect("append");
        store.close().expect("close");
    }
    let config = EngineConfig {
        store: path,
        model: Some(checkpoint()),
        strategy: Strategy {
            learning: Learning {
                adaptive: false,
                ..Learning::default()
            },
            ..Strategy::default()
        },
        ..EngineConfig::default()
    };
    (dir, config)
}

fn click(user: &str, item: &str) -> RawEvent {
    RawEvent {
        user: user.into(),
        ts: crate::store::now_ms(),
        action: Action::Click { item: item.into() },
    }
}

fn quiet() -> RecommendOptions {
    RecommendOptions {
        log_impression: false,
        ..RecommendOptions::default()
    }
}

/// Awaits every future concurrently (spawned on the current actix arbiter).
async fn futures_join_all<F, T>(futs: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    let handles: Vec<_> = futs.into_iter().map(actix::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
