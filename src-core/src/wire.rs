//! The JSON form of events and catalogue items: the `jsonl` import format, the body of
//! the service's `POST /v1/events`, and what `attune generate --out` writes.
//!
//! An event object: `{"user": "u1", "kind": "click", "item": "i9", "ts": 978300760}` with
//! `ts` in Unix seconds (fractions allowed), plus the kind's own fields: `value` (rating,
//! required), `dwell_ms` (view, optional), `price` (cart/purchase, optional), and for an
//! impression `request_id`, `items`, `scores` (optional, aligned with `items`) and
//! `strategy_version` instead of `item`. A catalogue object: `{"kind": "item", "item":
//! "i9", "title": "...", "tags": ["..."], "attrs": {"k": "v"}}`. Ids may be strings or
//! integers. Unknown fields are rejected so that a typo is an error, not a silent default.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::event::{Action, Event, EventKind, Impression, Item, RawEvent, Timestamp};

/// Longest external id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// What [`check_id`] accepts, as far as JSON Schema can say it: 1 to 256 bytes (the
/// schema counts characters), no control characters, no U+FFFD.
pub const ID_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F\\uFFFD]+$";

/// The JSON schema of a user or item id in a path or body (the OpenAPI document's).
pub fn id_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ID_BYTES))
        .pattern(Some(ID_PATTERN))
        .build()
}

/// One line of a JSONL file: an event or a catalogue record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Event(RawEvent),
    Item(Item),
}

/// An id as it may appear in JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum WireId {
    Str(String),
    Int(i64),
    /// JSON does not tell `7` from `7.0`: a whole number written as a float is that integer.
    Float(f64),
}

/// `f` as an integer if it is a whole number within `i64`'s range (JSON does not tell `7`
/// from `7.0`).
pub(crate) fn whole_number(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64)
}

impl WireId {
    fn into_id(self, field: &str) -> Result<String, String> {
        let s = match self {
            WireId::Str(s) => s,
            WireId::Int(i) => i.to_string(),
            WireId::Float(f) => match whole_number(f) {
                Some(i) => i.to_string(),
                None => {
                    return Err(format!(
                        "field `{field}`: {f} is not an id (a string, or a whole number)"
                    ))
                }
            },
        };
        check_id(&s).map_err(|m| format!("field `{field}`: {m}"))?;
        Ok(s)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRecord {
    kind: String,
    user: Option<WireId>,
    item: Option<WireId>,
    ts: Option<f64>,
    value: Option<f64>,
    /// A whole number of ms (`300` or `300.0`), up to `u32::MAX`.
    dwell_ms: Option<f64>,
    price: Option<f64>,
    request_id: Option<String>,
    items: Option<Vec<WireId>>,
    scores: Option<Vec<f32>>,
    strategy_version: Option<u64>,
    title: Option<String>,
    tags: Option<Vec<String>>,
    attrs: Option<BTreeMap<String, Value>>,
}

/// Checks an external id: non-empty, at most [`MAX_ID_BYTES`], no control characters.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("id is empty".into());
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!("id is longer than {MAX_ID_BYTES} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("id {id:?} contains a control character"));
    }
    // What decoders put in place of bytes that are not UTF-8: two different raw ids would
    // become the same one.
    if id.contains('\u{FFFD}') {
        return Err(format!(
            "id {id:?} contains U+FFFD (the replacement of bytes that are not UTF-8)"
        ));
    }
    Ok(())
}

/// Converts Unix seconds (fractions allowed) to ms, checking the range.
pub fn seconds_to_ms(secs: f64) -> Result<Timestamp, String> {
    // Years 1970..=9999: wider is a unit mistake, not a date.
    if !secs.is_finite() || !(0.0..=253_402_300_799.0).contains(&secs) {
        return Err(format!(
            "timestamp {secs} is out of range (Unix seconds, 1970 to 9999)"
        ));
    }
    Ok((secs * 1000.0).round() as Timestamp)
}

/// Parses one JSON object into a [`Record`]; the message names the offending field.
pub fn parse_record(line: &str) -> Result<Record, String> {
    let w: WireRecord = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let kind_name = w.kind.clone();
    if kind_name == "item" {
        let id = w.item.ok_or("field `item` is missing")?.into_id("item")?;
        if w.user.is_some() || w.ts.is_some() {
            return Err("a catalogue record (kind `item`) takes no `user` or `ts`".into());
        }
        let attrs = w
            .attrs
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        return Ok(Record::Item(Item {
            id,
            title: w.title.unwrap_or_default(),
            tags: w.tags.unwrap_or_default(),
            attrs,
        }));
    }
    let kind = EventKind::parse(&kind_name).ok_or_else(|| {
        format!(
            "field `kind`: unknown kind {kind_name:?} (expected view, click, cart, purchase, rating, skip, impression or item)"
        )
    })?;
    let user = w.user.ok_or("field `user` is missing")?.into_id("user")?;
    let ts = seconds_to_ms(w.ts.ok_or("field `ts` is missing (Unix seconds)")?)
        .map_err(|m| format!("field `ts`: {m}"))?;
    let price = match w.price {
        Some(p) if !p.is_finite() || p < 0.0 || p > f64::from(f32::MAX) => {
            return Err(format!(
                "field `price`: {p} is not a non-negative number within the f32 range"
            ))
        }
        p => p.map(|p| p as f32),
    };
    let item = || -> Result<String, String> {
        w.item
            .clone()
            .ok_or_else(|| format!("field `item` is missing for kind `{kind_name}`"))?
            .into_id("item")
    };
    // Checked whatever the kind (kept only for views), as `price` is.
    let dwell_ms = w
        .dwell_ms
        .map(|d| {
            whole_number(d)
                .and_then(|ms| u32::try_from(ms).ok())
                .ok_or_else(|| {
                    format!(
                        "field `dwell_ms`: {d} is not a whole number of ms in [0, {}]",
                        u32::MAX
                    )
                })
        })
        .transpose()?;
    let action = match kind {
        EventKind::View => Action::View {
            item: item()?,
            dwell_ms,
        },
        EventKind::Click => Action::Click { item: item()? },
        EventKind::Cart => Action::Cart {
            item: item()?,
            price,
        },
        EventKind::Purchase => Action::Purchase {
            item: item()?,
            price,
        },
        EventKind::Rating => {
            let value = w
                .value
                .ok_or("field `value` is missing for kind `rating`")?;
            if !value.is_finite() || value.abs() > f64::from(f32::MAX) {
                return Err(format!(
                    "field `value`: {value} is not a finite number within the f32 range"
                ));
            }
            Action::Rating {
                item: item()?,
                value: value as f32,
            }
        }
        EventKind::Skip => Action::Skip { item: item()? },
        EventKind::Impression => {
            let items = w
                .items
                .ok_or("field `items` is missing for kind `impression`")?
                .into_iter()
                .map(|i| i.into_id("items"))
                .collect::<Result<Vec<_>, _>>()?;
            let scores = w.scores.unwrap_or_default();
            if !scores.is_empty() && scores.len() != items.len() {
                return Err(format!(
                    "field `scores`: {} scores for {} items",
                    scores.len(),
                    items.len()
                ));
            }
            Action::Impression(Impression {
                request_id: w.request_id.unwrap_or_default(),
                items,
                scores,
                strategy_version: w.strategy_version.unwrap_or(0),
            })
        }
    };
    Ok(Record::Event(Event { user, ts, action }))
}

/// The JSON object of an event (the inverse of [`parse_record`]).
pub fn event_to_json(ev: &RawEvent) -> Value {
    let mut m = Map::new();
    m.insert("user".into(), ev.user.clone().into());
    m.insert("kind".into(), ev.action.kind().as_str().into());
    m.insert("ts".into(), json_seconds(ev.ts));
    match &ev.action {
        Action::View { item, dwell_ms } => {
            m.insert("item".into(), item.clone().into());
            if let Some(d) = dwell_ms {
                m.insert("dwell_ms".into(), (*d).into());
            }
        }
        Action::Click { item } | Action::Skip { item } => {
            m.insert("item".into(), item.clone().into());
        }
        Action::Cart { item, price } | Action::Purchase { item, price } => {
            m.insert("item".into(), item.clone().into());
            if let Some(p) = price {
                m.insert("price".into(), f64::from(*p).into());
            }
        }
        Action::Rating { item, value } => {
            m.insert("item".into(), item.clone().into());
            m.insert("value".into(), f64::from(*value).into());
        }
        Action::Impression(imp) => {
            m.insert("request_id".into(), imp.request_id.clone().into());
            m.insert("items".into(), imp.items.clone().into());
            m.insert("scores".into(), imp.scores.clone().into());
            m.insert("strategy_version".into(), imp.strategy_version.into());
        }
    }
    Value::Object(m)
}

/// The JSON object of a catalogue item.
pub fn item_to_json(item: &Item) -> Value {
    serde_json::json!({
        "kind": "item",
        "item": item.id,
        "title": item.title,
        "tags": item.tags,
        "attrs": item.attrs,
    })
}

fn json_seconds(ms: Timestamp) -> Value {
    if ms % 1000 == 0 {
        (ms / 1000).into()
    } else {
        (ms as f64 / 1000.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let lines = [
            r#"{"user":"u","kind":"view","item":"a","ts":1.5,"dwell_ms":300}"#,
            r#"{"user":"u","kind":"click","item":"a","ts":2}"#,
            r#"{"user":"u","kind":"cart","item":"a","ts":3,"price":9.5}"#,
            r#"{"user":"u","kind":"purchase","item":"a","ts":4}"#,
            r#"{"user":"u","kind":"rating","item":"a","ts":5,"value":4}"#,
            r#"{"user":"u","kind":"skip","item":"b","ts":6}"#,
            r#"{"user":"u","kind":"impression","ts":7,"request_id":"r1","items":["a","b"],"scores":[0.5,0.25],"strategy_version":3}"#,
        ];
        for line in lines {
            let Record::Event(ev) = parse_record(line).expect(line) else {
                panic!("not an event: {line}")
            };
            let back = event_to_json(&ev).to_string();
            assert_eq!(parse_record(&back), Ok(Record::Event(ev)), "{line}");
        }
    }

    #[test]
    fn numeric_ids_and_items() {
        let Ok(Record::Event(ev)) = parse_record(r#"{"user":7,"kind":"click","item":42,"ts":0}"#)
        else {
            panic!()
        };
        assert_eq!(ev.user, "7");
        let r = parse_record(
            r#"{"kind":"item","item":"x","title":"X","tags":["t"],"attrs":{"price":3}}"#,
        );
        let Ok(Record::Item(item)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(item.attrs["price"], "3");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"user":"u","kind":"click","ts":1}"#, "`item`"),
            (r#"{"user":"u","kind":"clack","item":"a","ts":1}"#, "`kind`"),
            (r#"{"user":"u","kind":"click","item":"a"}"#, "`ts`"),
            (
                r#"{"user":"u","kind":"rating","item":"a","ts":1}"#,
                "`value`",
            ),
            (r#"{"user":"","kind":"click","item":"a","ts":1}"#, "`user`"),
            (r#"{"user":"u","kind":"click","itme":"a","ts":1}"#, "itme"),
            (r#"{"user":"u","kind":"click","item":"a","ts":-5}"#, "`ts`"),
            (
                r#"{"user":"u","kind":"cart","item":"a","ts":1,"price":-1}"#,
                "`price`",
            ),
            (
                r#"{"user":"u","kind":"impression","ts":1,"items":["a"],"scores":[1,2]}"#,
                "`scores`",
            ),
            (
                r#"{"user":"u","kind":"rating","item":"a","ts":1,"value":1e308}"#,
                "`value`",
            ),
            (
                r#"{"user":"u","kind":"purchase","item":"a","ts":1,"price":1e300}"#,
                "`price`",
            ),
            (
                "{\"user\":\"\u{FFFD}\",\"kind\":\"click\",\"item\":\"a\",\"ts\":1}",
                "U+FFFD",
            ),
            ("not json", "invalid JSON"),
        ];
        for (line, needle) in cases {
            let err = parse_record(line).expect_err(line);
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
