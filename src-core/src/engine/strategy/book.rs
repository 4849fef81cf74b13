//! The versioned strategies of a store: each version with who published it and why, the
//! one in force, the history, and rollbacks.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::Strategy;
use crate::error::{Error, Result};
use crate::store::{RecordSpace, Store};

/// One stored version of the strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StrategyVersion {
    /// Version number, from 1, increasing.
    pub version: u64,
    /// When it was set (ms since the epoch).
    pub created_ms: i64,
    /// Why: `initial`, `set`, `rollback to N`, or `guard revert to N: <reason>`.
    pub note: String,
    /// Who set it: the name of the token that published it (`guard` for a guard's
    /// revert; empty for versions set by a host program or before tokens had names).
    #[serde(default)]
    pub author: String,
    /// The publisher's message.
    #[serde(default)]
    pub message: String,
    /// The version in force when this one was published (what the publisher edited).
    #[serde(default)]
    pub based_on: Option<u64>,
    /// The strategy.
    pub strategy: Strategy,
}

/// Who publishes a strategy version, why, and from which version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Publish {
    /// The publisher (a token's name).
    pub author: String,
    /// Why.
    pub message: String,
    /// The version the publisher edited; when set and no longer the version in force, the
    /// publish is refused with [`Error::Conflict`].
    pub base_version: Option<u64>,
}

const CURRENT: &[u8] = b"current";

fn version_key(v: u64) -> Vec<u8> {
    let mut k = b"v".to_vec();
    k.extend_from_slice(&v.to_be_bytes());
    k
}

/// The versioned strategies of a store.
#[derive(Debug)]
pub struct StrategyBook {
    store: Store,
    /// Serialises writers so versions are dense.
    lock: Mutex<()>,
}

impl StrategyBook {
    /// The book of `store`; writes `initial` as version 1 if the store has none.
    pub fn open(store: Store, initial: &Strategy) -> Result<StrategyBook> {
        let book = StrategyBook {
            store,
            lock: Mutex::new(()),
        };
        if book.current()?.is_none() {
            initial.validate()?;
            book.write(initial.clone(), "initial".into(), &Publish::default())?;
        }
        Ok(book)
    }

    /// The version in force, if any.
    pub fn current(&self) -> Result<Option<StrategyVersion>> {
        match self.current_version()? {
            Some(v) => self.get(v),
            None => Ok(None),
        }
    }

    /// The number of the version in force, if any.
    fn current_version(&self) -> Result<Option<u64>> {
        let Some(bytes) = self.store.get_record(RecordSpace::Strategy, CURRENT)? else {
            return Ok(None);
        };
        Ok(Some(u64::from_be_bytes(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| Error::config("strategy", "corrupt current-version record"))?,
        )))
    }

    /// One version.
    pub fn get(&self, version: u64) -> Result<Option<StrategyVersion>> {
        match self
            .store
            .get_record(RecordSpace::Strategy, &version_key(version))?
        {
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    /// Every version, oldest first.
    pub fn history(&self) -> Result<Vec<StrategyVersion>> {
        self.store
            .records(RecordSpace::Strategy)?
            .into_iter()
            .filter(|(k, _)| k.first() == Some(&b'v'))
            .map(|(_, v)| Ok(serde_json::from_slice(&v)?))
            .collect()
    }

    /// Validates and stores `strategy` as the new current version (durable on return).
    pub fn set(&self, strategy: Strategy) -> Result<StrategyVersion> {
        self.publish(strategy, "set".into(), &Publish::default())
    }

    /// Validates and stores `strategy` as the new current version with its author and
    /// message, unless `by.base_version` is set and no longer current
    /// ([`Error::Conflict`], nothing written). `note` says what kind of change it is.
    pub fn publish(
        &self,
        strategy: Strategy,
        note: String,
        by: &Publish,
    ) -> Result<StrategyVersion> {
        strategy.validate()?;
        self.write(strategy, note, by)
    }

    /// Makes a copy of version `to` the new current version.
    pub fn rollback(&self, to: u64) -> Result<StrategyVersion> {
        self.rollback_by(to, &Publish::default())
    }

    /// [`StrategyBook::rollback`] with an author, a message and a base-version check.
    pub fn rollback_by(&self, to: u64, by: &Publish) -> Result<StrategyVersion> {
        let old = self
            .get(to)?
            .ok_or_else(|| Error::NotFound(format!("there is no strategy version {to}")))?;
        self.write(old.strategy, format!("rollback to {to}"), by)
    }

    fn write(&self, strategy: Strategy, note: String, by: &Publish) -> Result<StrategyVersion> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let last = self
            .store
            .records(RecordSpace::Strategy)?
            .iter()
            .filter(|(k, _)| k.first() == Some(&b'v') && k.len() == 9)
            .filter_map(|(k, _)| k[1..].try_into().ok().map(u64::from_be_bytes))
            .max()
            .unwrap_or(0);
        let current = self.current_version()?;
        if let Some(base) = by.base_version {
            if current != Some(base) {
                return Err(Error::Conflict(format!(
                    "the change was based on strategy version {base}, but version {} is in force now; rebase it on the current version",
                    current.map_or_else(|| "none".into(), |v| v.to_string())
                )));
            }
        }
        let v = StrategyVersion {
            version: last + 1,
            created_ms: crate::store::now_ms(),
            note,
            author: by.author.clone(),
            message: by.message.clone(),
            based_on: current,
            strategy,
        };
        self.store.put_record(
            RecordSpace::Strategy,
            &version_key(v.version),
            &serde_json::to_vec(&v)?,
        )?;
        self.store
            .put_record_durable(RecordSpace::Strategy, CURRENT, &v.version.to_be_bytes())?;
        Ok(v)
    }
}
