//! Domain types: events, their kinds, catalogue items, timestamps.
//!
//! An [`Event`] is generic over the id type: `Event<String>` ([`RawEvent`]) is what arrives
//! from files and the API with external ids, `Event<u32>` is what the store keeps once the
//! ids are interned to dense integers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Milliseconds since the Unix epoch (UTC).
pub type Timestamp = i64;

/// Dense ids, as interned by the store (see [`crate::ids::Interner`]).
pub type UserId = u32;
/// Dense item id.
pub type ItemId = u32;

/// The kind of an event, without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    View,
    Click,
    Cart,
    Purchase,
    Rating,
    Skip,
    Impression,
}

impl EventKind {
    /// Every kind, in code order.
    pub const ALL: [EventKind; 7] = [
        EventKind::View,
        EventKind::Click,
        EventKind::Cart,
        EventKind::Purchase,
        EventKind::Rating,
        EventKind::Skip,
        EventKind::Impression,
    ];

    /// The lowercase name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::Click => "click",
            EventKind::Cart => "cart",
            EventKind::Purchase => "purchase",
            EventKind::Rating => "rating",
            EventKind::Skip => "skip",
            EventKind::Impression => "impression",
        }
    }

    /// Parses a lowercase kind name.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A one-byte code, stable on disk.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`EventKind::code`].
    pub fn from_code(code: u8) -> Option<EventKind> {
        EventKind::ALL.get(code as usize).copied()
    }

    /// Whether the event says the user engaged with an item (everything but skip and impression).
    pub fn is_interaction(self) -> bool {
        !matches!(self, EventKind::Skip | EventKind::Impression)
    }
}

/// What was shown to a user in answer to one recommendation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impression<Id> {
    /// The id of the recommendation request that produced the slate.
    pub request_id: String,
    /// The items shown, best first.
    pub items: Vec<Id>,
    /// Their blended scores, aligned with `items`.
    pub scores: Vec<f32>,
    /// The strategy version that ranked them.
    pub strategy_version: u64,
}

/// What happened, with the value each kind carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action<Id> {
    View { item: Id, dwell_ms: Option<u32> },
    Click { item: Id },
    Cart { item: Id, price: Option<f32> },
    Purchase { item: Id, price: Option<f32> },
    Rating { item: Id, value: f32 },
    Skip { item: Id },
    Impression(Impression<Id>),
}

impl<Id> Action<Id> {
    /// The kind of this action.
    pub fn kind(&self) -> EventKind {
        match self {
            Action::View { .. } => EventKind::View,
            Action::Click { .. } => EventKind::Click,
            Action::Cart { .. } => EventKind::Cart,
            Action::Purchase { .. } => EventKind::Purchase,
            Action::Rating { .. } => EventKind::Rating,
            Action::Skip { .. } => EventKind::Skip,
            Action::Impression(_) => EventKind::Impression,
        }
    }

    /// The single item the action is about (`None` for an impression).
    pub fn item(&self) -> Option<&Id> {
        match self {
            Action::View { item, .. }
            | Action::Click { item }
            | Action::Cart { item, .. }
            | Action::Purchase { item, .. }
            | Action::Rating { item, .. }
            | Action::Skip { item } => Some(item),
            Action::Impression(_) => None,
        }
    }

    /// The numeric value carried by the event: rating, dwell (ms), price; 0 otherwise.
    pub fn value(&self) -> f32 {
        match self {
            Action::Rating { value, .. } => *value,
            Action::View {
                dwell_ms: Some(d), ..
            } => *d as f32,
            Action::Cart { price: Some(p), .. } | Action::Purchase { price: Some(p), .. } => *p,
            _ => 0.0,
        }
    }

    /// Maps the ids of the action.
    pub fn try_map_ids<J, E>(self, mut f: impl FnMut(Id) -> Result<J, E>) -> Result<Action<J>, E> {
        Ok(match self {
            Action::View { item, dwell_ms } => Action::View {
                item: f(item)?,
                dwell_ms,
            },
            Action::Click { item } => Action::Click { item: f(item)? },
            Action::Cart { item, price } => Action::Cart {
                item: f(item)?,
                price,
            },
            Action::Purchase { item, price } => Action::Purchase {
                item: f(item)?,
                price,
            },
            Action::Rating { item, value } => Action::Rating {
                item: f(item)?,
                value,
            },
            Action::Skip { item } => Action::Skip { item: f(item)? },
            Action::Impression(imp) => Action::Impression(Impression {
                request_id: imp.request_id,
                items: imp.items.into_iter().map(f).collect::<Result<_, _>>()?,
                scores: imp.scores,
                strategy_version: imp.strategy_version,
            }),
        })
    }
}

/// One event: a user did something at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<Id = u32> {
    /// Who.
    pub user: Id,
    /// When, in milliseconds since the epoch.
    pub ts: Timestamp,
    /// What.
    pub action: Action<Id>,
}

/// An event with external string ids, as read from files and the API.
pub type RawEvent = Event<String>;

/// A catalogue item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Item<Id = String> {
    /// The item's id.
    pub id: Id,
    /// A human-readable title.
    pub title: String,
    /// Categories, genres, labels.
    pub tags: Vec<String>,
    /// Free attributes (price, brand, year, ...).
    pub attrs: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_code(k.code()), Some(k));
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::from_code(7), None);
    }
}
