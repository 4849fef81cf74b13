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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::metrics::Metrics;
use super::sources::{SourceSnapshot, KNN_HISTORY, MARKOV_WEIGHTS};
use super::strategy::{Exploration, N_SOURCES};
use super::{Catalog, Live, ModelSlot, Shared};
use crate::error::{Error, Result};
use crate::event::ItemId;
use crate::model::SessionState;

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
    pub live: Option<Arc<Live>>,
}

/// A job's answer on its way to the session's arbiter.
pub(crate) type Reply = (tokio::sync::oneshot::Sender<JobOutcome>, JobOutcome);

/// Answers handed to an arbiter in one message: a batch's recommendations, or a flush's
/// acknowledgements of recorded events.
pub(crate) enum Delivery {
    Jobs(Vec<Reply>),
    Acks(Vec<(super::log::AckSender, Result<super::log::Ack>)>),
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

/// The handle sessions submit through: the bounded queue's sender. A full queue refuses
/// at once, handing the job's model state back with the error.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: Sender<Job>,
    capacity: usize,
    metrics: Arc<Metrics>,
    gather: Arc<Gather>,
}

/// A refused submission: the error and the session's state.
pub(crate) type Refused = (Error, Option<Box<SessionState>>);

impl Batcher {
    /// Queues `job`; the receiver gets its outcome once its batch ran.
    pub fn submit(
        &self,
        mut job: Job,
    ) -> std::result::Result<tokio::sync::oneshot::Receiver<JobOutcome>, Refused> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        job.reply = tx;
        job.enqueued = Instant::now();
        match self.tx.try_send(job) {
            Ok(()) => {
                self.gather.ring(self.tx.len());
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

/// The inference actor: owns the queue's receiving end and the compute threads, and
/// supervises them — a compute thread that dies (a panic in a kernel) is replaced, and the
/// requests of its batch get an error through their dropped reply channels.
pub(crate) struct InferenceActor {
    shared: Arc<Shared>,
    rx: Receiver<Job>,
    gather: Arc<Gather>,
    threads: Vec<(usize, std::thread::JoinHandle<()>)>,
    next: usize,
}

impl InferenceActor {
    fn spawn(&mut self) {
        let (rx, shared, id) = (self.rx.clone(), Arc::clone(&self.shared), self.next);
        let gather = Arc::clone(&self.gather);
        self.next += 1;
        match std::thread::Builder::new()
            .name(format!("attune-compute-{id}"))
            .spawn(move || compute_loop(&shared, &rx, &gather))
        {
            Ok(h) => self.threads.push((id, h)),
            Err(e) => tracing::error!(error = %e, "could not start a compute thread"),
        }
    }
}

impl Actor for InferenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_millis(100), |act, _ctx| {
            let before = act.threads.len();
            let mut dead = Vec::new();
            act.threads.retain(|(id, h)| {
                if h.is_finished() {
                    dead.push(*id);
                    false
                } else {
                    true
                }
            });
            // Threads end on their own only when the queue closes (shutdown): then none is
            // replaced. Otherwise an ended thread died.
            if !dead.is_empty() && act.shared.batcher().is_some() {
                tracing::error!(threads = ?dead, "compute threads died; replacing them");
                Metrics::add(&act.shared.metrics.compute_restarts, dead.len() as u64);
                for _ in 0..before - act.threads.len() {
                    act.spawn();
                }
            }
        });
    }
}

/// Hands the compute threads over (for joining at shutdown).
#[derive(Message)]
#[rtype(result = "Vec<std::thread::JoinHandle<()>>")]
pub(crate) struct TakeThreads;

impl Handler<TakeThreads> for InferenceActor {
    type Result = MessageResult<TakeThreads>;

    fn handle(&mut self, _msg: TakeThreads, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.threads.drain(..).map(|(_, h)| h).collect())
    }
}

/// Creates the queue and starts the actor (on the current arbiter) with its threads.
pub(crate) fn start(
    shared: &Arc<Shared>,
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
    };
    (batcher, actor.start())
}

/// Per-thread scratch buffers, reused across requests.
#[derive(Default)]
struct Scratch {
    gen: u32,
    cand_mark: Vec<u32>,
    excl_mark: Vec<u32>,
    knn: Vec<f32>,
    markov: Vec<f32>,
    candidates: Vec<ItemId>,
    /// Items with a transition or co-occurrence score this request.
    touched: Vec<ItemId>,
    order: Vec<(f32, ItemId)>,
    /// The batch's logits (users × items), kept between batches.
    logits: Vec<f32>,
}

/// Which accumulator [`Scratch::touch`] returns.
#[derive(Clone, Copy)]
enum Acc {
    Markov,
    Knn,
}

impl Scratch {
    fn reset(&mut self, n: usize) {
        if self.cand_mark.len() < n {
            self.cand_mark.resize(n, 0);
            self.excl_mark.resize(n, 0);
            self.knn.resize(n, 0.0);
            self.markov.resize(n, 0.0);
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.cand_mark.fill(0);
            self.excl_mark.fill(0);
            self.gen = 1;
        }
        for &c in &self.touched {
            self.knn[c as usize] = 0.0;
            self.markov[c as usize] = 0.0;
        }
        self.touched.clear();
        self.candidates.clear();
    }

    /// Adds the `c` best entries of `order` (highest value first, ties by lower id) to the
    /// candidates.
    fn add_best(&mut self, c: usize) {
        let take = c.min(self.order.len());
        if take > 0 && take < self.order.len() {
            self.order
                .select_nth_unstable_by(take - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        for k in 0..take {
            let item = self.order[k].1;
            self.add(item);
        }
    }

    /// The accumulator of `item` (None if excluded or unknown), noting it as touched.
    fn touch(&mut self, item: ItemId, acc: Acc) -> Option<&mut f32> {
        let i = item as usize;
        if i >= self.excl_mark.len() || self.excl_mark[i] == self.gen {
            return None;
        }
        if self.knn[i] == 0.0 && self.markov[i] == 0.0 {
            self.touched.push(item);
        }
        Some(match acc {
            Acc::Markov => &mut self.markov[i],
            Acc::Knn => &mut self.knn[i],
        })
    }

    fn excluded(&self, item: ItemId) -> bool {
        self.excl_mark.get(item as usize) == Some(&self.gen)
    }

    /// Adds a candidate unless excluded or already in; returns whether it is in now.
    fn add(&mut self, item: ItemId) -> bool {
        let i = item as usize;
        if i >= self.cand_mark.len() || self.excl_mark[i] == self.gen {
            return false;
        }
        if self.cand_mark[i] != self.gen {
            self.cand_mark[i] = self.gen;
            self.candidates.push(item);
        }
        true
    }
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

fn compute_loop(shared: &Shared, rx: &Receiver<Job>, gather: &Gather) {
    let mut scratch = Scratch::default();
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

fn run_batch(shared: &Shared, mut batch: Vec<Job>, scratch: &mut Scratch) {
    let model = shared.model();
    let sources = shared.sources();
    let live = shared.live();
    let catalog = shared.catalog();
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
                        errors.push(Some(Error::ActorFailed(format!(
                            "device forward pass: {msg}"
                        ))));
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
            // One matrix product for every user with a vector.
            if let Some(m) = model.as_deref() {
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
                &job,
                model.as_deref(),
                vecs[i].as_deref(),
                rows[i].clone().map(|r| &logits[r]),
                &sources,
                job.live.as_deref().unwrap_or(&live),
                &catalog,
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

/// Ranks the candidates of one request.
#[allow(clippy::too_many_arguments)]
fn blend(
    job: &Job,
    model: Option<&ModelSlot>,
    user_vec: Option<&[f32]>,
    logits: Option<&[f32]>,
    src: &SourceSnapshot,
    live: &Live,
    catalog: &Catalog,
    s: &mut Scratch,
) -> Scored {
    let strategy = &live.strategy;
    let n = catalog.len().max(src.n_items());
    s.reset(n);
    for &e in &job.exclude {
        if let Some(m) = s.excl_mark.get_mut(e as usize) {
            *m = s.gen;
        }
    }
    if !job.include_tags.is_empty() || !job.exclude_tags.is_empty() {
        for item in 0..catalog.len() {
            let tags = catalog.tags(item as ItemId);
            let keep = (job.include_tags.is_empty()
                || tags.iter().any(|t| job.include_tags.contains(t)))
                && !tags.iter().any(|t| job.exclude_tags.contains(t));
            if !keep {
                s.excl_mark[item] = s.gen;
            }
        }
    }
    let c = strategy.candidates;
    // Model candidates: the best `c` logits among items not excluded.
    let mut max_logit = f32::NEG_INFINITY;
    if let (Some(m), Some(row)) = (model, logits) {
        max_logit = top_logits(row, c, &m.from_model, s);
    }
    // Transitions out of the last three items and co-occurrence with the last few, scored
    // for every item they reach; the best `c` of each source become candidates.
    let hist = &job.history;
    let mut max_markov = 0.0f32;
    for (w, &h) in MARKOV_WEIGHTS.iter().zip(hist.iter().rev()) {
        if let Some(row) = src.successors.get(h as usize) {
            for &(j, p) in row.iter() {
                if let Some(v) = s.touch(j, Acc::Markov) {
                    *v += w * p;
                    if *v > max_markov {
                        max_markov = *v;
                    }
                }
            }
        }
    }
    let mut max_knn = 0.0f32;
    let mut used = 0;
    for (k, &h) in hist.iter().enumerate().rev() {
        if used == KNN_HISTORY {
            break;
        }
        if hist[k + 1..].contains(&h) {
            continue;
        }
        used += 1;
        if let Some(row) = src.neighbours.get(h as usize) {
            for &(j, sim) in row.iter() {
                if let Some(v) = s.touch(j, Acc::Knn) {
                    *v += sim;
                    if *v > max_knn {
                        max_knn = *v;
                    }
                }
            }
        }
    }
    for acc in [Acc::Markov, Acc::Knn] {
        s.order.clear();
        for &j in &s.touched {
            let v = match acc {
                Acc::Markov => s.markov[j as usize],
                Acc::Knn => s.knn[j as usize],
            };
            if v > 0.0 {
                s.order.push((v, j));
            }
        }
        s.add_best(c);
    }
    let before_pop = s.candidates.len();
    let mut added = 0;
    for &p in &src.pop_top {
        if added == c {
            break;
        }
        if s.add(p) {
            added += 1;
        }
    }
    let mut fallback = None;
    if hist.is_empty() || (before_pop == 0 && user_vec.is_none()) {
        fallback = Some("popularity");
    }
    if s.candidates.is_empty() {
        // Nothing counted yet: the catalogue in order.
        for item in 0..n as ItemId {
            if s.candidates.len() >= c {
                break;
            }
            s.add(item);
        }
        fallback = Some("catalogue");
    }
    // Features of every candidate.
    let cands = std::mem::take(&mut s.candidates);
    let mut feats: Vec<[f32; N_SOURCES]> = vec![[0.0; N_SOURCES]; cands.len()];
    if let (Some(m), Some(row), Some(_)) = (model, logits, user_vec) {
        for (ci, &item) in cands.iter().enumerate() {
            if let Some(idx) = m.to_model(item) {
                feats[ci][0] = crate::model::ops::fast_exp(row[idx as usize] - max_logit);
            }
        }
    }
    for (ci, &item) in cands.iter().enumerate() {
        let i = item as usize;
        if max_knn > 0.0 {
            feats[ci][3] = s.knn[i] / max_knn;
        }
        if max_markov > 0.0 {
            feats[ci][4] = s.markov[i] / max_markov;
        }
        feats[ci][5] = src.pop.get(i).copied().unwrap_or(0.0);
    }
    s.candidates = cands;
    // Weights of this request.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(job.seed);
    let mut weights = live.weights;
    if let Exploration::Thompson { scale } = strategy.exploration {
        let drawn: [f32; N_SOURCES] = std::array::from_fn(|j| {
            let sd = scale / (1.0 + live.evidence[j]).sqrt();
            weights[j] + sd * gaussian(&mut rng)
        });
        weights = strategy.bound(drawn);
    }
    // Blend. The task heads (like, purchase) each need the candidate's embedding, so they
    // are computed in order of the rest of the score, and only while a candidate can still
    // reach the top k: its score without them plus the most they can add (a probability
    // below 1 times the positive weights) must beat the k-th best complete score so far.
    let w = weights;
    let heads = match (model, user_vec) {
        (Some(m), Some(u)) if m.has_task_heads && (w[1] != 0.0 || w[2] != 0.0) => {
            Some((m, m.fast.task_heads(u)))
        }
        _ => None,
    };
    let mut ranked: Vec<(f32, u32)> = (0..s.candidates.len())
        .map(|ci| {
            let f = &feats[ci];
            (
                f[0] * w[0] + f[3] * w[3] + f[4] * w[4] + f[5] * w[5],
                ci as u32,
            )
        })
        .collect();
    let mut done = vec![heads.is_none(); s.candidates.len()];
    if heads.is_some() {
        let bound = w[1].max(0.0) + w[2].max(0.0);
        ranked.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut tops: Vec<f32> = Vec::with_capacity(job.k + 1);
        for r in ranked.iter_mut() {
            if tops.len() >= job.k && r.0 + bound < tops[job.k - 1] {
                break;
            }
            let ci = r.1 as usize;
            r.0 += task_features(&heads, s.candidates[ci], &w, &mut feats[ci]);
            done[ci] = true;
            let at = tops.partition_point(|&x| x >= r.0);
            tops.insert(at, r.0);
            tops.truncate(job.k);
        }
    }
    let cands = &s.candidates;
    let better = |a: &(f32, u32), b: &(f32, u32)| {
        b.0.total_cmp(&a.0)
            .then(cands[a.1 as usize].cmp(&cands[b.1 as usize]))
    };
    let k = job.k.min(ranked.len());
    if k > 0 && k < ranked.len() {
        ranked.select_nth_unstable_by(k - 1, better);
    }
    ranked[..k].sort_unstable_by(better);
    let item_of = |&(score, ci): &(f32, u32)| ScoredItem {
        item: cands[ci as usize],
        score,
        features: feats[ci as usize],
        explored: false,
    };
    let mut picked: Vec<ScoredItem> = ranked[..k].iter().map(item_of).collect();
    if let Exploration::Epsilon { epsilon } = strategy.exploration {
        let rest = &ranked[k..];
        let mut pool: Vec<usize> = (0..rest.len()).collect();
        for slot in picked.iter_mut() {
            if pool.is_empty() {
                break;
            }
            if rng.gen::<f32>() < epsilon {
                let p = pool.swap_remove(rng.gen_range(0..pool.len()));
                let (score, ci) = rest[p];
                let mut item = item_of(&(score, ci));
                if !done[ci as usize] {
                    item.score += task_features(&heads, item.item, &w, &mut item.features);
                }
                *slot = ScoredItem {
                    explored: true,
                    ..item
                };
            }
        }
    }
    Scored {
        items: picked,
        strategy_version: live.version,
        weights,
        model_version: model.map_or(0, |m| m.version),
        fallback,
    }
}

/// Fills the like and purchase features of `item` from the task heads and returns what
/// they add to its score under weights `w`.
fn task_features(
    heads: &Option<(&ModelSlot, crate::model::fast::TaskHeads)>,
    item: ItemId,
    w: &[f32; N_SOURCES],
    f: &mut [f32; N_SOURCES],
) -> f32 {
    let Some((m, h)) = heads else { return 0.0 };
    let Some(idx) = m.to_model(item) else {
        return 0.0;
    };
    match m.fast.task_probs(h, idx) {
        Ok((like, buy)) => {
            f[1] = like;
            f[2] = buy;
            w[1] * like + w[2] * buy
        }
        Err(_) => 0.0,
    }
}

/// Adds the `c` items of highest logit (not excluded) to the candidates and returns the
/// highest logit of the row.
///
/// Two passes instead of a heap over the whole row: the maxima of chunks of 16 give a
/// threshold, then only the items at or above it are selected among. With the `c`-th
/// largest chunk maximum as threshold at least `c` items reach it (typically `c` to
/// `2c`), but a user's seen items are excluded and are often among the highest logits:
/// that left fewer than `c`, and the whole row (3,700 items) was selected over, about
/// a third of the time. So the threshold starts at the `2c`-th largest maximum and, if
/// exclusions still leave fewer than `c` items, drops to the `8c`-th before the plain
/// selection over the row. Any threshold gives the same result as long as `c` items
/// reach it: every item below it ranks below those.
fn top_logits(row: &[f32], c: usize, from_model: &[ItemId], s: &mut Scratch) -> f32 {
    const CHUNK: usize = 16;
    let gt = |x: f32, m: f32| if x > m { x } else { m };
    let maxima: Vec<f32> = row
        .chunks(CHUNK)
        .map(|ch| ch.iter().fold(f32::NEG_INFINITY, |m, &x| gt(x, m)))
        .collect();
    let max_logit = maxima.iter().fold(f32::NEG_INFINITY, |m, &x| gt(x, m));
    if c == 0 {
        return max_logit;
    }
    let mut sorted = Vec::new();
    for rank in [2 * c, 8 * c] {
        if rank >= maxima.len() {
            break;
        }
        if sorted.is_empty() {
            sorted = maxima.clone();
        }
        let (_, t, _) = sorted.select_nth_unstable_by(rank - 1, |a, b| b.total_cmp(a));
        let threshold = *t;
        s.order.clear();
        for (ci, ch) in row.chunks(CHUNK).enumerate() {
            if maxima[ci] < threshold {
                continue;
            }
            for (j, &l) in ch.iter().enumerate() {
                if l >= threshold && l.is_finite() {
                    let item = from_model[ci * CHUNK + j];
                    if !s.excluded(item) {
                        s.order.push((l, item));
                    }
                }
            }
        }
        if s.order.len() >= c {
            s.add_best(c);
            return max_logit;
        }
    }
    // Exclusions thinned every threshold (or the row is short): select over the row.
    s.order.clear();
    for (idx, &l) in row.iter().enumerate() {
        let item = from_model[idx];
        if l.is_finite() && !s.excluded(item) {
            s.order.push((l, item));
        }
    }
    s.add_best(c);
    max_logit
}

fn gaussian(rng: &mut impl Rng) -> f32 {
    // Box–Muller.
    let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
    let u2: f32 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The candidates `top_logits` picks are the `c` best non-excluded items (lower id
    /// first among equal logits), whatever the share of excluded items among the highest
    /// logits, and with many ties.
    #[test]
    fn top_logits_agrees_with_a_full_selection_under_exclusions() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for (n, c, excluded_share, levels) in [
            (3700, 50, 0.0, None),
            (3700, 50, 0.05, None),
            (3700, 50, 0.5, None),
            (3700, 50, 0.99, None),
            (100, 50, 0.3, None),
            (40, 50, 0.0, None),
            (3700, 50, 0.1, Some(8.0)),
            (3700, 10, 0.0, Some(1.0)),
            (3700, 1, 0.2, None),
        ] {
            let row: Vec<f32> = (0..n)
                .map(|_| match levels {
                    // Few distinct values: long runs of ties at every threshold.
                    Some(l) => (rng.gen::<f32>() * l).floor() / l,
                    None => rng.gen::<f32>(),
                })
                .collect();
            // Items are numbered differently from model indices, as in the engine.
            let from_model: Vec<ItemId> = (0..n as ItemId).rev().collect();
            let mut s = Scratch::default();
            s.reset(n);
            // Exclude mostly high-logit items, where exclusions hurt the threshold.
            for idx in 0..n {
                if rng.gen::<f64>() < excluded_share * (0.5 + f64::from(row[idx])) {
                    s.excl_mark[from_model[idx] as usize] = s.gen;
                }
            }
            let max = top_logits(&row, c, &from_model, &mut s);
            let mut got: Vec<ItemId> = s.candidates.clone();
            got.sort_unstable();
            let mut all: Vec<(f32, ItemId)> = (0..n)
                .filter(|&idx| !s.excluded(from_model[idx]))
                .map(|idx| (row[idx], from_model[idx]))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut want: Vec<ItemId> = all.iter().take(c).map(|x| x.1).collect();
            want.sort_unstable();
            assert_eq!(got, want, "n {n} c {c} excluded {excluded_share}");
            assert_eq!(max, row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        }
    }
}
