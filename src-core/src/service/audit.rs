//! The audit log: every operator action that changes the engine or looks at a user
//! (strategy publishes, rollbacks, guard reverts and aborts, model swaps, forgets,
//! catalogue imports, replays, user look-ups), with its time, its actor (the name of the
//! token used, or `guard`) and what changed. Kept durably in the store's audit space,
//! keyed by a sequence number, so it survives restarts and reads newest first.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{RecordSpace, Store};

/// One audited action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When (ms since the epoch).
    pub ts_ms: i64,
    /// Who: a token's name, or `guard` for the engine's own guard.
    pub actor: String,
    /// What: `strategy.publish`, `strategy.rollback`, `strategy.revert`, `guard.abort`,
    /// `model.activate`, `model.swap` (by the engine itself: a fine-tuned model),
    /// `user.forget`, `user.lookup`, `items.import`, `replay.start`.
    pub action: String,
    /// On what: a strategy version, a model, a user.
    pub target: String,
    /// The change itself (a diff, counts, a reason).
    pub detail: serde_json::Value,
}

/// The store's audit log.
#[derive(Debug)]
pub struct AuditLog {
    store: Store,
    next: AtomicU64,
}

impl AuditLog {
    /// The audit log of `store`, continuing its numbering.
    pub fn open(store: Store) -> Result<AuditLog> {
        let last = store
            .records_rev(RecordSpace::Audit, None, 1)?
            .first()
            .map(|(k, _)| key_seq(k))
            .transpose()?
            .unwrap_or(0);
        Ok(AuditLog {
            store,
            next: AtomicU64::new(last + 1),
        })
    }

    /// Appends an entry, durable on return.
    pub fn append(
        &self,
        actor: &str,
        action: &str,
        target: impl Into<String>,
        detail: serde_json::Value,
    ) -> Result<AuditEntry> {
        let entry = AuditEntry {
            seq: self.next.fetch_add(1, Ordering::SeqCst),
            ts_ms: crate::store::now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.into(),
            detail,
        };
        self.store.put_record_durable(
            RecordSpace::Audit,
            &entry.seq.to_be_bytes(),
            &serde_json::to_vec(&entry)?,
        )?;
        Ok(entry)
    }

    /// Rewrites every entry that names `id` (as its target, or anywhere in its detail) to
    /// name `instead`: a forgotten user's id must not outlive them in the audit log.
    /// Returns how many entries were rewritten. The old bytes leave the files with the
    /// next compaction, like the user's events.
    pub fn redact(&self, id: &str, instead: &str) -> Result<usize> {
        let quoted = serde_json::to_string(id)?;
        let mut n = 0;
        for (k, v) in self.store.records(RecordSpace::Audit)? {
            let mut e: AuditEntry = serde_json::from_slice(&v)?;
            let in_detail = e.detail.to_string().contains(&quoted);
            if e.target != id && !in_detail {
                continue;
            }
            if e.target == id {
                e.target = instead.to_string();
            }
            if in_detail {
                e.detail = serde_json::json!({"redacted": "it named a user who was forgotten"});
            }
            self.store
                .put_record(RecordSpace::Audit, &k, &serde_json::to_vec(&e)?)?;
            n += 1;
        }
        Ok(n)
    }

    /// At most `limit` entries, newest first, before sequence number `before` (the newest
    /// when `None`).
    pub fn list(&self, limit: usize, before: Option<u64>) -> Result<Vec<AuditEntry>> {
        let key = before.map(u64::to_be_bytes);
        self.store
            .records_rev(RecordSpace::Audit, key.as_ref().map(|k| &k[..]), limit)?
            .into_iter()
            .map(|(_, v)| Ok(serde_json::from_slice(&v)?))
            .collect()
    }
}

/// A change drawn on the console's charts: a strategy publish, rollback or guard revert,
/// or a model swap. Made from the audit log's entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Marker {
    pub ts_ms: i64,
    /// `publish`, `rollback`, `revert` or `model`.
    pub kind: String,
    /// What the chart shows beside the line.
    pub label: String,
    /// The strategy or model version it made.
    pub version: Option<u64>,
}

impl Marker {
    /// The marker of an audit entry, if its action is drawn.
    pub fn of(e: &AuditEntry) -> Option<Marker> {
        let kind = match e.action.as_str() {
            "strategy.publish" => "publish",
            "strategy.rollback" => "rollback",
            "strategy.revert" => "revert",
            "model.activate" | "model.swap" => "model",
            _ => return None,
        };
        let version = e
            .detail
            .get("new_version")
            .and_then(serde_json::Value::as_u64);
        let what = match (kind, version) {
            ("model", Some(v)) => format!("model v{v} ({})", e.target),
            (_, Some(v)) => format!("v{v} {kind}"),
            _ => kind.to_string(),
        };
        let why = e
            .detail
            .get("message")
            .or_else(|| e.detail.get("reason"))
            .and_then(serde_json::Value::as_str)
            .filter(|m| !m.is_empty())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        Some(Marker {
            ts_ms: e.ts_ms,
            kind: kind.into(),
            label: format!("{what} by {}{why}", e.actor),
            version,
        })
    }
}

/// Writes audit entries and tells the live stream: every entry as `event: audit`, and the
/// drawn ones as `event: marker` too.
pub struct Recorder {
    pub log: AuditLog,
    hub: std::sync::Arc<super::live::Hub>,
    /// The newest model version already audited (an activation, or a swap noticed).
    model_seen: AtomicU64,
    /// Activations under way: the model they swap in is theirs to audit, even if the live
    /// figures show its version before the activation has noted it.
    activating: AtomicUsize,
}

/// An activation under way (see [`Recorder::activation`]); ends when dropped.
pub struct Activation<'a>(&'a AtomicUsize);

impl Drop for Activation<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Recorder {
    pub fn new(log: AuditLog, hub: std::sync::Arc<super::live::Hub>) -> Recorder {
        Recorder {
            log,
            hub,
            model_seen: AtomicU64::new(0),
            activating: AtomicUsize::new(0),
        }
    }

    /// Marks an activation (`POST /v1/models/activate`) under way until the value is
    /// dropped, after the activation has noted its version.
    pub fn activation(&self) -> Activation<'_> {
        self.activating.fetch_add(1, Ordering::SeqCst);
        Activation(&self.activating)
    }

    /// Notes that model `version` is accounted for in the log; returns whether it is
    /// newer than any noted before.
    pub fn note_model(&self, version: u64) -> bool {
        self.model_seen.fetch_max(version, Ordering::SeqCst) < version
    }

    /// Audits a model swap the engine made by itself (a fine-tuned model swapped in), as
    /// the live figures reveal it; swaps made through `POST /v1/models/activate` are
    /// noted there and not audited twice. Returns false when it cannot tell yet (an
    /// activation is under way): the caller asks again with the next figures.
    pub fn model_seen_at(&self, version: u64, model: Option<crate::engine::ModelInfo>) -> bool {
        if self.activating.load(Ordering::SeqCst) > 0 {
            return false;
        }
        if version == 0 || !self.note_model(version) {
            return true;
        }
        let name = model.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let fine_tuned = model.as_ref().is_some_and(|m| m.fine_tuned);
        if let Err(e) = self.record(
            "engine",
            "model.swap",
            name.clone(),
            serde_json::json!({"new_version": version, "name": name, "fine_tuned": fine_tuned}),
        ) {
            tracing::error!(error = %e, version, "could not audit a model swap");
        }
        true
    }

    /// Appends an entry (durable) and streams it.
    pub fn record(
        &self,
        actor: &str,
        action: &str,
        target: impl Into<String>,
        detail: serde_json::Value,
    ) -> Result<AuditEntry> {
        let e = self.log.append(actor, action, target, detail)?;
        self.hub.send("audit", &e);
        if let Some(m) = Marker::of(&e) {
            self.hub.send("marker", &m);
        }
        Ok(e)
    }

    /// Sends one event on the live stream.
    pub fn stream(&self, event: &str, data: &impl Serialize) {
        self.hub.send(event, data);
    }

    /// Streams a new strategy version (`event: strategy`).
    pub fn strategy_changed(&self, v: &crate::engine::strategy::StrategyVersion) {
        self.hub.send("strategy", v);
    }

    /// Whether the service is stopping.
    pub fn is_closing(&self) -> bool {
        self.hub.is_closing()
    }

    /// The markers of entries made since `since_ms`, oldest first.
    pub fn markers_since(&self, since_ms: i64) -> Result<Vec<Marker>> {
        let mut out = Vec::new();
        let mut before = None;
        'pages: loop {
            let page = self.log.list(500, before)?;
            let Some(last) = page.last() else { break };
            before = Some(last.seq);
            for e in &page {
                if e.ts_ms < since_ms {
                    break 'pages;
                }
                out.extend(Marker::of(e));
            }
        }
        out.reverse();
        Ok(out)
    }
}

fn key_seq(k: &[u8]) -> Result<u64> {
    k.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::Corrupt {
            key: format!("audit/{k:?}"),
            reason: "an audit key is not 8 bytes".into(),
        })
}

/// The fields that differ between two JSON values, as `{"path": [old, new]}` with dotted
/// paths (`weights.pop`); arrays compare whole.
pub fn json_diff(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    fn walk(
        path: &str,
        a: &serde_json::Value,
        b: &serde_json::Value,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let null = serde_json::Value::Null;
                    walk(
                        &p,
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => {
                out.insert(path.to_string(), serde_json::json!([a, b]));
            }
            _ => {}
        }
    }
    let mut out = serde_json::Map::new();
    walk("", old, new, &mut out);
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen_and_page_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Default::default()).expect("store");
        let log = AuditLog::open(store.clone()).expect("log");
        for i in 0..5 {
            log.append(
                "alice",
                "strategy.publish",
                format!("v{i}"),
                serde_json::json!({}),
            )
            .expect("append");
        }
        drop(log);
        store.close().expect("close");
        drop(store);
        let store = Store::open(dir.path(), Default::default()).expect("reopen");
        let log = AuditLog::open(store).expect("log");
        let e = log
            .append("bob", "model.activate", "m", serde_json::json!({"a": 1}))
            .expect("append");
        assert_eq!(e.seq, 6);
        let page = log.list(3, None).expect("list");
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 5, 4]);
        let next = log.list(3, Some(4)).expect("list");
        assert_eq!(next.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(page[0].actor, "bob");
    }

    #[test]
    fn a_swap_the_engine_made_is_audited_once_and_drawn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Default::default()).expect("store");
        let hub = std::sync::Arc::new(super::super::live::Hub::default());
        let r = Recorder::new(AuditLog::open(store).expect("log"), hub);
        // The model the service started with, then an activation noted by its route.
        assert!(r.note_model(1));
        assert!(r.note_model(2));
        r.model_seen_at(2, None);
        assert!(r.log.list(10, None).expect("list").is_empty());
        // A fine-tuned swap nobody announced: one entry, one marker.
        r.model_seen_at(3, None);
        r.model_seen_at(3, None);
        let rows = r.log.list(10, None).expect("list");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].actor.as_str(), rows[0].action.as_str()),
            ("engine", "model.swap")
        );
        let m = Marker::of(&rows[0]).expect("drawn");
        assert_eq!((m.kind.as_str(), m.version), ("model", Some(3)));
        // The figures show an activation's version before the route has noted it: not
        // the engine's swap; asked again after the activation, it is already accounted.
        let activation = r.activation();
        assert!(
            !r.model_seen_at(4, None),
            "deferred while the activation runs"
        );
        assert!(r.note_model(4));
        drop(activation);
        assert!(r.model_seen_at(4, None));
        assert_eq!(
            r.log.list(10, None).expect("list").len(),
            1,
            "no model.swap for v4"
        );
    }

    #[test]
    fn diffs_name_the_changed_fields() {
        let a = serde_json::json!({"weights": {"pop": 0.2, "seq": 1.0}, "name": "x"});
        let b = serde_json::json!({"weights": {"pop": 0.5, "seq": 1.0}, "name": "x"});
        assert_eq!(
            json_diff(&a, &b),
            serde_json::json!({"weights.pop": [0.2, 0.5]})
        );
    }
}
