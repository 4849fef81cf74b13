//! Offline replay of logged sessions (`attune replay`, `POST /v1/replay`): "what would
//! strategy B have done on last week's traffic?"
//!
//! The logged events are fed, in time order, through a fresh [`Engine`] per strategy
//! (the serving code path: session actors, the batching inference actor, the learner),
//! over a scratch store. Before each positive event (a click, cart or purchase, a rating
//! at or above the like threshold, or any interaction when the data holds only views)
//! the engine is asked for the user's top-k, and the rank of the event's item in it is
//! recorded; then the event is recorded, answering that recommendation, so the learner
//! learns exactly as it would live (prequential evaluation).
//!
//! **Rounds.** To use the batching inference actor, events are processed in rounds: a
//! round holds the earliest pending event of up to `round` distinct users (each user's
//! events stay in order; an event may move ahead of at most `lookahead` earlier events of
//! other users). A round's recommendations are asked together, then its events are
//! recorded, then the learner applies the round (the engine runs in deterministic mode:
//! its learner applies messages in a canonical order at these points). So two runs with
//! the same seed give identical figures, whatever the threads do.
//!
//! For a store written by `attune serve`, the impressions in its log are the moments
//! recommendations were served: the replay asks for a slate of the same size there and
//! reports how often it equals the one served (`served_agreement`).

pub mod compare;
#[cfg(feature = "report")]
pub mod report;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::engine::strategy::{SourceWeights, Strategy};
use crate::engine::{Engine, EngineConfig, RecommendOptions, Recommendation};
use crate::error::{Error, Result};
use crate::event::{Action, EventKind, Item, RawEvent, Timestamp};
use crate::import::{self, Format, ImportOptions};
use crate::store::{Store, StoreConfig};

/// A user's open run while finding rank points: (item, first event, its events' kinds
/// and values, whether one is positive).
type OpenRun<'a> = (&'a str, usize, Vec<(EventKind, f32)>, bool);

/// One strategy's result, as its thread leaves it.
type Slot = std::sync::Mutex<Option<Result<(StrategyReport, u64)>>>;

/// Ratings at or above this count as positive (as the model's like task does).
pub const LIKE_THRESHOLD: f32 = 4.0;

/// What a replay reads.
#[derive(Debug, Clone)]
pub enum Source {
    /// A store's event log (in log order).
    Store(PathBuf),
    /// Data set files of one import format (events sorted by time, stable).
    Files(Vec<PathBuf>, Format),
}

/// Settings of a replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Strategies to compare (empty: the default strategy).
    pub strategies: Vec<Strategy>,
    /// Attention model checkpoint the engines serve (none: baselines only).
    pub model: Option<PathBuf>,
    /// Only events at or after this time (ms since the epoch).
    pub from: Option<Timestamp>,
    /// Only events before this time (ms).
    pub to: Option<Timestamp>,
    /// Slate size ranked before each positive event.
    pub k: usize,
    /// Seed of the engines (exploration).
    pub seed: u64,
    /// Distinct users per round.
    pub round: usize,
    /// How far an event may move ahead of earlier events of other users.
    pub lookahead: usize,
    /// Time windows the figures are also reported over.
    pub windows: usize,
    /// Strategies replayed at once (default: the cores, at most the strategies).
    pub parallel: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            strategies: Vec::new(),
            model: None,
            from: None,
            to: None,
            k: 10,
            seed: 42,
            round: 64,
            lookahead: 4096,
            windows: 10,
            parallel: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl ReplayConfig {
    fn validate(&self) -> Result<()> {
        if !(1..=1000).contains(&self.k) {
            return Err(Error::config(
                "k",
                format!("must be in [1, 1000], got {}", self.k),
            ));
        }
        if !(1..=4096).contains(&self.round) {
            return Err(Error::config(
                "round",
                format!("must be in [1, 4096], got {}", self.round),
            ));
        }
        if self.lookahead < self.round {
            return Err(Error::config("lookahead", "must be at least `round`"));
        }
        if !(1..=1000).contains(&self.windows) {
            return Err(Error::config("windows", "must be in [1, 1000]"));
        }
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if f >= t {
                return Err(Error::config("from/to", "`from` must be before `to`"));
            }
        }
        for s in &self.strategies {
            s.validate()?;
        }
        Ok(())
    }
}

/// The events of a replay, in the order they are replayed.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// A label of where they came from.
    pub name: String,
    /// Every item of the catalogue (catalogue records and items of events), sorted.
    pub items: Vec<Item>,
    /// The events (impressions included, for a served log).
    pub events: Vec<RawEvent>,
    /// Whether only views occur (then every interaction is positive).
    pub implicit: bool,
}

impl Log {
    /// Reads a source, keeping the events in `[from, to)`.
    pub fn read(source: &Source, from: Option<Timestamp>, to: Option<Timestamp>) -> Result<Log> {
        let (name, events, items) = match source {
            Source::Store(dir) => {
                let store = Store::open(dir, StoreConfig::default())?;
                let log = Self::from_store(&store)?;
                store.close()?;
                (dir.display().to_string(), log.0, log.1)
            }
            Source::Files(paths, format) => {
                let mut events = Vec::new();
                let mut items = Vec::new();
                for p in paths {
                    let parsed =
                        import::parse_file(p, *format, &ImportOptions::default(), &mut |_, _| {})?;
                    events.extend(parsed.parsed.events);
                    items.extend(parsed.parsed.items);
                }
                // Time order; ties keep the files' order.
                events.sort_by_key(|e| e.ts);
                let name = paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join("+");
                (name, events, items)
            }
        };
        Self::from_events(name, events, items, from, to)
    }

    /// A log of `events` (already in replay order) and catalogue `items`, keeping the
    /// events in `[from, to)`.
    pub fn from_events(
        name: String,
        mut events: Vec<RawEvent>,
        mut items: Vec<Item>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<Log> {
        events.retain(|e| from.is_none_or(|f| e.ts >= f) && to.is_none_or(|t| e.ts < t));
        if !events
            .iter()
            .any(|e| e.action.kind() != EventKind::Impression)
        {
            return Err(Error::EmptyData(format!(
                "{name}: no events to replay{}",
                if from.is_some() || to.is_some() {
                    " in the --from/--to range"
                } else {
                    ""
                }
            )));
        }
        let mut known: HashSet<String> = items.iter().map(|i| i.id.clone()).collect();
        for e in &events {
            if let Some(i) = e.action.item() {
                if known.insert(i.clone()) {
                    items.push(Item {
                        id: i.clone(),
                        ..Item::default()
                    });
                }
            }
        }
        // One record per item (the last wins, as upserts do), at its first position: the
        // order of the store's dense ids, or of first appearance in the files. The replay's
        // store interns them in this order, so ties between items break the same way.
        let mut position: HashMap<String, usize> = HashMap::new();
        let mut unique: Vec<Item> = Vec::with_capacity(items.len());
        for it in items {
            match position.get(&it.id) {
                Some(&p) => unique[p] = it,
                None => {
                    position.insert(it.id.clone(), unique.len());
                    unique.push(it);
                }
            }
        }
        let items = unique;
        let implicit = events
            .iter()
            .all(|e| matches!(e.action.kind(), EventKind::View | EventKind::Impression));
        Ok(Log {
            name,
            items,
            events,
            implicit,
        })
    }

    /// The events of an open store (log order) and its catalogue.
    pub fn from_store(store: &Store) -> Result<(Vec<RawEvent>, Vec<Item>)> {
        let (users, items) = store.interners();
        let mut events = Vec::new();
        for ev in store.all_events() {
            let (seq, ev) = ev?;
            let user = users.name(ev.user).ok_or_else(|| Error::Corrupt {
                key: format!("event {seq}"),
                reason: "user id without a name".into(),
            })?;
            let action = ev.action.try_map_ids(|i| {
                items
                    .name(i)
                    .map(str::to_owned)
                    .ok_or_else(|| Error::Corrupt {
                        key: format!("event {seq}"),
                        reason: "item id without a name".into(),
                    })
            })?;
            events.push(RawEvent {
                user: user.to_owned(),
                ts: ev.ts,
                action,
            });
        }
        let mut catalogue = Vec::new();
        for id in 0..store.n_items() as u32 {
            if let Some(it) = store.item(id)? {
                catalogue.push(it);
            } else if let Some(name) = store.item_name(id) {
                catalogue.push(Item {
                    id: name,
                    ..Item::default()
                });
            }
        }
        Ok((events, catalogue))
    }

    /// The points where a ranking is asked: for each run of consecutive events of one
    /// user on one item (a view, then a click, then a purchase of it: one interaction, as
    /// the evaluation protocol collapses them) that holds a positive event, its first
    /// event, with the kinds and values of the run's events.
    pub fn rank_points(&self) -> Vec<Option<Vec<(EventKind, f32)>>> {
        let mut out: Vec<Option<Vec<(EventKind, f32)>>> = vec![None; self.events.len()];
        // The open run of each user: (item, index of its first event, its events).
        let mut open: HashMap<&str, OpenRun<'_>> = HashMap::new();
        let close = |out: &mut Vec<Option<Vec<(EventKind, f32)>>>, run: OpenRun<'_>| {
            if run.3 {
                out[run.1] = Some(run.2);
            }
        };
        for (i, ev) in self.events.iter().enumerate() {
            let Some(item) = ev.action.item() else {
                continue;
            };
            let k = (ev.action.kind(), ev.action.value());
            let positive = self.is_positive(ev);
            match open.get_mut(ev.user.as_str()) {
                Some(run) if run.0 == item.as_str() => {
                    run.2.push(k);
                    run.3 |= positive;
                }
                _ => {
                    if let Some(run) = open.insert(&ev.user, (item, i, vec![k], positive)) {
                        close(&mut out, run);
                    }
                }
            }
        }
        for (_, run) in open {
            close(&mut out, run);
        }
        out
    }

    /// Whether `ev` is a positive event.
    pub fn is_positive(&self, ev: &RawEvent) -> bool {
        match &ev.action {
            Action::Click { .. } | Action::Cart { .. } | Action::Purchase { .. } => true,
            Action::Rating { value, .. } => *value >= LIKE_THRESHOLD,
            Action::View { .. } => self.implicit,
            Action::Skip { .. } | Action::Impression(_) => false,
        }
    }
}

/// Ranking figures over a span of the replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Positive events ranked.
    pub rankings: u64,
    /// Share of them whose item was in the top-k.
    pub hr: f64,
    /// Mean NDCG@k.
    pub ndcg: f64,
    /// Mean reciprocal rank (0 outside the top-k).
    pub mrr: f64,
}

#[derive(Debug, Clone, Default)]
struct Acc {
    n: u64,
    hits: u64,
    ndcg: f64,
    mrr: f64,
}

impl Acc {
    fn add(&mut self, rank: Option<usize>) {
        self.n += 1;
        if let Some(r) = rank {
            self.hits += 1;
            self.ndcg += 1.0 / ((r + 1) as f64).log2();
            self.mrr += 1.0 / r as f64;
        }
    }

    fn figures(&self) -> Figures {
        let n = self.n.max(1) as f64;
        Figures {
            rankings: self.n,
            hr: self.hits as f64 / n,
            ndcg: self.ndcg / n,
            mrr: self.mrr / n,
        }
    }
}

/// The figures of one time window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Events replayed up to the end of the window.
    pub events_to: u64,
    /// Time of the window's last event (ms).
    pub ts_to: Timestamp,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The blend weights at a point of the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightsAt {
    /// Events replayed.
    pub events: u64,
    pub weights: SourceWeights,
}

/// What one strategy did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyReport {
    pub name: String,
    pub hr: f64,
    pub ndcg: f64,
    pub mrr: f64,
    /// Share of the catalogue recommended at least once.
    pub coverage: f64,
    /// Positive events ranked.
    pub rankings: u64,
    /// The strategy's reward of the logged feedback whose item was in the slate ranked
    /// just before it (0 when the log has no feedback).
    pub reward: f64,
    /// Recommendation latency inside the engine (µs).
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    /// Recommendation latency histogram: (upper bound µs, count).
    pub latency_buckets: Vec<(f64, u64)>,
    /// For a served log: share of its impressions that the replay reproduced exactly,
    /// and how many there were.
    pub served_agreement: Option<f64>,
    pub served_impressions: u64,
    /// The same figures per time window.
    pub windows: Vec<Window>,
    /// Blend weights at each window's end.
    pub weights: Vec<WeightsAt>,
    /// Seconds this strategy's replay took.
    pub seconds: f64,
    /// Each user's sums, for the paired comparisons (not in the JSON).
    #[serde(skip)]
    pub per_user: compare::PerUser,
}

/// The result of a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// What was replayed.
    pub source: String,
    /// Events replayed (per strategy).
    pub events: u64,
    /// Wall-clock seconds of the whole replay.
    pub seconds: f64,
    /// Slate size.
    pub k: usize,
    /// Whether the replay was stopped before the end (the figures cover what ran).
    pub partial: bool,
    pub strategies: Vec<StrategyReport>,
    /// Each strategy after the first against the first, with confidence intervals.
    pub comparisons: Vec<compare::Comparison>,
    /// One line: who won on what, and whether beyond noise.
    pub verdict: String,
}

/// Progress of a replay: events done and total, over all strategies.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// The round scheduler: each user's events in order; a round is the earliest pending
/// event of up to `round` users, none further than `lookahead` past the first pending.
struct Rounds {
    queues: HashMap<Arc<str>, VecDeque<usize>>,
    heads: BTreeSet<(usize, Arc<str>)>,
    done: Vec<bool>,
    first_pending: usize,
}

impl Rounds {
    fn new(events: &[RawEvent]) -> Rounds {
        let mut names: HashMap<&str, Arc<str>> = HashMap::new();
        let mut queues: HashMap<Arc<str>, VecDeque<usize>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            let name = names
                .entry(e.user.as_str())
                .or_insert_with(|| Arc::from(e.user.as_str()));
            queues.entry(Arc::clone(name)).or_default().push_back(i);
        }
        let heads = queues
            .iter()
            .filter_map(|(u, q)| q.front().map(|&i| (i, Arc::clone(u))))
            .collect();
        Rounds {
            queues,
            heads,
            done: vec![false; events.len()],
            first_pending: 0,
        }
    }

    fn next(&mut self, round: usize, lookahead: usize) -> Vec<usize> {
        let limit = self.first_pending + lookahead;
        let mut picked = Vec::new();
        while picked.len() < round {
            let Some(first) = self.heads.first().cloned() else {
                break;
            };
            if first.0 >= limit && !picked.is_empty() {
                break;
            }
            self.heads.remove(&first);
            picked.push(first);
        }
        let mut out = Vec::with_capacity(picked.len());
        for (i, user) in picked {
            out.push(i);
            self.done[i] = true;
            if let Some(q) = self.queues.get_mut(&user) {
                q.pop_front();
                if let Some(&n) = q.front() {
                    self.heads.insert((n, user));
                }
            }
        }
        while self.first_pending < self.done.len() && self.done[self.first_pending] {
            self.first_pending += 1;
        }
        out.sort_unstable();
        out
    }
}

/// The rank (from 1) of `item` in a recommendation, if it is there.
fn rank_of(rec: &Recommendation, item: &str) -> Option<usize> {
    rec.items.iter().position(|i| i.item == item).map(|p| p + 1)
}

/// Replays `log` with one strategy on a fresh engine over a scratch store.
fn replay_one(
    log: &Log,
    strategy: &Strategy,
    cfg: &ReplayConfig,
    stop: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(StrategyReport, u64)> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let store_dir = dir.path().join("store");
    let store_config = StoreConfig {
        fsync: false,
        ..StoreConfig::default()
    };
    {
        // The catalogue first, in a fixed order: dense item ids (and so ties) are the
        // same in every run.
        let store = Store::open(&store_dir, store_config.clone())?;
        store.put_items(&log.items)?;
        store.close()?;
    }
    let engine = Engine::open(EngineConfig {
        store: store_dir,
        store_config,
        model: cfg.model.clone(),
        strategy: strategy.clone(),
        seed: cfg.seed,
        deterministic: true,
        // Nothing is evicted during a replay (an evicted state is restored only to 1e-4).
        session_ttl_s: 1e9,
        session_budget_bytes: u64::MAX,
        ..EngineConfig::default()
    })?;
    let result = run_rounds(log, strategy, cfg, &engine, stop, progress);
    let shutdown = futures_executor::block_on(engine.shutdown());
    let (mut report, done) = result?;
    shutdown?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok((report, done))
}

/// Ends a time window: its figures, and the weights in force at its end.
fn close_window(
    windows: &mut Vec<Window>,
    weights: &mut Vec<WeightsAt>,
    win: &mut Acc,
    done: usize,
    ts_to: Timestamp,
    engine: &Engine,
) {
    windows.push(Window {
        events_to: done as u64,
        ts_to,
        figures: std::mem::take(win).figures(),
    });
    weights.push(WeightsAt {
        events: done as u64,
        weights: engine.strategy().weights,
    });
}

fn run_rounds(
    log: &Log,
    strategy: &Strategy,
    cfg: &ReplayConfig,
    engine: &Engine,
    stop: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(StrategyReport, u64)> {
    let events = &log.events;
    let n = events.len();
    let window_len = n.div_ceil(cfg.windows).max(1);
    let mut rounds = Rounds::new(events);
    let points = log.rank_points();
    // The recommendation each user's open interaction answers: (item, request id).
    let mut answering: HashMap<String, (String, String)> = HashMap::new();
    let (mut total, mut win) = (Acc::default(), Acc::default());
    let mut windows = Vec::new();
    let mut weights = Vec::new();
    let mut recommended: HashSet<String> = HashSet::new();
    let (mut served, mut agreed) = (0u64, 0u64);
    let mut reward = 0.0f64;
    let mut per_user = compare::PerUser::new();
    let r = &strategy.reward;
    let mut done = 0usize;
    // The window boundary falls on the events replayed so far (rounds may straddle it).
    let mut next_window = window_len;
    let mut last_ts = events.first().map_or(0, |e| e.ts);
    while done < n {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let batch = rounds.next(cfg.round, cfg.lookahead);
        if batch.is_empty() {
            break;
        }
        // 1. The recommendations: before each positive event, and at each served
        //    impression (a slate of the same size).
        let asks: Vec<(usize, usize)> = batch
            .iter()
            .filter_map(|&i| {
                let ev = &events[i];
                match &ev.action {
                    Action::Impression(imp) => Some((i, imp.items.len().clamp(1, 1000))),
                    _ if points[i].is_some() => Some((i, cfg.k)),
                    _ => None,
                }
            })
            .collect();
        let answers: Vec<Result<Recommendation>> = futures_executor::block_on(
            futures_util::future::join_all(asks.iter().map(|&(i, k)| {
                engine.recommend(
                    &events[i].user,
                    k,
                    RecommendOptions {
                        log_impression: true,
                        ..RecommendOptions::default()
                    },
                )
            })),
        );
        for (&(i, _), answer) in asks.iter().zip(answers) {
            let rec = answer?;
            let ev = &events[i];
            match &ev.action {
                Action::Impression(imp) => {
                    served += 1;
                    let slate: Vec<&str> = rec.items.iter().map(|x| x.item.as_str()).collect();
                    if slate == imp.items.iter().map(String::as_str).collect::<Vec<_>>() {
                        agreed += 1;
                    }
                }
                action => {
                    let item = action.item().map(String::as_str).unwrap_or_default();
                    let rank = rank_of(&rec, item);
                    total.add(rank);
                    win.add(rank);
                    let mine = per_user.entry(ev.user.clone()).or_default();
                    mine.rankings += 1.0;
                    if let Some(r1) = rank {
                        mine.hits += 1.0;
                        mine.ndcg += 1.0 / ((r1 + 1) as f64).log2();
                        mine.mrr += 1.0 / r1 as f64;
                        for (kind, value) in points[i].iter().flatten() {
                            let gained = f64::from(match kind {
                                EventKind::Click => r.click,
                                EventKind::Cart => r.cart,
                                EventKind::Purchase => r.purchase,
                                EventKind::Rating if *value >= LIKE_THRESHOLD => r.like,
                                _ => 0.0,
                            });
                            reward += gained;
                            mine.reward += gained;
                        }
                    }
                    for it in &rec.items {
                        if !recommended.contains(&it.item) {
                            recommended.insert(it.item.clone());
                        }
                    }
                    answering.insert(ev.user.clone(), (item.to_owned(), rec.request_id));
                }
            }
        }
        // 2. The events (not the served impressions: the replay logs its own).
        let records: Vec<_> = batch
            .iter()
            .filter(|&&i| events[i].action.kind() != EventKind::Impression)
            .map(|&i| {
                let ev = &events[i];
                // Every event of an interaction answers the slate ranked at its start.
                let request = answering
                    .get(&ev.user)
                    .filter(|(item, _)| ev.action.item() == Some(item))
                    .map(|(_, r)| r.clone());
                engine.record_with(ev.clone(), request)
            })
            .collect();
        for r in futures_executor::block_on(futures_util::future::join_all(records)) {
            r?;
        }
        // 3. The learner applies the round.
        engine.sync_learner()?;
        done += batch.len();
        last_ts = batch
            .iter()
            .map(|&i| events[i].ts)
            .max()
            .unwrap_or(last_ts)
            .max(last_ts);
        progress(batch.len() as u64);
        if done >= next_window || done >= n {
            close_window(&mut windows, &mut weights, &mut win, done, last_ts, engine);
            while next_window <= done {
                next_window += window_len;
            }
        }
    }
    if win.n > 0 {
        close_window(&mut windows, &mut weights, &mut win, done, last_ts, engine);
    }
    let m = engine.metrics();
    let f = total.figures();
    Ok((
        StrategyReport {
            name: strategy.name.clone(),
            hr: f.hr,
            ndcg: f.ndcg,
            mrr: f.mrr,
            coverage: recommended.len() as f64 / log.items.len().max(1) as f64,
            rankings: f.rankings,
            reward,
            latency_p50_us: m.recommend_latency_us.p50,
            latency_p99_us: m.recommend_latency_us.p99,
            latency_buckets: m.recommend_latency_us.buckets,
            served_agreement: (served > 0).then(|| agreed as f64 / served as f64),
            served_impressions: served,
            windows,
            weights,
            seconds: 0.0,
            per_user,
        },
        done as u64,
    ))
}

/// Replays `log` with every strategy of `cfg` (in parallel up to `cfg.parallel`).
/// `stop` ends the replay early (the report is then marked partial); `progress` gets
/// (events done, events in all) over all strategies.
pub fn replay(
    log: &Log,
    cfg: &ReplayConfig,
    stop: &AtomicBool,
    progress: Progress<'_>,
) -> Result<ReplayReport> {
    cfg.validate()?;
    let started = Instant::now();
    let mut strategies = if cfg.strategies.is_empty() {
        vec![Strategy::default()]
    } else {
        cfg.strategies.clone()
    };
    // Names tell the strategies apart in the report.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, s) in strategies.iter_mut().enumerate() {
        if s.name.is_empty() {
            s.name = format!("strategy{}", i + 1);
        }
        let c = seen.entry(s.name.clone()).or_default();
        *c += 1;
        if *c > 1 {
            s.name = format!("{}#{}", s.name, c);
        }
    }
    let total = (log.events.len() * strategies.len()) as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let tick = |n: u64| {
        let d = done.fetch_add(n, Ordering::Relaxed) + n;
        progress(d, total);
    };
    let parallel = cfg.parallel.clamp(1, strategies.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<Slot> = (0..strategies.len())
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(strategy) = strategies.get(i) else {
                    break;
                };
                let r = replay_one(log, strategy, cfg, stop, &tick);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    let mut reports = Vec::new();
    let mut events = u64::MAX;
    for slot in slots {
        let Some(r) = slot.into_inner().unwrap_or_else(|e| e.into_inner()) else {
            continue;
        };
        let (report, done) = r?;
        events = events.min(done);
        reports.push(report);
    }
    let events = if reports.is_empty() { 0 } else { events };
    let comparisons: Vec<compare::Comparison> = reports
        .iter()
        .skip(1)
        .map(|s| {
            compare::compare(
                (&reports[0].name, &reports[0].per_user),
                (&s.name, &s.per_user),
                cfg.seed,
            )
        })
        .collect();
    let verdict = compare::verdict(&comparisons, cfg.k);
    Ok(ReplayReport {
        source: log.name.clone(),
        events,
        seconds: started.elapsed().as_secs_f64(),
        k: cfg.k,
        partial: events < log.events.len() as u64,
        strategies: reports,
        comparisons,
        verdict,
    })
}

/// Reads a strategy file (JSON), naming it after the file when it has no name.
pub fn strategy_file(path: &Path) -> Result<Strategy> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut s = Strategy::from_json(&text)
        .map_err(|e| Error::config(path.display().to_string(), e.to_string()))?;
    if s.name.is_empty() || s.name == Strategy::default().name {
        if let Some(stem) = path.file_stem() {
            s.name = stem.to_string_lossy().into_owned();
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests;
