//! The messages a session actor handles, with their handlers: recording an event,
//! recommending (and the preview that records nothing), eviction, forgetting, inspection,
//! and the injected crash.

use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Applied, SessionActor};
use crate::engine::inference::{Job, JobOutcome, Refused, Scored};
use crate::engine::learner::LearnerMsg;
use crate::engine::log::LogMsg;
use crate::engine::{LiveStrategy, RecItem, RecommendOptions, Recommendation};
use crate::error::{Error, Result};
use crate::event::{Action, Impression, ItemId, RawEvent};

/// Records an event (acknowledged once durable).
#[derive(Message)]
#[rtype(result = "Result<u64>")]
pub(crate) struct RecordEvent {
    pub event: RawEvent,
    pub request_id: Option<String>,
}

impl Handler<RecordEvent> for SessionActor {
    // Not atomic: the mailbox goes on while the event waits for its flush (a request of
    // the same user meanwhile need not wait for the disk). Acknowledgements arrive in log
    // order, and each is applied to the session (in sending order, see `answer`) before
    // its caller hears of it, so a request made after an acknowledgement sees the event.
    type Result = ResponseActFuture<Self, Result<u64>>;

    fn handle(&mut self, msg: RecordEvent, _ctx: &mut Self::Context) -> Self::Result {
        let _guard = self.guard();
        self.touch();
        let started = std::time::Instant::now();
        let kind = msg.event.action.kind();
        let value = msg.event.action.value();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .shared
            .log
            .send(LogMsg::Record(msg.event, tx, self.home))
            .is_ok();
        let request_id = msg.request_id;
        let n = self.sent;
        self.sent += 1;
        // A dropped acknowledgement means a shutdown, or a log thread that died with the
        // event in hand (applied or not: its outcome is unknown).
        let lost = {
            let sup = self.shared.store.supervisor().clone();
            move || match sup.is_failed() {
                true => Error::Unconfirmed(format!(
                    "the event's acknowledgement was lost, so it may or may not be durable: {}",
                    sup.unhealthy()
                )),
                false => Error::ShutDown,
            }
        };
        Box::pin(
            async move {
                if !sent {
                    return Err(lost());
                }
                rx.await.map_err(|_| lost())?
            }
            .into_actor(self)
            .map(move |res, act, _ctx| {
                let _guard = act.guard();
                let applied = res.as_ref().ok().map(|ack| Applied {
                    item: ack.item,
                    kind,
                    value,
                    request_id,
                });
                act.answer(n, applied);
                let ack = res?;
                let m = &act.shared.metrics;
                crate::engine::metrics::Metrics::add(&m.events, 1);
                m.record_latency.record_duration(started.elapsed());
                Ok(ack.seq)
            }),
        )
    }
}

/// Asks for a recommendation.
#[derive(Message)]
#[rtype(result = "Result<Recommendation>")]
pub(crate) struct Recommend {
    pub k: usize,
    pub context: RecommendOptions,
}

impl Handler<Recommend> for SessionActor {
    // Atomic: a user's requests run one after the other, so each finds the model state at
    // home (concurrent ones would each re-encode the whole window).
    type Result = AtomicResponse<Self, Result<Recommendation>>;

    fn handle(&mut self, msg: Recommend, _ctx: &mut Self::Context) -> Self::Result {
        let _guard = self.guard();
        self.touch();
        let started = std::time::Instant::now();
        let covers = self.interactions;
        let job = self.job(msg.k, &msg.context, None);
        let log = msg.context.log_impression;
        let answer = match self.submit(job) {
            Ok(answer) => answer,
            Err((e, state)) => {
                self.take_back(state, covers);
                return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
            }
        };
        AtomicResponse::new(Box::pin(answer.into_actor(self).map(
            move |res, act, _ctx| {
                let _guard = act.guard();
                let outcome = res?;
                act.take_back(outcome.state, covers);
                let scored = outcome.result?;
                let rec = act.finish(scored, log)?;
                let m = &act.shared.metrics;
                crate::engine::metrics::Metrics::add(&m.recommendations, 1);
                m.recommend_latency.record_duration(started.elapsed());
                Ok(rec)
            },
        )))
    }
}

/// Ranks a slate under another strategy (a draft, a past version) or the one in force,
/// as [`Recommend`] would, but records nothing: no impression, nothing for the learner, no
/// counter, and the session's state stays as it was. Answers the history it ranked for
/// too (store item ids, oldest first).
#[derive(Message)]
#[rtype(result = "Result<(Recommendation, Vec<ItemId>)>")]
pub(crate) struct Preview {
    pub k: usize,
    pub live: Arc<LiveStrategy>,
}

impl Handler<Preview> for SessionActor {
    type Result = AtomicResponse<Self, Result<(Recommendation, Vec<ItemId>)>>;

    fn handle(&mut self, msg: Preview, _ctx: &mut Self::Context) -> Self::Result {
        let _guard = self.guard();
        let job = self.job(msg.k, &RecommendOptions::default(), Some(msg.live));
        let history = job.history.clone();
        let answer = match self.submit(job) {
            Ok(answer) => answer,
            Err((e, _)) => return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e)))),
        };
        AtomicResponse::new(Box::pin(answer.into_actor(self).map(
            move |res, act, _ctx| {
                let scored = res?.result?;
                Ok((act.named(&scored, "preview".into()), history))
            },
        )))
    }
}

impl SessionActor {
    /// Queues a scoring job; the future answers with its outcome. A refused job hands
    /// back the state it carried.
    fn submit(
        &self,
        job: Job,
    ) -> std::result::Result<impl std::future::Future<Output = Result<JobOutcome>> + 'static, Refused>
    {
        let rx = match self.shared.batcher() {
            Some(b) => b.submit(job)?,
            None => return Err((Error::ShutDown, job.state)),
        };
        Ok(async move {
            rx.await.map_err(|_| {
                Error::Unavailable("the compute thread running the request died".into())
            })
        })
    }

    /// Names the items, logs the impression and tells the learner what was shown.
    fn finish(&mut self, scored: Scored, log: bool) -> Result<Recommendation> {
        let request_id = self.shared.next_request_id();
        let rec = self.named(&scored, request_id.clone());
        if log && !rec.items.is_empty() {
            let ev = RawEvent {
                user: self.name.to_string(),
                ts: crate::store::now_ms(),
                action: Action::Impression(Impression {
                    request_id: request_id.clone(),
                    items: rec.items.iter().map(|i| i.item.clone()).collect(),
                    scores: rec.items.iter().map(|i| i.score).collect(),
                    strategy_version: scored.strategy_version,
                }),
            };
            // Impressions are logged without waiting for the flush: the next one makes
            // them durable, and the answer does not wait for the disk.
            let _ = self.shared.log.send(LogMsg::Impression(ev));
        }
        self.shared.learn(LearnerMsg::Impression {
            user: Arc::clone(&self.name),
            request_id,
            items: scored.items.iter().map(|s| (s.item, s.features)).collect(),
        });
        Ok(rec)
    }

    /// The answer for a ranked slate: the items by name.
    fn named(&self, scored: &Scored, request_id: String) -> Recommendation {
        let catalog = self
            .shared
            .catalog_for(scored.items.iter().map(|i| i.item).max());
        let items: Vec<RecItem> = scored
            .items
            .iter()
            .map(|s| RecItem {
                item: catalog.name(s.item).to_string(),
                score: s.score,
                breakdown: crate::engine::strategy::SourceWeights::from_array(s.features),
                explored: s.explored,
            })
            .collect();
        Recommendation {
            request_id,
            user: self.name.to_string(),
            items,
            strategy_version: scored.strategy_version,
            weights: crate::engine::strategy::SourceWeights::from_array(scored.weights),
            model_version: scored.model_version,
            fallback: scored.fallback.map(str::to_owned),
        }
    }
}

/// Persists the session and stops the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Evict;

impl Handler<Evict> for SessionActor {
    type Result = ();

    fn handle(&mut self, _msg: Evict, ctx: &mut Self::Context) {
        self.persist();
        crate::engine::metrics::Metrics::add(&self.shared.metrics.sessions_evicted, 1);
        ctx.stop();
    }
}

/// Stops the actor without persisting anything (the user is being forgotten).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Forget;

impl Handler<Forget> for SessionActor {
    type Result = ();

    fn handle(&mut self, _msg: Forget, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// What `Engine::session` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Session)]
pub struct SessionInfo {
    /// The user.
    pub user: String,
    /// Steps of the user's sequence known (consecutive interactions with one item count
    /// once).
    pub interactions: u64,
    /// Most recent interactions, oldest first (at most 50).
    pub recent: Vec<String>,
    /// Whether a model state is cached (false while a request holds it).
    pub has_state: bool,
    /// Items in the model window.
    pub state_len: usize,
    /// Estimated bytes held.
    pub bytes: u64,
}

/// Reports the session.
#[derive(Message)]
#[rtype(result = "SessionInfo")]
pub(crate) struct Inspect;

impl Handler<Inspect> for SessionActor {
    type Result = MessageResult<Inspect>;

    fn handle(&mut self, _msg: Inspect, _ctx: &mut Self::Context) -> Self::Result {
        let _guard = self.guard();
        self.touch();
        let recent: Vec<ItemId> = self.history.iter().rev().take(50).rev().copied().collect();
        let catalog = self.shared.catalog_for(recent.iter().copied().max());
        MessageResult(SessionInfo {
            user: self.name.to_string(),
            interactions: self.interactions,
            recent: recent
                .iter()
                .map(|&i| catalog.name(i).to_string())
                .collect(),
            has_state: self.state.is_some(),
            state_len: self.state.as_ref().map_or(0, |(s, _)| s.len()),
            bytes: self.bytes,
        })
    }
}

/// Makes the actor panic (fault injection for the supervision tests; not in a build
/// that is not a test).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Crash;

#[cfg(test)]
impl Handler<Crash> for SessionActor {
    type Result = ();

    fn handle(&mut self, _msg: Crash, _ctx: &mut Self::Context) {
        let _guard = self.guard();
        panic!("injected crash of the session of {}", self.name);
    }
}
