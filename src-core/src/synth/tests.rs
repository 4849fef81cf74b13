//! The generator's tests: determinism, well-formed catalogue and events, validation, and
//! the signal the data carries (successors, popularity, tastes).

use super::*;
use crate::event::{Action, EventKind, Item, RawEvent};
use std::collections::{BTreeSet, HashMap};

fn small() -> SynthConfig {
    SynthConfig {
        users: 200,
        items: 300,
        ..SynthConfig::default()
    }
}

fn generator(cfg: SynthConfig) -> Generator {
    Generator::new(cfg).expect("test config is valid")
}

fn item_index(id: &str) -> usize {
    id.strip_prefix('i')
        .and_then(|n| n.parse().ok())
        .expect("item ids are i{n}")
}

fn events_of(g: &Generator, users: std::ops::Range<usize>) -> Vec<RawEvent> {
    users.flat_map(|u| g.user_events(u)).collect()
}

#[test]
fn default_config_is_valid() {
    SynthConfig::default().validate().expect("default is valid");
}

#[test]
fn config_parses_from_json_with_defaults() {
    let cfg: SynthConfig =
        serde_json::from_str(r#"{"users": 7, "seed": 1, "follow_prob": 0.7}"#).expect("parses");
    assert_eq!(cfg.users, 7);
    assert_eq!(cfg.seed, 1);
    assert_eq!(cfg.follow_prob, 0.7);
    assert_eq!(cfg.items, SynthConfig::default().items);
}

#[test]
fn same_seed_same_data() {
    let a = generator(small());
    let b = generator(small());
    assert!(a.items().eq(b.items()));
    for u in [0, 1, 57, 199] {
        assert_eq!(a.user_events(u), b.user_events(u));
    }
}

#[test]
fn different_seed_different_data() {
    let a = generator(small());
    let b = generator(SynthConfig {
        seed: 43,
        ..small()
    });
    assert_ne!(events_of(&a, 0..20), events_of(&b, 0..20));
    let titles = |g: &Generator| g.items().map(|i| i.title).collect::<Vec<_>>();
    assert_ne!(titles(&a), titles(&b));
}

#[test]
fn a_user_does_not_depend_on_the_number_of_users() {
    let few = generator(SynthConfig {
        users: 10,
        ..small()
    });
    let many = generator(SynthConfig {
        users: 10_000,
        ..small()
    });
    assert_eq!(few.user_events(3), many.user_events(3));
}

#[test]
fn events_are_time_ordered_and_ids_in_range() {
    let cfg = small();
    let g = generator(cfg.clone());
    for u in 0..cfg.users {
        let events = g.user_events(u);
        assert!(!events.is_empty());
        assert!(events[0].ts >= cfg.start_ts);
        assert!(events.windows(2).all(|w| w[0].ts < w[1].ts), "user {u}");
        for e in &events {
            assert_eq!(e.user, format!("u{u}"));
            let item = e.action.item().expect("no impressions");
            assert!(item_index(item) < cfg.items);
        }
    }
}

#[test]
fn catalogue_is_complete_and_well_formed() {
    let cfg = small();
    let g = generator(cfg.clone());
    let items: Vec<Item> = g.items().collect();
    assert_eq!(items.len(), cfg.items);
    let mut categories = BTreeSet::new();
    for (n, item) in items.iter().enumerate() {
        assert_eq!(item.id, format!("i{n}"));
        assert_eq!(item.title.split(' ').count(), 3, "{}", item.title);
        assert_eq!(item.tags[0], item.attrs["category"]);
        assert!(item.tags.len() <= 2);
        let price: f32 = item.attrs["price"].parse().expect("price is a number");
        assert!(price >= 0.99);
        categories.insert(item.tags[0].clone());
        let successors = g.successors(n);
        assert_eq!(successors.len(), cfg.successors);
        assert!(successors
            .iter()
            .all(|&s| s as usize != n && (s as usize) < cfg.items));
    }
    assert_eq!(categories.len(), cfg.categories);
}

#[test]
fn every_kind_but_impression_appears() {
    let g = generator(small());
    let kinds: BTreeSet<EventKind> = events_of(&g, 0..200)
        .iter()
        .map(|e| e.action.kind())
        .collect();
    let expected: BTreeSet<EventKind> = EventKind::ALL
        .into_iter()
        .filter(|k| *k != EventKind::Impression)
        .collect();
    assert_eq!(kinds, expected);
}

#[test]
fn ratings_are_one_to_five() {
    let g = generator(small());
    for e in events_of(&g, 0..200) {
        if let Action::Rating { value, .. } = e.action {
            assert!((1.0..=5.0).contains(&value) && value.fract() == 0.0);
        }
    }
}

#[test]
fn validate_rejects_bad_configs_naming_the_field() {
    type Breaks = fn(&mut SynthConfig);
    let cases: [(&str, Breaks); 20] = [
        ("users", |c| c.users = 0),
        ("items", |c| c.items = 1),
        ("categories", |c| c.categories = 0),
        ("categories", |c| c.categories = c.items + 1),
        ("favourites", |c| c.favourites = 0),
        ("favourites", |c| c.favourites = c.categories + 1),
        ("successors", |c| c.successors = 0),
        ("successors", |c| {
            (c.items, c.categories, c.favourites, c.successors) = (3, 1, 1, 3)
        }),
        ("sessions_per_user", |c| c.sessions_per_user = 0.5),
        ("session_len", |c| c.session_len = f64::NAN),
        ("span_days", |c| c.span_days = -1.0),
        ("session_gap_hours", |c| c.session_gap_hours = f64::INFINITY),
        ("item_gap_secs", |c| c.item_gap_secs = -1.0),
        ("item_zipf", |c| c.item_zipf = -0.1),
        ("category_zipf", |c| c.category_zipf = f64::NAN),
        ("taste_drift", |c| c.taste_drift = -1.0),
        ("explore_prob", |c| c.explore_prob = 1.5),
        ("follow_prob", |c| c.follow_prob = -0.1),
        ("successor_same_category", |c| {
            c.successor_same_category = f64::NAN
        }),
        ("favourite_switch_prob", |c| c.favourite_switch_prob = 2.0),
    ];
    for (field, breaks) in cases {
        let mut cfg = SynthConfig::default();
        breaks(&mut cfg);
        let message = cfg.validate().expect_err(field).to_string();
        assert!(message.contains(field), "{field}: {message}");
        assert!(Generator::new(cfg).is_err());
    }
}

#[test]
fn tiny_config_works() {
    let cfg = SynthConfig {
        users: 1,
        items: 2,
        categories: 1,
        favourites: 1,
        successors: 1,
        ..SynthConfig::default()
    };
    let g = generator(cfg);
    assert_eq!(g.successors(0), &[1]);
    assert_eq!(g.successors(1), &[0]);
    assert!(!g.user_events(0).is_empty());
}

/// The sequence of distinct consecutive items each user viewed.
fn viewed_sequences(g: &Generator, users: usize) -> Vec<Vec<usize>> {
    (0..users)
        .map(|u| {
            let mut seq: Vec<usize> = Vec::new();
            for e in g.user_events(u) {
                if let Action::View { item, .. } = &e.action {
                    seq.push(item_index(item));
                }
            }
            seq
        })
        .collect()
}

#[test]
fn next_item_is_often_a_successor() {
    let cfg = small();
    let g = generator(cfg.clone());
    let (mut hits, mut pairs) = (0usize, 0usize);
    for seq in viewed_sequences(&g, cfg.users) {
        for w in seq.windows(2) {
            pairs += 1;
            hits += g.successors(w[0]).contains(&(w[1] as u32)) as usize;
        }
    }
    let rate = hits as f64 / pairs as f64;
    let chance = cfg.successors as f64 / cfg.items as f64;
    assert!(rate > 0.3, "successor rate {rate}");
    assert!(
        rate > 20.0 * chance,
        "successor rate {rate}, chance {chance}"
    );
}

#[test]
fn popularity_is_skewed() {
    let cfg = small();
    let g = generator(cfg.clone());
    let mut counts = vec![0usize; cfg.items];
    for seq in viewed_sequences(&g, cfg.users) {
        for i in seq {
            counts[i] += 1;
        }
    }
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let total: usize = counts.iter().sum();
    let top: usize = counts[..cfg.items / 10].iter().sum();
    assert!(
        top as f64 / total as f64 > 0.3,
        "top 10% share {top}/{total}"
    );
}

#[test]
fn users_keep_to_a_few_categories() {
    let cfg = small();
    let g = generator(cfg.clone());
    let mut share_sum = 0.0;
    for seq in viewed_sequences(&g, cfg.users) {
        let mut per_category: HashMap<usize, usize> = HashMap::new();
        for &i in &seq {
            *per_category.entry(g.category_of(i)).or_default() += 1;
        }
        let mut counts: Vec<usize> = per_category.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        share_sum += counts.iter().take(cfg.favourites).sum::<usize>() as f64 / seq.len() as f64;
    }
    let mean_share = share_sum / cfg.users as f64;
    assert!(
        mean_share > 0.8,
        "mean top-{} share {mean_share}",
        cfg.favourites
    );
}

/// Throughput, for release builds:
/// `cargo test --release -p attune --lib synth::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn throughput() {
    let cfg = SynthConfig {
        users: 1_000_000,
        items: 1_000_000,
        categories: 200,
        ..SynthConfig::default()
    };
    let started = std::time::Instant::now();
    let g = generator(cfg);
    let build = started.elapsed();
    let started = std::time::Instant::now();
    let items = g.items().count();
    let items_time = started.elapsed();
    let started = std::time::Instant::now();
    let users = 50_000;
    let events: usize = (0..users).map(|u| g.user_events(u).len()).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "build {build:?}; {items} items in {items_time:?}; {users} users, {events} events in {secs:.3} s: {:.2} M events/s single-threaded",
        events as f64 / secs / 1e6
    );
    let started = std::time::Instant::now();
    use rayon::prelude::*;
    let events: usize = (0..4 * users)
        .into_par_iter()
        .map(|u| g.user_events(u).len())
        .sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "parallel ({} threads): {events} events in {secs:.3} s: {:.2} M events/s",
        rayon::current_num_threads(),
        events as f64 / secs / 1e6
    );
}

#[test]
fn in_the_purchase_world_carts_convert_by_the_items_own_rate() {
    // Purchases per cart, for the items the conversion rate puts low and high.
    let ratio = |purchase_by_item: bool| {
        let g = generator(SynthConfig {
            users: 3000,
            items: 300,
            purchase_by_item,
            ..SynthConfig::default()
        });
        let (mut carts, mut buys) = ([0u32; 2], [0u32; 2]);
        for e in events_of(&g, 0..3000) {
            let (item, bought) = match &e.action {
                Action::Cart { item, .. } => (item, false),
                Action::Purchase { item, .. } => (item, true),
                _ => continue,
            };
            let c = g.conversion(item_index(item) as u32);
            let group = match c {
                c if c < 0.3 => 0,
                c if c >= 0.7 => 1,
                _ => continue,
            };
            if bought {
                buys[group] += 1;
            } else {
                carts[group] += 1;
            }
        }
        [0, 1].map(|g| f64::from(buys[g]) / f64::from(carts[g].max(1)))
    };
    let [low, high] = ratio(true);
    assert!(
        high > low + 0.4,
        "low-conversion items {low:.2}, high {high:.2}"
    );
    // Elsewhere the rate means nothing: both groups convert alike.
    let [low, high] = ratio(false);
    assert!(
        (high - low).abs() < 0.1,
        "default world: {low:.2} vs {high:.2}"
    );
}
