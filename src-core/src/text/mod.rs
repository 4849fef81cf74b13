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

/// The text source's weight in the blend before the online learner moves it.
pub const DEFAULT_WEIGHT: f32 = 0.5;

/// The text source's feature for the blend: the positive part of a cosine (an item
/// unlike the profile adds nothing, rather than a penalty that would bury it).
pub fn feature(cosine: f32) -> f32 {
    cosine.max(0.0)
}

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
    /// Parses a comma-separated choice such as `title,tags,brand`: `title` and `tags`
    /// name those parts, any other name an attribute (in the order given).
    pub fn parse(spec: &str) -> crate::error::Result<TextFields> {
        let mut f = TextFields {
            title: false,
            tags: false,
            attrs: Vec::new(),
        };
        for part in spec.split(',').map(str::trim) {
            match part {
                "" => {
                    return Err(crate::error::Error::config(
                        "text_fields",
                        format!("{spec:?}: an empty name (write e.g. title,tags,brand)"),
                    ))
                }
                "title" => f.title = true,
                "tags" => f.tags = true,
                attr if !f.attrs.iter().any(|a| a == attr) => f.attrs.push(attr.to_owned()),
                _ => {}
            }
        }
        Ok(f)
    }

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

/// Embeds the text of `items` (item `i` of the slice is item id `i` of the table) with
/// `encoder`, `batch` texts per pass, calling `progress(done, total)` after each pass.
/// Texts are encoded in order of length, so that a batch pads little; items without text
/// get no vector.
pub fn embed_items(
    encoder: &Encoder,
    items: &[Item],
    fields: &TextFields,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> crate::error::Result<TextTable> {
    let texts: Vec<(crate::event::ItemId, String)> = items
        .iter()
        .enumerate()
        .map(|(i, item)| (i as crate::event::ItemId, fields.text_of(item)))
        .filter(|(_, t)| !t.is_empty())
        .collect();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&j| texts[j].1.len());
    let mut table = TextTable::new(encoder.dim());
    let total = order.len();
    let mut done = 0;
    for chunk in order.chunks(batch.max(1)) {
        let batch_texts: Vec<&str> = chunk.iter().map(|&j| texts[j].1.as_str()).collect();
        for (&j, v) in chunk.iter().zip(encoder.encode(&batch_texts)?) {
            table.set(texts[j].0, &v);
        }
        done += chunk.len();
        progress(done, total);
    }
    Ok(table)
}
