//! [`BlockingEngine`]: the engine's calls for hosts without an async runtime.

use super::*;

/// [`Engine`] for hosts without an async runtime: each call blocks until done.
#[derive(Debug, Clone)]
pub struct BlockingEngine(pub(super) Engine);

impl BlockingEngine {
    /// See [`Engine::record`].
    pub fn record(&self, event: RawEvent) -> Result<u64> {
        futures_executor::block_on(self.0.record(event))
    }

    /// See [`Engine::recommend`].
    pub fn recommend(
        &self,
        user: &str,
        k: usize,
        context: RecommendOptions,
    ) -> Result<Recommendation> {
        futures_executor::block_on(self.0.recommend(user, k, context))
    }

    /// See [`Engine::feedback`].
    pub fn feedback(&self, feedback: Feedback) -> Result<u64> {
        futures_executor::block_on(self.0.feedback(feedback))
    }

    /// See [`Engine::session_info`].
    pub fn session_info(&self, user: &str) -> Result<SessionInfo> {
        futures_executor::block_on(self.0.session_info(user))
    }

    /// See [`Engine::strategy`].
    pub fn strategy(&self) -> StrategyView {
        self.0.strategy()
    }

    /// See [`Engine::set_strategy`].
    pub fn set_strategy(&self, strategy: Strategy) -> Result<StrategyVersion> {
        self.0.set_strategy(strategy)
    }

    /// See [`Engine::metrics`].
    pub fn metrics(&self) -> MetricsSnapshot {
        self.0.metrics()
    }

    /// See [`Engine::shutdown`].
    pub fn shutdown(&self) -> Result<()> {
        futures_executor::block_on(self.0.shutdown())
    }

    /// The async engine behind this wrapper.
    pub fn engine(&self) -> &Engine {
        &self.0
    }
}
