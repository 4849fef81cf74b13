//! Interning of external string ids into dense `u32` ids.
//!
//! Dense ids index model rows and score vectors. The store persists the mapping (see
//! [`crate::store`]) so an id keeps its number across restarts; this type is the
//! in-memory side, also used on its own for data sets read from files.

use std::collections::HashMap;

/// A two-way map between external string ids and dense ids `0..len`.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    /// The dense id of `name`, assigning the next one if it is new.
    ///
    /// Panics only past `u32::MAX` ids, which the store checks before it interns.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 ids");
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }

    /// The dense id of `name`, if known.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The external id of a dense id (`None` for a forgotten one).
    pub fn name(&self, id: u32) -> Option<&str> {
        self.names
            .get(id as usize)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }

    /// Forgets the external id of a dense id: the number stays taken (it indexes rows),
    /// the name maps to nothing, and interning the name again gives a new number.
    pub(crate) fn forget(&mut self, id: u32) {
        if let Some(name) = self.names.get_mut(id as usize) {
            self.ids.remove(name.as_str());
            name.clear();
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no id was interned.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Restores an id read back from storage; ids must arrive as `0, 1, 2, ...`.
    pub(crate) fn restore(&mut self, id: u32, name: String) -> bool {
        if id as usize != self.names.len() {
            return false;
        }
        // An empty name is a forgotten id (see `forget`): its number stays taken.
        if !name.is_empty() {
            self.ids.insert(name.clone(), id);
        }
        self.names.push(name);
        true
    }

    /// The external ids, indexed by dense id.
    pub fn into_names(self) -> Vec<String> {
        self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_stable() {
        let mut i = Interner::default();
        assert_eq!(i.intern("x"), 0);
        assert_eq!(i.intern("y"), 1);
        assert_eq!(i.intern("x"), 0);
        assert_eq!(i.name(1), Some("y"));
        assert_eq!(i.get("z"), None);
        assert_eq!(i.len(), 2);
    }
}
