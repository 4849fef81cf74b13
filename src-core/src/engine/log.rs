//! The log writer: every event the engine writes (recorded events and impressions) goes
//! through one thread that appends whatever has queued up as a single batch, so a thousand
//! concurrent sessions cost one sled batch and share one flush instead of a thousand.
//! A second thread waits for each batch's flush and acknowledges its recorded events;
//! meanwhile the writer is already applying the next batch (group commit, pipelined).
//! Impressions are applied in the same batches but nobody waits for them.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::reply::{deliver_by_home, Ack, AckSender, Delivery, ReplySender};
use crate::error::Result;
use crate::event::{ItemId, RawEvent};
use crate::os::BackgroundPriority;
use crate::store::{PendingAppend, Store};
use crate::supervise::{checkpoint, Restart, Supervised};

/// Most events applied as one batch.
const MAX_BATCH: usize = 4096;

/// Shortest time between the starts of two batches while messages come from several
/// senders at once. Under such a stream the writer waits out the rest of this to gather a
/// batch instead of waking for almost every message: at 25,000 events a second it woke
/// for batches of two or three, each with a fixed cost in sled and a flush of its own (at
/// 2 ms, as the store's `min_flush_interval`, this writer's flushes are paced too).
const MIN_BATCH_INTERVAL: Duration = Duration::from_millis(2);

/// A batch of more messages than this starts the pacing (on a durable store only: a
/// scratch store has no flushes to share, and pacing its writer only made a replay wait
/// 2 ms a round, 108 s instead of 49 for the ml-1m subset). One caller that waits for each
/// answer sends at most two at a time (a recommendation's impression, then an event), so
/// it is never held back (paced from two, a 40,000-step simulation took 48 s instead of
/// 18).
const BUSY_BATCH: usize = 2;

pub(crate) enum LogMsg {
    /// An event to make durable; the sender gets its sequence number once it is, delivered
    /// on the arbiter of the given index (the session's, see `reply::reply_box`).
    Record(RawEvent, AckSender, usize),
    /// An impression: logged, not waited for.
    Impression(RawEvent),
    /// Answers once everything sent before is applied to the store (not yet flushed).
    Barrier(tokio::sync::oneshot::Sender<()>),
    /// Finish what came before, then stop both threads.
    Stop,
}

/// The writer's and the acknowledger's threads.
pub(crate) struct LogWriter {
    pub tx: Sender<LogMsg>,
    threads: Vec<Supervised>,
}

enum Applied {
    Batch {
        pending: PendingAppend,
        acks: Vec<PendingAck>,
    },
    Stop,
}

impl LogWriter {
    /// Starts both threads; acknowledgements go out through `replies` (one per arbiter).
    pub fn start(store: Store, replies: Vec<ReplySender>) -> Result<LogWriter> {
        let (tx, rx) = crossbeam_channel::unbounded::<LogMsg>();
        let (atx, arx) = crossbeam_channel::unbounded::<Applied>();
        let sup = store.supervisor().clone();
        // Both on the request path: normal priority, and a death is a fault (what they
        // held is dropped; its callers hear that the engine is unhealthy).
        let writer = sup.spawn(
            "attune-log-writer",
            BackgroundPriority::Normal,
            Restart::Never,
            move || {
                let pace = store.is_durable();
                write_loop(&store, &rx, &atx, pace);
                Ok(())
            },
        )?;
        let acker = sup.spawn(
            "attune-log-acks",
            BackgroundPriority::Normal,
            Restart::Never,
            move || {
                ack_loop(&arx, &replies);
                Ok(())
            },
        )?;
        Ok(LogWriter {
            tx,
            threads: vec![writer, acker],
        })
    }

    /// Stops after everything queued before is written and acknowledged.
    pub fn stop(self) {
        let _ = self.tx.send(LogMsg::Stop);
        for t in self.threads {
            t.join();
        }
    }
}

fn write_loop(store: &Store, rx: &Receiver<LogMsg>, acks: &Sender<Applied>, pace: bool) {
    let mut stopping = false;
    // When the last batch started, if it held more than `BUSY_BATCH` messages.
    let mut busy_since: Option<Instant> = None;
    while !stopping {
        // While busy, sleep out the interval first and then take what came: waiting in
        // `recv` on an empty channel would spin on `sched_yield` (6,000 calls a second
        // at 25,000 events a second, each a chance to switch a request thread out) only
        // to sleep afterwards anyway.
        if let Some(t) = busy_since {
            std::thread::sleep((t + MIN_BATCH_INTERVAL).saturating_duration_since(Instant::now()));
        }
        let first = match rx.try_recv() {
            Ok(m) => m,
            Err(crossbeam_channel::TryRecvError::Empty) => match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
        };
        checkpoint();
        let started = Instant::now();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        busy_since = (pace && batch.len() > BUSY_BATCH).then_some(started);
        let mut events = Vec::with_capacity(batch.len());
        let mut senders = Vec::new();
        let mut barriers = Vec::new();
        for m in batch {
            match m {
                LogMsg::Record(ev, tx, home) => {
                    senders.push((events.len(), tx, home));
                    events.push(ev);
                }
                LogMsg::Impression(ev) => events.push(ev),
                LogMsg::Barrier(tx) => barriers.push(tx),
                LogMsg::Stop => stopping = true,
            }
        }
        if !events.is_empty() {
            apply(store, events, senders, acks);
        }
        // Barriers came after the events in their batch: those are applied now.
        for tx in barriers {
            let _ = tx.send(());
        }
    }
    let _ = acks.send(Applied::Stop);
}

/// Applies one batch of events and hands their acknowledgements to the ack thread.
fn apply(
    store: &Store,
    events: Vec<RawEvent>,
    senders: Vec<(usize, AckSender, usize)>,
    acks: &Sender<Applied>,
) {
    match store.append_nowait(&events) {
        Ok(pending) => {
            let acks_batch = senders
                .into_iter()
                .map(|(i, tx, home)| {
                    let item = events[i].action.item().and_then(|n| store.item_id(n));
                    (i, item, tx, home)
                })
                .collect();
            let _ = acks.send(Applied::Batch {
                pending,
                acks: acks_batch,
            });
        }
        Err(e) if events.len() > 1 && !e.is_store_wide() => {
            // One bad event must not fail its neighbours: write them one by one.
            let mut senders = senders.into_iter().peekable();
            for (i, ev) in events.iter().enumerate() {
                let tx = match senders.peek() {
                    Some((j, _, _)) if *j == i => senders.next().map(|(_, tx, home)| (tx, home)),
                    _ => None,
                };
                match (store.append_nowait(std::slice::from_ref(ev)), tx) {
                    (Ok(pending), Some((tx, home))) => {
                        let item = ev.action.item().and_then(|n| store.item_id(n));
                        let _ = acks.send(Applied::Batch {
                            pending,
                            acks: vec![(0, item, tx, home)],
                        });
                    }
                    (Ok(pending), None) => drop(pending),
                    (Err(e), Some((tx, _))) => {
                        let _ = tx.send(Err(e));
                    }
                    (Err(e), None) => {
                        tracing::warn!(error = %e, "could not log an impression")
                    }
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for (_, tx, _) in senders {
                let _ = tx.send(Err(e.shared_copy()));
            }
            if let Some(ev) = events.first() {
                tracing::warn!(error = %msg, user = %ev.user, "could not log an event");
            }
        }
    }
}

/// A recorded event waiting for its flush: its index in the batch, its item, who waits and
/// on which arbiter.
type PendingAck = (usize, Option<ItemId>, AckSender, usize);

/// Waits for each batch's flush and hands its acknowledgements to the arbiters, one
/// message per arbiter per batch (each would otherwise wake its arbiter by itself).
fn ack_loop(rx: &Receiver<Applied>, replies: &[ReplySender]) {
    while let Ok(Applied::Batch { pending, acks }) = rx.recv() {
        checkpoint();
        let first = pending.range().start;
        let outcome = pending.wait();
        let answers = acks.into_iter().map(|(i, item, tx, home)| {
            let ack = match &outcome {
                Ok(_) => Ok(Ack {
                    seq: first + i as u64,
                    item,
                }),
                Err(e) => Err(e.shared_copy()),
            };
            (home, (tx, ack))
        });
        deliver_by_home(replies, answers, Delivery::Acks);
    }
}
