//! The answers on their way back to the sessions: a job's outcome (its ranking and the
//! session's model state), a recorded event's acknowledgement, and each arbiter's reply
//! box that takes a whole batch's or flush's answers for its sessions in one message. The
//! compute threads (`inference`) and the log writer (`log`) both deliver through here, so
//! neither needs the other.

use super::strategy::N_SOURCES;
use crate::error::Result;
use crate::event::ItemId;
use crate::model::SessionState;

/// What a recorded event's acknowledgement carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ack {
    /// Sequence number in the log.
    pub seq: u64,
    /// The event's item, interned.
    pub item: Option<ItemId>,
}

pub(crate) type AckSender = tokio::sync::oneshot::Sender<Result<Ack>>;

/// What a job gives back: the ranking, and the session's model state to keep.
#[derive(Debug)]
pub(crate) struct JobOutcome {
    pub result: Result<Scored>,
    pub state: Option<Box<SessionState>>,
}

/// One recommended item, in store ids.
#[derive(Debug, Clone)]
pub(crate) struct ScoredItem {
    pub item: ItemId,
    pub score: f32,
    pub features: [f32; N_SOURCES],
    pub explored: bool,
}

/// A ranking and what produced it.
#[derive(Debug, Clone)]
pub(crate) struct Scored {
    pub items: Vec<ScoredItem>,
    pub strategy_version: u64,
    pub weights: [f32; N_SOURCES],
    pub model_version: u64,
    pub fallback: Option<&'static str>,
}

/// A job's answer on its way to the session's arbiter.
pub(crate) type Reply = (tokio::sync::oneshot::Sender<JobOutcome>, JobOutcome);

/// Answers handed to an arbiter in one message: a batch's recommendations, or a flush's
/// acknowledgements of recorded events.
pub(crate) enum Delivery {
    Jobs(Vec<Reply>),
    Acks(Vec<(AckSender, Result<Ack>)>),
}

/// Where answers for one arbiter's sessions are handed over.
pub(crate) type ReplySender = tokio::sync::mpsc::UnboundedSender<Delivery>;

impl Delivery {
    /// Completes every answer (the sessions may have gone away; then nobody waits).
    fn complete(self) {
        match self {
            Delivery::Jobs(v) => {
                for (reply, outcome) in v {
                    let _ = reply.send(outcome);
                }
            }
            Delivery::Acks(v) => {
                for (reply, ack) in v {
                    let _ = reply.send(ack);
                }
            }
        }
    }
}

/// Starts, on `arbiter`, the task that completes the answers handed to it, and returns
/// its sender.
///
/// A compute thread that completed each request's oneshot itself woke the arbiter once
/// per request (a write to its event fd, and often an inter-processor interrupt): about
/// a twelfth of the compute threads' time at 20,000 requests a second; the log's
/// acknowledgements did the same per recorded event. Handing a whole batch's answers for
/// an arbiter over in one message wakes it once; the oneshots are then completed on the
/// arbiter's own thread, which wakes the sessions' futures without a system call.
pub(crate) fn reply_box(arbiter: &actix::ArbiterHandle) -> ReplySender {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Delivery>();
    arbiter.spawn(async move {
        while let Some(delivery) = rx.recv().await {
            delivery.complete();
        }
    });
    tx
}

/// Hands each answer to the arbiter of its index (its session's home), one message per
/// arbiter made by `wrap`. An answer whose arbiter does not exist, or is gone (shutdown),
/// is completed here.
pub(crate) fn deliver_by_home<T>(
    replies: &[ReplySender],
    answers: impl IntoIterator<Item = (usize, T)>,
    wrap: impl Fn(Vec<T>) -> Delivery,
) {
    let mut homes: Vec<Vec<T>> = replies.iter().map(|_| Vec::new()).collect();
    for (home, answer) in answers {
        match homes.get_mut(home) {
            Some(h) => h.push(answer),
            None => wrap(vec![answer]).complete(),
        }
    }
    for (to, answers) in replies.iter().zip(homes) {
        if answers.is_empty() {
            continue;
        }
        if let Err(e) = to.send(wrap(answers)) {
            e.0.complete();
        }
    }
}
