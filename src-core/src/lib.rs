//! Attune: a real-time, adaptive recommendation engine.
//!
//! The library holds the engine's parts; the `attune` binary is a thin command line over it.
//! See `ARCHITECTURE.md` at the repository root for how the parts fit together.

pub mod baselines;
pub mod crash_test;
pub mod data;
#[cfg(feature = "service")]
pub mod demo;
pub mod engine;
pub mod error;
pub mod eval;
pub mod event;
pub mod ids;
pub mod import;
pub mod model;
pub mod os;
pub mod replay;
#[cfg(feature = "service")]
pub mod service;
pub mod simulate;
pub mod store;
pub mod supervise;
pub mod synth;
pub mod text;
pub mod wire;

pub use engine::{
    BlockingEngine, Engine, EngineConfig, Feedback, ModelInfo, RecommendOptions, Recommendation,
};
pub use error::{Error, Result};
pub use event::{Action, Event, EventKind, Impression, Item, RawEvent};

/// The former name of [`os`] (thread priorities and memory settings of the OS).
#[deprecated(since = "0.1.0", note = "renamed to attune::os")]
pub mod threads {
    pub use crate::os::*;
}

/// The former name of [`crash_test`] (the store's crash-test harness).
#[deprecated(since = "0.1.0", note = "renamed to attune::crash_test")]
pub mod durability {
    pub use crate::crash_test::*;
}
