//! What Attune knows of items beyond their interactions: their text (title, tags,
//! selected attributes), embedded by a pre-trained sentence encoder into unit vectors. A
//! user's text profile (a recency-weighted mean of their history's vectors) scored by
//! cosine against every item ranks items nobody has clicked yet, which no interaction
//! model can.
//!
//! `encoder` loads and runs the pre-trained model; `table` holds the vectors of a
//! catalogue and scores profiles against them.

pub mod encoder;
pub mod table;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use encoder::{Encoder, EncoderId};
pub use table::{dot, Profile, TextTable};

use crate::event::Item;

/// Which parts of an item make its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextFields {
    /// The title.
    pub title: bool,
    /// The tags (categories, genres), joined by commas.
    pub tags: bool,
    /// Attributes included as `key: value`, in this order (absent ones skipped).
    pub attrs: Vec<String>,
}

impl Default for TextFields {
    fn default() -> Self {
        TextFields {
            title: true,
            tags: true,
            attrs: vec!["brand".into(), "category".into(), "description".into()],
        }
    }
}

impl TextFields {
    /// The text of `item`, e.g. `Toy Story (1995). Animation, Children's, Comedy.`; empty
    /// when the item has none of the chosen parts.
    pub fn text_of(&self, item: &Item) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.title && !item.title.trim().is_empty() {
            parts.push(item.title.trim().to_owned());
        }
        if self.tags && !item.tags.is_empty() {
            parts.push(item.tags.join(", "));
        }
        for key in &self.attrs {
            if let Some(v) = item.attrs.get(key) {
                if !v.trim().is_empty() {
                    parts.push(format!("{key}: {}", v.trim()));
                }
            }
        }
        let mut text = parts.join(". ");
        if !text.is_empty() && !text.ends_with('.') {
            text.push('.');
        }
        text
    }
}
