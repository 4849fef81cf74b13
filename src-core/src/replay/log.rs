//! The events a replay reads (a store's log or data set files), its catalogue, and the
//! points where a ranking is asked.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::event::{Action, EventKind, Item, RawEvent, Timestamp};
use crate::import::{self, Format, ImportOptions};
use crate::store::{Store, StoreConfig};

/// A user's open run while finding rank points: (item, first event, its events' kinds
/// and values, whether one is positive).
type OpenRun<'a> = (&'a str, usize, Vec<(EventKind, f32)>, bool);

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
