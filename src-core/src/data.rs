//! In-memory interaction data sets, the input of every fitted model and of the evaluation.
//!
//! A [`Dataset`] holds each user's interactions in time order (stable: ties keep file
//! order), with ids interned densely in order of first appearance. Consecutive events of
//! one user on the same item (a view, then a click, then a purchase of it) count as one
//! interaction: the deepest kind and the largest value are kept, at the first timestamp.
//! The catalogue of a data set is the set of items that have at least one interaction.

use std::collections::HashMap;

use crate::event::{EventKind, Item, ItemId, Timestamp};
use crate::ids::Interner;

/// One user's interactions, aligned vectors in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserHistory {
    /// The user's external id.
    pub name: String,
    /// Dense item ids.
    pub items: Vec<ItemId>,
    /// Timestamps (ms since epoch).
    pub ts: Vec<Timestamp>,
    /// The deepest kind seen for the interaction.
    pub kinds: Vec<EventKind>,
    /// The value carried (rating, dwell, price), the largest of a collapsed run.
    pub values: Vec<f32>,
}

impl UserHistory {
    /// Number of interactions.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the user has no interaction.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// A borrowed view of the first `n` interactions.
    pub fn prefix(&self, n: usize) -> Seq<'_> {
        Seq {
            items: &self.items[..n],
            ts: &self.ts[..n],
        }
    }
}

/// A borrowed, time-ordered item sequence with its timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Seq<'a> {
    pub items: &'a [ItemId],
    pub ts: &'a [Timestamp],
}

/// Interaction data of many users over one catalogue.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// A name for reports (usually the file name).
    pub name: String,
    /// External item ids, indexed by dense id.
    pub item_names: Vec<String>,
    /// Every user with at least one interaction.
    pub users: Vec<UserHistory>,
    /// What the catalogue files said of each item (title, tags, attributes), indexed by
    /// dense id; an item no file described has only its id.
    pub item_info: Vec<Item>,
}

impl Dataset {
    /// Number of items in the catalogue.
    pub fn n_items(&self) -> usize {
        self.item_names.len()
    }

    /// Total number of interactions.
    pub fn n_interactions(&self) -> usize {
        self.users.iter().map(UserHistory::len).sum()
    }
}

/// Collects interactions in file order and builds a [`Dataset`].
#[derive(Debug, Default)]
pub struct DatasetBuilder {
    name: String,
    users: Interner,
    items: Interner,
    rows: Vec<Vec<(Timestamp, ItemId, EventKind, f32)>>,
    described: HashMap<String, Item>,
    /// Ids described, in order of first description, when the whole catalogue counts.
    catalogue: Option<Vec<String>>,
}

impl DatasetBuilder {
    /// A builder for a data set called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        DatasetBuilder {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Adds one event; skips and impressions are ignored (they are not interactions).
    pub fn push(&mut self, user: &str, item: &str, ts: Timestamp, kind: EventKind, value: f32) {
        if !kind.is_interaction() {
            return;
        }
        let u = self.users.intern(user) as usize;
        let i = self.items.intern(item);
        if u == self.rows.len() {
            self.rows.push(Vec::new());
        }
        self.rows[u].push((ts, i, kind, value));
    }

    /// Whether every described item joins the catalogue, interactions or not (after the
    /// items with interactions, in order of description); by default only items with
    /// interactions do.
    pub fn whole_catalogue(mut self, yes: bool) -> Self {
        self.catalogue = yes.then(Vec::new);
        self
    }

    /// Records what a catalogue says of an item (the last description of an id wins).
    pub fn describe(&mut self, item: Item) {
        if let Some(order) = &mut self.catalogue {
            if !self.described.contains_key(&item.id) {
                order.push(item.id.clone());
            }
        }
        self.described.insert(item.id.clone(), item);
    }

    /// Sorts each user's events by time (stable) and collapses consecutive repeats.
    pub fn finish(mut self) -> Dataset {
        let user_names = self.users.into_names();
        let users = self
            .rows
            .into_iter()
            .zip(user_names)
            .map(|(mut rows, name)| {
                rows.sort_by_key(|r| r.0);
                let mut h = UserHistory {
                    name,
                    ..Default::default()
                };
                for (ts, item, kind, value) in rows {
                    if h.items.last() == Some(&item) {
                        let last = h.kinds.len() - 1;
                        h.kinds[last] = h.kinds[last].max(kind);
                        h.values[last] = h.values[last].max(value);
                        continue;
                    }
                    h.items.push(item);
                    h.ts.push(ts);
                    h.kinds.push(kind);
                    h.values.push(value);
                }
                h
            })
            .collect();
        for name in self.catalogue.take().unwrap_or_default() {
            self.items.intern(&name);
        }
        let item_names = self.items.into_names();
        let item_info = item_names
            .iter()
            .map(|name| {
                self.described.remove(name).unwrap_or_else(|| Item {
                    id: name.clone(),
                    ..Item::default()
                })
            })
            .collect();
        Dataset {
            name: self.name,
            item_names,
            users,
            item_info,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_stably_and_collapses_repeats() {
        let mut b = DatasetBuilder::new("t");
        b.push("u", "b", 2, EventKind::View, 0.0);
        b.push("u", "a", 1, EventKind::View, 0.0);
        b.push("u", "c", 2, EventKind::View, 0.0);
        b.push("u", "c", 3, EventKind::Purchase, 9.0);
        b.push("v", "a", 5, EventKind::Rating, 4.0);
        b.push("v", "a", 6, EventKind::Skip, 0.0);
        let d = b.finish();
        assert_eq!(d.n_items(), 3);
        assert_eq!(d.users[0].items, vec![1, 0, 2]);
        assert_eq!(d.users[0].kinds[2], EventKind::Purchase);
        assert_eq!(d.users[0].values[2], 9.0);
        assert_eq!(d.users[1].items, vec![1]);
        assert_eq!(d.n_interactions(), 4);
    }

    #[test]
    fn descriptions_follow_their_items_ids() {
        let mut b = DatasetBuilder::new("t");
        b.describe(Item {
            id: "a".into(),
            title: "A".into(),
            ..Item::default()
        });
        b.describe(Item {
            id: "never".into(),
            ..Item::default()
        });
        b.push("u", "b", 1, EventKind::View, 0.0);
        b.push("u", "a", 2, EventKind::View, 0.0);
        let d = b.finish();
        assert_eq!(d.item_info.len(), 2);
        assert_eq!(d.item_info[1].title, "A");
        assert_eq!(d.item_info[0].id, "b");
        assert!(d.item_info[0].title.is_empty());
    }

    #[test]
    fn the_whole_catalogue_adds_items_without_interactions_after_the_rest() {
        let mut b = DatasetBuilder::new("t").whole_catalogue(true);
        for id in ["never", "a", "never", "also-never"] {
            b.describe(Item {
                id: id.into(),
                title: id.to_uppercase(),
                ..Item::default()
            });
        }
        b.push("u", "b", 1, EventKind::View, 0.0);
        b.push("u", "a", 2, EventKind::View, 0.0);
        let d = b.finish();
        assert_eq!(d.item_names, ["b", "a", "never", "also-never"]);
        assert_eq!(d.item_info[2].title, "NEVER");
        assert_eq!(d.users[0].items, vec![0, 1]);
        assert_eq!(d.n_interactions(), 2);
    }
}
