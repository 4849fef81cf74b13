//! The simulator: synthetic users with hidden tastes respond to the slates the embedded
//! engine recommends, so strategies can be compared on reward before they meet people.
//!
//! The world is the synthetic generator's ([`crate::synth`]): its catalogue, categories
//! and sequential successor structure, and its users' generated histories as the warm-up
//! log. Each user keeps a hidden taste (their favourite categories, taken from their
//! history) and their last item. For the first part of the run users mostly follow the
//! successors of their last item (the sequential signal the attention model and the
//! transitions capture); at `change_at` their tastes change: a handful of trending items,
//! unknown before, become what everyone wants (the popularity signal). A user examines
//! the slate top-down with a position bias and clicks at most one item; a click may lead
//! to a cart and a purchase; an untouched slate may earn a skip. Every strategy runs in its
//! own engine over its own scratch store, facing the same sequence of users.
//!
//! Two references face the same users too: `oracle` (each slate is the items the user's
//! hidden taste makes most attractive right now: the best a recommender could do) and
//! `random` (a uniformly random slate: the floor). Every strategy's reward is reported as
//! a share of the oracle's, before and after the change, with its recovery time.

use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::engine::strategy::{Exploration, Learning, Reward, SourceWeights, Strategy};
use crate::engine::{Engine, EngineConfig, Feedback, RecommendOptions};
use crate::error::{Error, Result};
use crate::event::{Action, EventKind, RawEvent};
use crate::store::{Store, StoreConfig};
use crate::synth::{Generator, SynthConfig};

/// Settings of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Recommendations per strategy.
    pub steps: usize,
    /// Simulated users (their generated histories are the warm-up log).
    pub users: usize,
    /// Catalogue size.
    pub items: usize,
    /// Seed of the world, the user sequence and the responses.
    pub seed: u64,
    /// Slate size.
    pub k: usize,
    /// Attention model checkpoint (its items must be the world's `i0..`).
    pub model: Option<PathBuf>,
    /// Strategies compared (empty: `adaptive` and `frozen`).
    pub strategies: Vec<Strategy>,
    /// Share of the run after which tastes change.
    pub change_at: f64,
    /// Items that become trending at the change.
    pub trending: usize,
    /// Half-life of the popularity source, in interactions.
    pub pop_half_life: u64,
    /// The purchase world: a cart becomes a purchase by the item's own conversion rate
    /// (hidden, unrelated to what draws clicks; [`SynthConfig::purchase_by_item`]) instead
    /// of half the time. With a purchase-only reward ([`purchase_strategies`]) only the
    /// model's purchase head can tell what sells from what is clicked.
    pub purchase_world: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            steps: 20_000,
            users: 1_000,
            items: 500,
            seed: 42,
            k: 10,
            model: None,
            strategies: Vec::new(),
            change_at: 0.5,
            trending: 20,
            pop_half_life: 2_000,
            purchase_world: false,
        }
    }
}

/// The two default strategies: the same starting weights and exploration, one learning
/// its weights online and one never moving them.
pub fn default_strategies() -> Vec<Strategy> {
    let base = Strategy {
        weights: SourceWeights {
            seq: 1.0,
            like: 0.1,
            purchase: 0.1,
            itemknn: 0.3,
            markov: 0.5,
            pop: 0.2,
            // The simulator's items have no text encoder behind them.
            text: 0.0,
        },
        exploration: Exploration::Epsilon { epsilon: 0.1 },
        ..Strategy::default()
    };
    let mut adaptive = base.clone();
    adaptive.name = "adaptive".into();
    adaptive.learning = Learning {
        adaptive: true,
        learning_rate: 1.0,
        update_every: 32,
    };
    let mut frozen = base;
    frozen.name = "frozen".into();
    frozen.learning.adaptive = false;
    vec![adaptive, frozen]
}

/// The purchase world's strategies: purchases alone earn (5 each), and the same adaptive
/// learner runs with the task heads (`heads`, starting at the default strategy's weights)
/// and without them (`no-heads`: like and purchase pinned at 0).
pub fn purchase_strategies() -> Vec<Strategy> {
    let adaptive = default_strategies().remove(0);
    let reward = Reward {
        click: 0.0,
        cart: 0.0,
        purchase: 5.0,
        like: 0.0,
        skip: 0.0,
    };
    let heads = Strategy {
        name: "heads".into(),
        reward,
        ..adaptive.clone()
    };
    let mut off = Strategy {
        name: "no-heads".into(),
        reward,
        pinned: vec!["like".into(), "purchase".into()],
        ..adaptive
    };
    off.weights.like = 0.0;
    off.weights.purchase = 0.0;
    vec![heads, off]
}

/// One strategy's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyResult {
    /// The strategy's name.
    pub name: String,
    /// Cumulative reward (click 1, cart 2, purchase 5 by default).
    pub reward: f64,
    /// Share of slates that earned a click.
    pub ctr: f64,
    /// Purchases.
    pub purchases: u64,
    /// Clicks.
    pub clicks: u64,
    /// Reward before the change of tastes.
    pub reward_before_change: f64,
    /// Reward after it.
    pub reward_after_change: f64,
    /// Blend weights at the start.
    pub weights_start: SourceWeights,
    /// Blend weights at the end.
    pub weights_end: SourceWeights,
    /// Blend weights through the run: at the start and after every twentieth of it.
    #[serde(default)]
    pub weights_over_time: Vec<WeightsAtStep>,
    /// Median and 99th-percentile recommendation latency, µs.
    pub latency_p50_us: f64,
    /// 99th percentile.
    pub latency_p99_us: f64,
    /// Reward before the change as a share of the oracle's before it.
    #[serde(default)]
    pub share_of_oracle_before: Option<f64>,
    /// Reward after the change as a share of the oracle's after it.
    #[serde(default)]
    pub share_of_oracle_after: Option<f64>,
    /// Steps after the change until the strategy's reward rate (over a window of
    /// [`recovery_window`] steps) is back to 90% of its own rate before the change; `None`
    /// if it never is within the run.
    #[serde(default)]
    pub recovery_steps: Option<usize>,
}

/// The blend weights in force after `step` recommendations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsAtStep {
    pub step: usize,
    pub weights: SourceWeights,
}

/// The window over which a reward rate is measured for the recovery time: 1% of the run,
/// at least 50 steps.
pub fn recovery_window(steps: usize) -> usize {
    (steps / 100).max(50)
}

/// Steps after `change` until the mean of `series` over the last `window` steps is at
/// least 90% of its mean before `change`.
fn recovery(series: &[f64], change: usize, window: usize) -> Option<usize> {
    if change == 0 || change >= series.len() {
        return None;
    }
    let before = series[..change].iter().sum::<f64>() / change as f64;
    let target = 0.9 * before * window as f64;
    let mut sum: f64 = 0.0;
    for s in change..series.len() {
        sum += series[s];
        if s >= change + window {
            sum -= series[s - window];
        }
        if s + 1 >= change + window && sum >= target {
            return Some(s + 1 - change);
        }
    }
    None
}

/// What `attune simulate --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// Recommendations per strategy.
    pub steps: usize,
    /// One entry per strategy, in the order given, then the references `oracle` and
    /// `random`.
    pub strategies: Vec<StrategyResult>,
    /// The step at which tastes changed.
    #[serde(default)]
    pub change_step: usize,
    /// The window of the recovery time, in steps.
    #[serde(default)]
    pub recovery_window: usize,
}

/// The two reference slates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reference {
    Oracle,
    Random,
}

/// The step at which tastes change.
fn change_step(cfg: &SimConfig) -> usize {
    (cfg.steps as f64 * cfg.change_at) as usize
}

/// The draws every run shares: which user comes next, and how users respond.
fn shared_draws(seed: u64) -> (Xoshiro256PlusPlus, Xoshiro256PlusPlus) {
    (
        Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x7573_6572),
        Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x7265_7370),
    )
}

/// What one run earned: the reward of each step, clicks and purchases.
struct Tally {
    reward: Reward,
    series: Vec<f64>,
    clicks: u64,
    purchases: u64,
}

impl Tally {
    fn new(reward: Reward, steps: usize) -> Tally {
        Tally {
            reward,
            series: Vec::with_capacity(steps),
            clicks: 0,
            purchases: 0,
        }
    }

    /// Counts one step's answers to a slate.
    fn push(&mut self, answers: &[(EventKind, u32)]) {
        let mut r = 0.0f64;
        for (kind, _) in answers {
            match kind {
                EventKind::Click => {
                    self.clicks += 1;
                    r += f64::from(self.reward.click);
                }
                EventKind::Cart => r += f64::from(self.reward.cart),
                EventKind::Purchase => {
                    self.purchases += 1;
                    r += f64::from(self.reward.purchase);
                }
                _ => {}
            }
        }
        self.series.push(r);
    }

    /// The run's figures under `name`, split at step `change`; no weights, no latency
    /// (a strategy's run fills those in), no shares yet.
    fn result(&self, name: String, change: usize) -> StrategyResult {
        let total: f64 = self.series.iter().sum();
        let before: f64 = self.series[..change.min(self.series.len())].iter().sum();
        let zero = SourceWeights::splat(0.0);
        StrategyResult {
            name,
            reward: total,
            ctr: self.clicks as f64 / self.series.len().max(1) as f64,
            purchases: self.purchases,
            clicks: self.clicks,
            reward_before_change: before,
            reward_after_change: total - before,
            weights_start: zero,
            weights_end: zero,
            weights_over_time: Vec::new(),
            latency_p50_us: 0.0,
            latency_p99_us: 0.0,
            share_of_oracle_before: None,
            share_of_oracle_after: None,
            recovery_steps: None,
        }
    }
}

/// A reference's run: the same users, in the same order, answering with the same random
/// draws as the strategies' runs; no engine.
fn reference(world: &World, cfg: &SimConfig, reward: Reward, which: Reference) -> Tally {
    let mut users = world.users.clone();
    let (mut pick, mut respond) = shared_draws(cfg.seed);
    let mut draw = Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x7261_6e64);
    let n_items = cfg.items as u32;
    let k = cfg.k.min(cfg.items);
    let change = change_step(cfg);
    let mut tally = Tally::new(reward, cfg.steps);
    let mut scored: Vec<(f64, u32)> = Vec::with_capacity(cfg.items);
    for step in 0..cfg.steps {
        let u = pick.gen_range(0..cfg.users);
        let changed = step >= change;
        let slate: Vec<u32> = match which {
            Reference::Oracle => {
                scored.clear();
                scored.extend(
                    (0..n_items)
                        .map(|i| (world.expected_reward(&users[u], i, changed, &reward), i)),
                );
                scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                scored.iter().take(k).map(|s| s.1).collect()
            }
            Reference::Random => {
                let mut slate: Vec<u32> = Vec::with_capacity(k);
                while slate.len() < k {
                    let i = draw.gen_range(0..n_items);
                    if !slate.contains(&i) {
                        slate.push(i);
                    }
                }
                slate
            }
        };
        let answers = world.respond(&mut users[u], &slate, changed, &mut respond);
        tally.push(&answers);
    }
    tally
}

/// A simulated user's hidden state.
/// A simulated user's hidden taste: favourite categories (weights) and last item.
#[derive(Debug, Clone)]
pub struct SimUser {
    favourites: Vec<(usize, f64)>,
    last: Option<u32>,
}

/// Runs the simulation; `progress(strategy, step)` is called every 256 steps.
pub fn simulate(cfg: &SimConfig, progress: &mut dyn FnMut(usize, usize)) -> Result<SimReport> {
    if cfg.steps == 0 || cfg.users == 0 {
        return Err(Error::config("steps/users", "must be at least 1"));
    }
    if !(0.0..=1.0).contains(&cfg.change_at) {
        return Err(Error::config(
            "change_at",
            format!("must be in [0, 1], got {}", cfg.change_at),
        ));
    }
    if !(1..=100).contains(&cfg.k) {
        return Err(Error::config(
            "k",
            format!("must be in [1, 100], got {}", cfg.k),
        ));
    }
    let gen = Generator::new(SynthConfig {
        users: cfg.users,
        items: cfg.items,
        seed: cfg.seed,
        purchase_by_item: cfg.purchase_world,
        ..SynthConfig::default()
    })?;
    if cfg.trending == 0 || cfg.trending > cfg.items {
        return Err(Error::config(
            "trending",
            format!(
                "must be in [1, items = {}], got {}",
                cfg.items, cfg.trending
            ),
        ));
    }
    let strategies = if !cfg.strategies.is_empty() {
        cfg.strategies.clone()
    } else if cfg.purchase_world {
        purchase_strategies()
    } else {
        default_strategies()
    };
    for s in &strategies {
        s.validate()?;
    }
    let world = World::new(gen, cfg.users, cfg.trending, cfg.seed);
    let reward = strategies[0].reward;
    let change = change_step(cfg);
    let mut results = Vec::new();
    let mut all_series: Vec<Vec<f64>> = Vec::new();
    for (si, strategy) in strategies.iter().enumerate() {
        let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let store_dir = dir.path().join("store");
        let store_config = StoreConfig {
            fsync: false,
            ..StoreConfig::default()
        };
        {
            let store = Store::open(&store_dir, store_config.clone())?;
            store.put_items(&world.gen.items().collect::<Vec<_>>())?;
            for chunk in world.histories.chunks(256) {
                let evs: Vec<RawEvent> = chunk.iter().flatten().cloned().collect();
                store.append(&evs)?;
            }
            store.close()?;
        }
        let mut strategy = strategy.clone();
        strategy.batching.max_queue_delay_us = 0;
        let engine = Engine::open(EngineConfig {
            store: store_dir,
            store_config,
            model: cfg.model.clone(),
            strategy: strategy.clone(),
            pop_half_life: cfg.pop_half_life,
            seed: cfg.seed,
            ..EngineConfig::default()
        })?
        .blocking();
        let weights_start = engine.strategy().weights;
        let every = (cfg.steps / 20).max(1);
        let mut weights_over_time = vec![WeightsAtStep {
            step: 0,
            weights: weights_start,
        }];
        let mut users = world.users.clone();
        let (mut pick, mut respond) = shared_draws(cfg.seed);
        let mut tally = Tally::new(reward, cfg.steps);
        for step in 0..cfg.steps {
            if step % 256 == 0 {
                progress(si, step);
            }
            let u = pick.gen_range(0..cfg.users);
            let name = format!("u{u}");
            let rec = engine.recommend(&name, cfg.k, RecommendOptions::default())?;
            let changed = step >= change;
            let slate: Vec<u32> = rec
                .items
                .iter()
                .filter_map(|i| i.item.strip_prefix('i').and_then(|n| n.parse().ok()))
                .collect();
            let feedback = |kind: EventKind, item: u32| Feedback {
                user: name.clone(),
                item: format!("i{item}"),
                kind,
                value: None,
                request_id: Some(rec.request_id.clone()),
                ts: None,
            };
            let answers = world.respond(&mut users[u], &slate, changed, &mut respond);
            for &(kind, item) in &answers {
                engine.feedback(feedback(kind, item))?;
            }
            tally.push(&answers);
            // A consistent point: every count and weight update of this step is in force.
            engine.engine().sync_learner()?;
            if (step + 1) % every == 0 {
                weights_over_time.push(WeightsAtStep {
                    step: step + 1,
                    weights: engine.strategy().weights,
                });
            }
        }
        progress(si, cfg.steps);
        engine.engine().sync_learner()?;
        let m = engine.metrics();
        let name = if strategy.name.is_empty() {
            format!("strategy{}", si + 1)
        } else {
            strategy.name.clone()
        };
        results.push(StrategyResult {
            weights_start,
            weights_end: engine.strategy().weights,
            weights_over_time,
            latency_p50_us: m.recommend_latency_us.p50,
            latency_p99_us: m.recommend_latency_us.p99,
            ..tally.result(name, change)
        });
        all_series.push(tally.series);
        engine.shutdown()?;
    }
    for (which, name) in [(Reference::Oracle, "oracle"), (Reference::Random, "random")] {
        let tally = reference(&world, cfg, reward, which);
        results.push(tally.result(name.into(), change));
        all_series.push(tally.series);
    }
    let window = recovery_window(cfg.steps);
    let oracle = results
        .iter()
        .find(|r| r.name == "oracle")
        .map(|o| (o.reward_before_change, o.reward_after_change));
    for (r, series) in results.iter_mut().zip(&all_series) {
        if let Some((ob, oa)) = oracle {
            r.share_of_oracle_before = (ob > 0.0).then(|| r.reward_before_change / ob);
            r.share_of_oracle_after = (oa > 0.0).then(|| r.reward_after_change / oa);
        }
        r.recovery_steps = recovery(series, change, window);
    }
    Ok(SimReport {
        steps: cfg.steps,
        strategies: results,
        change_step: change,
        recovery_window: window,
    })
}

/// The simulated world: the generator's catalogue, its users with their hidden tastes,
/// and the items that start trending when tastes change. The simulator and `attune
/// demo` (over HTTP) share it.
pub struct World {
    /// The generator of the world.
    pub gen: Generator,
    /// Each user's generated history (the warm-up log).
    pub histories: Vec<Vec<RawEvent>>,
    /// Each user's hidden taste and last item, as at the start.
    pub users: Vec<SimUser>,
    /// Items everyone wants once tastes have changed.
    pub trending: Vec<u32>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("users", &self.users.len())
            .field("trending", &self.trending)
            .finish()
    }
}

impl World {
    /// The world of `users` generated users; `trending` items picked by `seed`.
    pub fn new(gen: Generator, users: usize, trending: usize, seed: u64) -> World {
        let histories: Vec<Vec<RawEvent>> = (0..users).map(|u| gen.user_events(u)).collect();
        let users: Vec<SimUser> = histories.iter().map(|h| sim_user(&gen, h)).collect();
        let mut world_rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x0074_7265_6e64);
        let n_items = gen.items().count().max(1) as u32;
        let mut picked: Vec<u32> = Vec::new();
        while picked.len() < trending.min(n_items as usize) {
            let i = world_rng.gen_range(0..n_items);
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        World {
            gen,
            histories,
            users,
            trending: picked,
        }
    }

    /// How `user` answers a slate (item numbers, best first): they examine it top-down
    /// with a position bias and click at most one item; a click may lead to a cart and a
    /// purchase; an untouched slate may earn a skip of its first item. Returns the
    /// feedback, in order; the user's last item moves to the one clicked.
    pub fn respond(
        &self,
        user: &mut SimUser,
        slate: &[u32],
        changed: bool,
        rng: &mut impl Rng,
    ) -> Vec<(EventKind, u32)> {
        let mut out = Vec::new();
        let mut clicked = None;
        for (pos, &item) in slate.iter().enumerate() {
            let exam = 1.0 / (1.0 + pos as f64 / 2.0);
            let a = attraction(&self.gen, user, item, changed, &self.trending);
            if rng.gen::<f64>() < exam * a {
                clicked = Some((item, a));
                break;
            }
        }
        match clicked {
            Some((item, a)) => {
                out.push((EventKind::Click, item));
                if rng.gen::<f64>() < carts(a) {
                    out.push((EventKind::Cart, item));
                    if rng.gen::<f64>() < self.buys(item) {
                        out.push((EventKind::Purchase, item));
                    }
                }
                user.last = Some(item);
            }
            None => {
                if let Some(&first) = slate.first() {
                    if rng.gen::<f64>() < 0.3 {
                        out.push((EventKind::Skip, first));
                    }
                }
            }
        }
        out
    }
}

impl World {
    /// The chance that a cart of `item` becomes a purchase: the item's conversion rate in
    /// the purchase world, else one half.
    fn buys(&self, item: u32) -> f64 {
        if self.gen.purchase_by_item() {
            self.gen.conversion(item)
        } else {
            0.5
        }
    }

    /// What showing `item` first to `user` is expected to earn under `reward`: a click,
    /// then maybe a cart and a purchase ([`World::respond`]'s chances). The oracle ranks by
    /// it; in the default world it orders items as their attraction does.
    fn expected_reward(&self, user: &SimUser, item: u32, changed: bool, reward: &Reward) -> f64 {
        let a = attraction(&self.gen, user, item, changed, &self.trending);
        a * (f64::from(reward.click)
            + carts(a) * (f64::from(reward.cart) + self.buys(item) * f64::from(reward.purchase)))
    }
}

/// The chance that a click on an item of attraction `a` becomes a cart.
fn carts(a: f64) -> f64 {
    0.2 + 0.4 * a
}

/// A user's favourite categories (by share of their history) and last item.
fn sim_user(gen: &Generator, history: &[RawEvent]) -> SimUser {
    let mut counts: std::collections::HashMap<usize, f64> = Default::default();
    let mut last = None;
    for ev in history {
        if let Action::View { item, .. } = &ev.action {
            if let Some(i) = item.strip_prefix('i').and_then(|n| n.parse::<u32>().ok()) {
                *counts.entry(gen.category_of(i as usize)).or_default() += 1.0;
                last = Some(i);
            }
        }
    }
    let mut favourites: Vec<(usize, f64)> = counts.into_iter().collect();
    favourites.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    favourites.truncate(3);
    let top = favourites.first().map_or(1.0, |f| f.1);
    for f in &mut favourites {
        f.1 /= top;
    }
    SimUser { favourites, last }
}

/// Probability that `user` clicks `item` once they examine it.
fn attraction(gen: &Generator, user: &SimUser, item: u32, changed: bool, trending: &[u32]) -> f64 {
    let taste = user
        .favourites
        .iter()
        .find(|f| f.0 == gen.category_of(item as usize))
        .map_or(0.0, |f| f.1);
    if changed {
        if trending.contains(&item) {
            0.6
        } else {
            0.02 + 0.03 * taste
        }
    } else {
        let successor = user
            .last
            .and_then(|l| gen.successors(l as usize).iter().position(|&s| s == item));
        match successor {
            Some(rank) => 0.6 / (1.0 + rank as f64),
            None => 0.03 + 0.1 * taste + 0.02 * gen.quality(item),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Option<PathBuf> {
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/synthetic-default"))
    }

    #[test]
    fn adaptive_beats_frozen_on_a_small_run() {
        // The change comes early so that most of the short run is spent adapting to it.
        let cfg = SimConfig {
            steps: 3000,
            users: 300,
            change_at: 0.25,
            model: model(),
            ..SimConfig::default()
        };
        let report = simulate(&cfg, &mut |_, _| {}).expect("simulate");
        let (a, f) = (&report.strategies[0], &report.strategies[1]);
        assert_eq!((a.name.as_str(), f.name.as_str()), ("adaptive", "frozen"));
        assert!(
            a.reward > f.reward,
            "adaptive {} vs frozen {}",
            a.reward,
            f.reward
        );
        assert_eq!(f.weights_start, f.weights_end, "frozen weights moved");
        assert_ne!(
            a.weights_start, a.weights_end,
            "adaptive weights never moved"
        );
        // The references: the oracle bounds every strategy, random is the floor.
        let names: Vec<&str> = report.strategies.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["adaptive", "frozen", "oracle", "random"]);
        let (o, r) = (&report.strategies[2], &report.strategies[3]);
        assert_eq!(o.share_of_oracle_before, Some(1.0));
        assert_eq!(o.share_of_oracle_after, Some(1.0));
        for s in [a, f] {
            assert!(
                s.reward < o.reward && s.reward > r.reward,
                "{s:?} vs {o:?}, {r:?}"
            );
            let after = s.share_of_oracle_after.expect("share");
            assert!(after > 0.0 && after < 1.0, "{after}");
        }
        assert_eq!(report.change_step, 750);
        assert_eq!(report.recovery_window, 50);
        // Adapting recovers; the frozen blend recovers later, or never.
        let ra = a.recovery_steps.expect("adaptive recovers");
        assert!(
            f.recovery_steps.is_none_or(|rf| rf > ra),
            "{ra} vs {:?}",
            f.recovery_steps
        );
    }

    #[test]
    fn the_purchase_world_runs_heads_against_no_heads_under_the_oracle() {
        let cfg = SimConfig {
            steps: 2000,
            users: 300,
            purchase_world: true,
            model: Some(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/synthetic-purchase"),
            ),
            ..SimConfig::default()
        };
        let report = simulate(&cfg, &mut |_, _| {}).expect("simulate");
        let names: Vec<&str> = report.strategies.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["heads", "no-heads", "oracle", "random"]);
        let oracle = report.strategies[2].reward;
        for s in &report.strategies {
            assert!(
                s.reward <= oracle,
                "{} {} above the oracle {oracle}",
                s.name,
                s.reward
            );
            // Purchases alone earn, 5 each.
            assert_eq!(s.reward, 5.0 * s.purchases as f64, "{}", s.name);
        }
        let (heads, off) = (&report.strategies[0], &report.strategies[1]);
        assert_eq!(heads.weights_over_time.len(), 21);
        assert_eq!(heads.weights_over_time[20].step, 2000);
        // The pinned heads never move; the learner moves the others' weights.
        assert!(off
            .weights_over_time
            .iter()
            .all(|w| w.weights.purchase == 0.0));
        assert!(heads
            .weights_over_time
            .windows(2)
            .any(|w| w[0].weights != w[1].weights));
    }

    #[test]
    fn recovery_is_the_first_full_window_back_at_ninety_percent() {
        // 1.0 a step before the change at 10; 0 for 5 steps, then 1.0 again.
        let mut series = vec![1.0f64; 10];
        series.extend([0.0; 5]);
        series.extend([1.0; 20]);
        // Window 4: the first window after the change with mean >= 0.9 is steps 15..=18
        // (all 1.0), complete after step 18: 19 - 10 = 9 steps after the change.
        assert_eq!(recovery(&series, 10, 4), Some(9));
        assert_eq!(recovery(&series[..17], 10, 4), None);
        assert_eq!(recovery(&series, 0, 4), None);
    }

    #[test]
    fn same_seed_same_report() {
        let cfg = SimConfig {
            steps: 400,
            users: 50,
            ..SimConfig::default()
        };
        let a = simulate(&cfg, &mut |_, _| {}).expect("a");
        let b = simulate(&cfg, &mut |_, _| {}).expect("b");
        assert_eq!(
            a.strategies.iter().map(|s| s.reward).collect::<Vec<_>>(),
            b.strategies.iter().map(|s| s.reward).collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let cfg = SimConfig {
            change_at: 2.0,
            ..SimConfig::default()
        };
        assert!(simulate(&cfg, &mut |_, _| {})
            .expect_err("change_at")
            .to_string()
            .contains("change_at"));
    }
}
