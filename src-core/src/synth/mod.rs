//! Synthetic data: a catalogue and users with drifting tastes and sequential habits.
//!
//! Attune ships without a data set, so this module is its embedded default data: the demo,
//! the tests and the benchmarks all draw from it. It is deterministic (same config, same
//! events and items), scales from a handful of users to 1,000,000 users × 1,000,000 items
//! with memory in O(items), and simulates every user on their own random stream, so users
//! can be generated in any order, in parallel, or streamed.
//!
//! The data carries signal a recommender can learn, layered so that each stronger model wins:
//!
//! * **popularity** beats random: items are Zipf-popular within their category and
//!   categories are Zipf-popular across the catalogue;
//! * **taste** beats popularity: each user keeps to a few favourite categories (drifting
//!   slowly, and now and then swapping one), and engages more with items that match;
//! * **sequence** beats both: every item has a few successors (a series, a complementary
//!   product, mostly in the same category) that users move to next with probability
//!   [`SynthConfig::follow_prob`].
//!
//! Each item a user reaches yields a funnel: a view (with dwell), then maybe a click (or,
//! for off-taste items, maybe a skip), a cart, a purchase, and sometimes a rating; each step
//! is likelier the better the item matches the user's current taste. Impressions are never
//! generated: they come from the engine's own recommendations.

mod catalogue;
mod config;
mod events;
mod random;
mod taste;
#[cfg(test)]
mod tests;

pub use catalogue::Generator;
pub use config::{SynthConfig, MAX_SUCCESSORS};
