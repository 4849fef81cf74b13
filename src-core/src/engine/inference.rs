//! The inference actor and its dynamic batcher.
//!
//! The [`InferenceActor`] owns a bounded crossbeam queue and the compute threads that
//! drain it, and supervises them. Sessions submit jobs straight into the queue through its
//! [`Batcher`] handle (no mailbox hop on the hot path); a full queue answers
//! [`Error::Overloaded`] at once, and the reply comes back on a oneshot channel, completed
//! on the session's arbiter from that arbiter's `reply_box` (one message per batch).
//! Dedicated compute threads, never the async arbiters, drain the queue into batches the
//! way Triton's dynamic batcher does: a batch leaves as soon as it holds `max_batch`
//! requests or its oldest request has waited `max_queue_delay` (one thread gathers at a
//! time, see `Gather`). A batch brings each session's cached model state up to date (the
//! pending events pushed incrementally, or a full encode when the state is cold or was
//! built by another model), scores every user of the batch against the catalogue in one
//! matrix product, and blends the model's task scores with the baseline sources by the
//! strategy's weights. The model, the sources and the strategy are read once per batch
//! from `Arc` snapshots, so a hot swap never shows a request half of two models.
//!
//! Each request is ranked by `ranking::blend`; answers go back through `reply`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::metrics::Metrics;
use super::ranking::{blend, Ask, Inputs, RankScratch};
pub(crate) use super::reply::{
    deliver_by_home, reply_box, Delivery, JobOutcome, ReplySender, Scored,
};
use super::{EngineCore, LiveStrategy, ModelSlot};
use crate::error::{Error, Result};
use crate::event::ItemId;
use crate::model::SessionState;
use crate::os::BackgroundPriority;
use crate::supervise::{checkpoint, Restart, Supervised, Supervisor};

/// A scoring request from a session.
#[derive(Debug)]
pub(crate) struct Job {
    /// The user's recent interactions (store item ids), oldest first.
    pub history: Vec<ItemId>,
    /// Items never to recommend (sorted).
    pub exclude: Vec<ItemId>,
    /// The session's model state, if it holds one (moved here while the request runs).
    pub state: Option<Box<SessionState>>,
    /// Interactions recorded since `state` was last brought up to date.
    pub pending: Vec<ItemId>,
    /// Items wanted.
    pub k: usize,
    /// Only items with one of these tags (empty: any).
    pub include_tags: Arc<[String]>,
    /// Never items with these tags.
    pub exclude_tags: Arc<[String]>,
    /// Seed of this request's exploration.
    pub seed: u64,
    pub enqueued: Instant,
    pub reply: tokio::sync::oneshot::Sender<JobOutcome>,
    /// Index of the arbiter of the session that submitted it (see [`reply_box`]).
    pub home: usize,
    /// The strategy and weights to rank under instead of those in force (a preview of a
    /// draft or of a past version).
    pub live: Option<Arc<LiveStrategy>>,
}

/// The handle sessions submit through: the bounded queue's sender. A full queue refuses
/// at once, handing the job's model state back with the error.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: Sender<Job>,
    capacity: usize,
    metrics: Arc<Metrics>,
    gather: Arc<Gather>,
    /// The queue's receiving end, to fail what no compute thread will take.
    orphans: Receiver<Job>,
    supervisor: Supervisor,
}

/// A refused submission: the error and the session's state.
pub(crate) type Refused = (Error, Option<Box<SessionState>>);

impl Batcher {
    /// Queues `job`; the receiver gets its outcome once its batch ran.
    pub fn submit(
        &self,
        mut job: Job,
    ) -> std::result::Result<tokio::sync::oneshot::Receiver<JobOutcome>, Refused> {
        if self.gather.alive.load(Ordering::SeqCst) == 0 {
            return Err((self.supervisor.unhealthy(), job.state));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        job.reply = tx;
        job.enqueued = Instant::now();
        match self.tx.try_send(job) {
            Ok(()) => {
                self.gather.ring(self.tx.len());
                // The last compute thread may have died since the check above.
                if self.gather.alive.load(Ordering::SeqCst) == 0 {
                    fail_orphans(&self.orphans);
                }
                Ok(rx)
            }
            Err(TrySendError::Full(job)) => {
                Metrics::add(&self.metrics.overloaded, 1);
                Err((
                    Error::Overloaded {
                        queue: self.capacity,
                    },
                    job.state,
                ))
            }
            Err(TrySendError::Disconnected(job)) => Err((Error::ShutDown, job.state)),
        }
    }

    /// Requests waiting now.
    pub fn depth(&self) -> usize {
        self.tx.len()
    }
}

/// Counts a compute thread in [`Gather::alive`] while it lives. When the last one ends
/// while requests are queued (they died: at shutdown the queue is closed and empty), the
/// queued requests are failed at once instead of waiting for a thread that will never
/// come, and later submissions are refused.
struct CrewMember {
    gather: Arc<Gather>,
    rx: Receiver<Job>,
}

impl CrewMember {
    fn join(gather: &Arc<Gather>, rx: Receiver<Job>) -> CrewMember {
        gather.alive.fetch_add(1, Ordering::SeqCst);
        CrewMember {
            gather: Arc::clone(gather),
            rx,
        }
    }
}

impl Drop for CrewMember {
    fn drop(&mut self) {
        if self.gather.alive.fetch_sub(1, Ordering::SeqCst) == 1 {
            fail_orphans(&self.rx);
        }
    }
}

/// Drops every queued job: each caller hears through its dropped reply channel.
fn fail_orphans(rx: &Receiver<Job>) {
    while rx.try_recv().is_ok() {}
}

/// How often a compute thread may die (a panic in a kernel) and be restarted in place
/// within [`COMPUTE_RESTART_WINDOW`] before its death is a fault (see
/// [`crate::supervise`]): the requests of its batch get an error through their dropped
/// reply channels, the others are not affected.
const COMPUTE_RESTARTS: u32 = 3;
const COMPUTE_RESTART_WINDOW: Duration = Duration::from_secs(60);

/// The inference actor: owns the queue's receiving end and the compute threads.
pub(crate) struct InferenceActor {
    shared: Arc<EngineCore>,
    rx: Receiver<Job>,
    gather: Arc<Gather>,
    threads: Vec<Supervised>,
    next: usize,
}

impl InferenceActor {
    fn spawn(&mut self) {
        let (rx, shared, id) = (self.rx.clone(), Arc::clone(&self.shared), self.next);
        let gather = Arc::clone(&self.gather);
        self.next += 1;
        let restart = Restart::InPlace {
            max: COMPUTE_RESTARTS,
            within: COMPUTE_RESTART_WINDOW,
        };
        let sup = self.shared.store.supervisor().clone();
        // Dropped with the body, when the thread ends for good (not at a restart).
        let crew = CrewMember::join(&gather, rx.clone());
        let body = move || {
            let _member = &crew;
            compute_loop(&shared, &rx, &gather);
            Ok(())
        };
        match sup.spawn(
            format!("attune-compute-{id}"),
            BackgroundPriority::Normal,
            restart,
            body,
        ) {
            Ok(h) => self.threads.push(h),
            Err(e) => tracing::error!(error = %e, "could not start a compute thread"),
        }
    }
}

impl Actor for InferenceActor {
    type Context = Context<Self>;
}

/// Hands the compute threads over (for joining at shutdown).
#[derive(Message)]
#[rtype(result = "Vec<Supervised>")]
pub(crate) struct TakeThreads;

impl Handler<TakeThreads> for InferenceActor {
    type Result = MessageResult<TakeThreads>;

    fn handle(&mut self, _msg: TakeThreads, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(std::mem::take(&mut self.threads))
    }
}

/// Creates the queue and starts the actor (on the current arbiter) with its threads.
pub(crate) fn start(
    shared: &Arc<EngineCore>,
    capacity: usize,
    threads: usize,
) -> (Batcher, Addr<InferenceActor>) {
    let (tx, rx) = crossbeam_channel::bounded::<Job>(capacity);
    let gather = Arc::new(Gather::default());
    let mut actor = InferenceActor {
        shared: Arc::clone(shared),
        rx,
        gather: Arc::clone(&gather),
        threads: Vec::new(),
        next: 0,
    };
    for _ in 0..threads {
        actor.spawn();
    }
    let batcher = Batcher {
        tx,
        capacity,
        metrics: Arc::clone(&shared.metrics),
        gather,
        orphans: actor.rx.clone(),
        supervisor: shared.store.supervisor().clone(),
    };
    (batcher, actor.start())
}

/// How the compute threads gather batches without waking for every request.
///
/// One thread at a time gathers (holds `turn`): it blocks for the first request, takes
/// what is queued, and if the batch is not full sleeps until the queue holds enough to
/// fill it (a submission rings the bell only then) or the first request's deadline. The
/// other threads wait for the turn, not on the queue, so a submission wakes nobody unless
/// it starts or fills a batch. Before, every compute thread waited on the queue itself:
/// each submission woke one to add a single request to its batch, and the waits spun
/// with `sched_yield`; at 20,000 requests a second that was 13,000 context switches a
/// second on a 2-core machine.
#[derive(Default)]
struct Gather {
    /// Held by the thread gathering a batch.
    turn: Mutex<()>,
    /// Compute threads alive (see [`CrewMember`]).
    alive: AtomicUsize,
    /// Requests the gathering thread waits for (0: it is not waiting).
    need: AtomicUsize,
    bell: Mutex<()>,
    rung: Condvar,
}

impl Gather {
    /// After a submission: wakes the gathering thread if the queue (`queued` long now)
    /// can fill its batch.
    fn ring(&self, queued: usize) {
        let need = self.need.load(Ordering::SeqCst);
        if need != 0 && queued >= need {
            let _bell = self.bell.lock().unwrap_or_else(|e| e.into_inner());
            self.rung.notify_one();
        }
    }

    /// Sleeps until `rx` holds `need` requests or `deadline` passes (or a little longer:
    /// a ring missed between the check and the sleep costs at most the deadline).
    fn wait(&self, rx: &Receiver<Job>, need: usize, deadline: Instant) {
        let bell = self.bell.lock().unwrap_or_else(|e| e.into_inner());
        self.need.store(need, Ordering::SeqCst);
        let now = Instant::now();
        if rx.len() < need && deadline > now {
            let _ = self
                .rung
                .wait_timeout(bell, deadline - now)
                .unwrap_or_else(|e| e.into_inner());
        }
        self.need.store(0, Ordering::SeqCst);
    }
}

fn compute_loop(shared: &EngineCore, rx: &Receiver<Job>, gather: &Gather) {
    let mut scratch = RankScratch::default();
    loop {
        let batch = {
            let _turn = gather.turn.lock().unwrap_or_else(|e| e.into_inner());
            let Ok(first) = rx.recv() else { return };
            let knobs = shared.live().strategy.batching;
            let deadline = first.enqueued + Duration::from_micros(knobs.max_queue_delay_us);
            let mut batch = Vec::with_capacity(knobs.max_batch);
            batch.push(first);
            loop {
                while batch.len() < knobs.max_batch {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                if batch.len() >= knobs.max_batch || Instant::now() >= deadline {
                    break;
                }
                gather.wait(rx, knobs.max_batch - batch.len(), deadline);
            }
            batch
        };
        checkpoint();
        let started = Instant::now();
        let m = &shared.metrics;
        m.batch_size.record(batch.len() as u64);
        for j in &batch {
            m.queue_delay
                .record_duration(started.saturating_duration_since(j.enqueued));
        }
        run_batch(shared, batch, &mut scratch);
        m.compute_time.record_duration(started.elapsed());
    }
}

/// Brings a job's model state up to date and returns its user vector.
fn prepare_state(model: &ModelSlot, job: &mut Job, metrics: &Metrics) -> Result<Option<Vec<f32>>> {
    let fast = &model.fast;
    let mapped = |items: &[ItemId]| -> Vec<u32> {
        items.iter().filter_map(|&i| model.to_model(i)).collect()
    };
    let current = job.state.as_deref().is_some_and(|s| fast.is_current(s));
    if current {
        let state = job.state.as_deref_mut().expect("checked above");
        for idx in mapped(&job.pending) {
            fast.push(state, idx)?;
            Metrics::add(&metrics.state_pushes, 1);
        }
    } else {
        let items = mapped(&job.history);
        Metrics::add(&metrics.state_encodes, 1);
        job.state = if items.is_empty() {
            None
        } else {
            Some(Box::new(fast.encode(&items)?))
        };
    }
    job.pending.clear();
    Ok(job
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| s.user_vector().map(<[f32]>::to_vec)))
}

/// User vectors and logits of a batch by one candle forward pass on the model's device:
/// `(vectors per job, logits (jobs × n) row-major, n)`. Jobs without usable history get no
/// vector (their logits rows are unused).
#[allow(clippy::type_complexity)]
fn device_forward(
    m: &ModelSlot,
    batch: &[Job],
    metrics: &Metrics,
) -> Result<(Vec<Option<Vec<f32>>>, Vec<f32>, usize)> {
    let model = m.batched.as_ref().expect("device path");
    let cfg = model.config();
    let (d, n) = (cfg.dim, cfg.n_items);
    let windows: Vec<Vec<u32>> = batch
        .iter()
        .map(|j| {
            let mapped: Vec<u32> = j.history.iter().filter_map(|&i| m.to_model(i)).collect();
            mapped[mapped.len().saturating_sub(cfg.max_len)..].to_vec()
        })
        .collect();
    let len = windows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut tokens = vec![0u32; batch.len() * len];
    let mut last = Vec::with_capacity(batch.len());
    for (row, w) in windows.iter().enumerate() {
        for (j, &idx) in w.iter().enumerate() {
            tokens[row * len + j] = idx + 1;
        }
        last.push((row * len + w.len().saturating_sub(1)) as u32);
    }
    Metrics::add(&metrics.state_encodes, batch.len() as u64);
    let device = model.device();
    let tokens = candle_core::Tensor::from_vec(tokens, (batch.len(), len), device)?;
    let hidden = model.encode(&tokens, None)?;
    let idx = candle_core::Tensor::from_vec(last, batch.len(), device)?;
    let h = hidden
        .reshape((batch.len() * len, d))?
        .index_select(&idx, 0)?;
    let logits = model.next_logits(&h)?;
    let h = h.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    let logits = logits
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let vecs = h
        .into_iter()
        .zip(&windows)
        .map(|(v, w)| (!w.is_empty()).then_some(v))
        .collect();
    Ok((vecs, logits, n))
}

fn run_batch(shared: &EngineCore, mut batch: Vec<Job>, scratch: &mut RankScratch) {
    let model = shared.model();
    let sources = shared.sources();
    let live = shared.live();
    let catalog = shared.catalog();
    let text = shared.text.table();
    // Bring states up to date, collect the user vectors.
    let mut vecs: Vec<Option<Vec<f32>>> = Vec::with_capacity(batch.len());
    let mut errors: Vec<Option<Error>> = Vec::with_capacity(batch.len());
    let mut rows: Vec<Option<std::ops::Range<usize>>> = vec![None; batch.len()];
    let mut logits = Vec::new();
    match model.as_deref() {
        Some(m) if m.batched.is_some() => {
            // The device path: every history re-encoded in one forward pass on the model's
            // device (a GPU with the `cuda` feature), logits computed there too.
            match device_forward(m, &batch, &shared.metrics) {
                Ok((v, l, n)) => {
                    for (i, u) in v.into_iter().enumerate() {
                        if u.is_some() {
                            rows[i] = Some(i * n..(i + 1) * n);
                        }
                        vecs.push(u);
                        errors.push(None);
                    }
                    logits = l;
                }
                Err(e) => {
                    let msg = e.to_string();
                    for _ in 0..batch.len() {
                        vecs.push(None);
                        errors.push(Some(Error::internal(format!("device forward pass: {msg}"))));
                    }
                }
            }
        }
        _ => {
            // Bring states up to date, collect the user vectors.
            for job in &mut batch {
                match model
                    .as_deref()
                    .map(|m| prepare_state(m, job, &shared.metrics))
                {
                    None => {
                        vecs.push(None);
                        errors.push(None);
                    }
                    Some(Ok(v)) => {
                        vecs.push(v);
                        errors.push(None);
                    }
                    Some(Err(e)) => {
                        vecs.push(None);
                        errors.push(Some(e));
                    }
                }
            }
            // One matrix product for every user with a vector; a catalogue with a graph
            // index skips it (ranking searches the index per user instead).
            if let Some(m) = model.as_deref().filter(|m| m.fast.index().is_none()) {
                let n = m.fast.n_items();
                let users: Vec<usize> = (0..batch.len()).filter(|&i| vecs[i].is_some()).collect();
                if !users.is_empty() {
                    let mut u = Vec::with_capacity(users.len() * m.fast.dim());
                    for &i in &users {
                        u.extend_from_slice(vecs[i].as_deref().expect("filtered"));
                    }
                    // The thread's buffer, reused: a fresh one (n × batch floats, 237 KB
                    // at 3,700 items × 16) was zeroed for each batch, and its pages were
                    // handed back and faulted in again (a 2 MB huge page zeroed each time).
                    logits = std::mem::take(&mut scratch.logits);
                    logits.resize(logits.len().max(users.len() * n), 0.0);
                    m.fast.score_batch(&u, &mut logits[..users.len() * n]);
                    for (r, &i) in users.iter().enumerate() {
                        rows[i] = Some(r * n..(r + 1) * n);
                    }
                }
            }
        }
    }
    let mut answers = Vec::with_capacity(batch.len());
    for (i, mut job) in batch.into_iter().enumerate() {
        let result = match errors[i].take() {
            Some(e) => Err(e),
            None => Ok(blend(
                &Ask {
                    history: &job.history,
                    exclude: &job.exclude,
                    k: job.k,
                    include_tags: &job.include_tags,
                    exclude_tags: &job.exclude_tags,
                    seed: job.seed,
                },
                &Inputs {
                    model: model.as_deref(),
                    user_vec: vecs[i].as_deref(),
                    logits: rows[i].clone().map(|r| &logits[r]),
                    sources: &sources,
                    live: job.live.as_deref().unwrap_or(&live),
                    catalog: &catalog,
                    text: (!text.is_empty()).then_some(&*text),
                },
                scratch,
            )),
        };
        let state = job.state.take();
        answers.push((job.home, (job.reply, JobOutcome { result, state })));
    }
    deliver_by_home(&shared.replies, answers, Delivery::Jobs);
    if scratch.logits.is_empty() {
        scratch.logits = logits;
    }
}
