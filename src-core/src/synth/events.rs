//! Simulating one user: sessions, the items reached (a successor of the previous item
//! or a pick by taste), and each item's funnel of events with its timestamps.

use super::catalogue::Generator;
use super::random::{exponential, gaussian, geometric, sample_cdf, splitmix64};
use super::taste::Taste;
use crate::event::{Action, Event, RawEvent, Timestamp};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const SECOND_MS: f64 = 1_000.0;
const HOUR_MS: f64 = 3_600_000.0;
const DAY_MS: f64 = 86_400_000.0;

/// Shortest gap between two sessions of a user, in ms (on top of the exponential gap).
const MIN_SESSION_GAP_MS: f64 = 30.0 * 60.0 * SECOND_MS;
/// Shortest think time between two items of a session, in ms.
const MIN_ITEM_GAP_MS: f64 = SECOND_MS;
/// Median view dwell for an item of zero affinity, in ms; it triples at full affinity.
const DWELL_MEDIAN_MS: f64 = 8_000.0;
/// Spread of the log-normal dwell (sd of its log).
const DWELL_LOG_SD: f64 = 0.7;
/// Bounds of a view's dwell, in ms.
const DWELL_RANGE_MS: (f64, f64) = (300.0, 600_000.0);
/// Mean delays between the funnel steps click→cart, cart→purchase, purchase→rating, in ms.
const CART_DELAY_MS: f64 = 20_000.0;
const PURCHASE_DELAY_MS: f64 = 60_000.0;
const RATING_DELAY_MS: f64 = 30_000.0;
/// Probability that a purchase is followed by a rating.
const RATING_PROB: f64 = 0.5;

impl Generator {
    /// All events of user `user` (id `u{user}`), in time order (timestamps in ms, strictly
    /// increasing).
    ///
    /// Depends only on the seed, the behaviour parameters and `user`, not on other users nor
    /// on [`SynthConfig::users`](super::SynthConfig::users): users can be generated in
    /// parallel or streamed.
    pub fn user_events(&self, user: usize) -> Vec<RawEvent> {
        let cfg = &self.cfg;
        let mut rng =
            Xoshiro256PlusPlus::seed_from_u64(splitmix64(self.user_salt ^ splitmix64(user as u64)));
        let user_id = format!("u{user}");
        let mut taste = Taste::new(self, &mut rng);
        let sessions = geometric(&mut rng, cfg.sessions_per_user);
        let mut events = Vec::with_capacity(sessions * (cfg.session_len.ceil() as usize) * 3);

        let mut t = cfg
            .start_ts
            .saturating_add((rng.gen::<f64>() * cfg.span_days * DAY_MS) as i64);
        for session in 0..sessions {
            if session > 0 {
                let gap =
                    MIN_SESSION_GAP_MS + exponential(&mut rng, cfg.session_gap_hours * HOUR_MS);
                t = t.saturating_add(gap as i64);
                if rng.gen::<f64>() < cfg.favourite_switch_prob {
                    taste.switch_favourite(self, &mut rng);
                }
            }
            let mut previous: Option<u32> = None;
            for _ in 0..geometric(&mut rng, cfg.session_len) {
                let item = match previous {
                    Some(p) if rng.gen::<f64>() < cfg.follow_prob => {
                        self.pick_successor(p, &mut rng)
                    }
                    _ => self.pick_by_taste(&taste, previous, &mut rng),
                };
                let affinity = taste.affinity(self, item);
                t = self.emit_funnel(&user_id, item, affinity, t, &mut rng, &mut events);
                taste.drift(cfg.taste_drift, &mut rng);
                previous = Some(item);
            }
        }
        events
    }

    fn pick_successor(&self, previous: u32, rng: &mut impl Rng) -> u32 {
        self.successors(previous as usize)[sample_cdf(&self.successor_cdf, rng)]
    }

    fn pick_by_taste(&self, taste: &Taste, previous: Option<u32>, rng: &mut impl Rng) -> u32 {
        let c = taste.sample_category(self, rng);
        let item = self.sample_in_category(c, rng);
        if previous == Some(item) {
            // Reaching the same item twice in a row is rare; one redraw keeps it so.
            self.sample_in_category(c, rng)
        } else {
            item
        }
    }

    /// Emits the events of one item reached at `t` and returns when the next item is reached.
    fn emit_funnel(
        &self,
        user: &str,
        item: u32,
        affinity: f64,
        t: Timestamp,
        rng: &mut impl Rng,
        out: &mut Vec<RawEvent>,
    ) -> Timestamp {
        let id = format!("i{item}");
        let price = Some(self.prices[item as usize]);
        let a = affinity;
        let mut push = |ts: Timestamp, action: Action<String>| {
            out.push(Event {
                user: user.to_string(),
                ts,
                action,
            })
        };

        let dwell = (DWELL_MEDIAN_MS * (1.0 + 2.0 * a) * (DWELL_LOG_SD * gaussian(rng)).exp())
            .clamp(DWELL_RANGE_MS.0, DWELL_RANGE_MS.1);
        push(
            t,
            Action::View {
                item: id.clone(),
                dwell_ms: Some(dwell as u32),
            },
        );
        let mut last = t;
        if rng.gen::<f64>() < 0.05 + 0.75 * a {
            last += 1 + (dwell * rng.gen_range(0.3..1.0)) as i64;
            push(last, Action::Click { item: id.clone() });
            if rng.gen::<f64>() < 0.05 + 0.45 * a {
                last += (SECOND_MS + exponential(rng, CART_DELAY_MS)) as i64;
                push(
                    last,
                    Action::Cart {
                        item: id.clone(),
                        price,
                    },
                );
                let buys = if self.cfg.purchase_by_item {
                    self.conversion(item)
                } else {
                    0.2 + 0.6 * a
                };
                if rng.gen::<f64>() < buys {
                    last += (5.0 * SECOND_MS + exponential(rng, PURCHASE_DELAY_MS)) as i64;
                    push(
                        last,
                        Action::Purchase {
                            item: id.clone(),
                            price,
                        },
                    );
                    if rng.gen::<f64>() < RATING_PROB {
                        last += (2.0 * SECOND_MS + exponential(rng, RATING_DELAY_MS)) as i64;
                        let value = (1.0 + 4.0 * a + 0.8 * gaussian(rng))
                            .round()
                            .clamp(1.0, 5.0);
                        push(
                            last,
                            Action::Rating {
                                item: id,
                                value: value as f32,
                            },
                        );
                    }
                }
            }
        } else if rng.gen::<f64>() < 0.7 * (1.0 - a) {
            last += 1 + dwell as i64;
            push(last, Action::Skip { item: id });
        }
        let gap = MIN_ITEM_GAP_MS + exponential(rng, self.cfg.item_gap_secs * SECOND_MS);
        last.max(t + dwell as i64).saturating_add(gap as i64)
    }
}
