//! The round scheduler: which events a replay round takes, keeping each user's events in
//! order and holding distinct users.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::event::RawEvent;

/// The round scheduler: each user's events in order; a round is the earliest pending
/// event of up to `round` users, none further than `lookahead` past the first pending.
pub(super) struct Rounds {
    queues: HashMap<Arc<str>, VecDeque<usize>>,
    heads: BTreeSet<(usize, Arc<str>)>,
    done: Vec<bool>,
    first_pending: usize,
}

impl Rounds {
    pub(super) fn new(events: &[RawEvent]) -> Rounds {
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

    pub(super) fn next(&mut self, round: usize, lookahead: usize) -> Vec<usize> {
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
