//! Attune: a real-time, adaptive recommendation engine.
//!
//! The library holds the engine's parts; the `attune` binary is a thin command line over it.
//! See `ARCHITECTURE.md` at the repository root for how the parts fit together.

pub mod baselines;
pub mod data;
#[cfg(feature = "service")]
pub mod demo;
pub mod durability;
pub mod engine;
pub mod error;
pub mod eval;
pub mod event;
pub mod ids;
pub mod import;
pub mod model;
pub mod replay;
#[cfg(feature = "service")]
pub mod service;
pub mod simulate;
pub mod store;
pub mod synth;
pub mod threads;
pub mod wire;

pub use engine::{
    BlockingEngine, Context, Engine, EngineConfig, Feedback, ModelInfo, Recommendation,
};
pub use error::{Error, Result};
pub use event::{Action, Event, EventKind, Impression, Item, RawEvent};
