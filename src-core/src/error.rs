//! The one error type of the `attune` library, grouped by subsystem.
//!
//! Expected outcomes (a duplicate import, a schema mismatch, a bad knob) are variants of
//! their own so callers can match on them; everything carries enough context (file, line,
//! field) to be printed to an operator as it is. A failure caused by another library's
//! error keeps it as its [`source`](std::error::Error::source) (and says it in its own
//! message too, so a log line with the error alone is complete); [`report`] prints a chain
//! without saying a cause twice. Every variant has its HTTP status in
//! `service::errors` (no catch-all).

use std::path::PathBuf;
use std::sync::Arc;

/// A cause of another library, kept as the `source` of an [`Error::Internal`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- store -------------------------------------------------------------------------
    /// The underlying sled database failed.
    #[error("store: {0}")]
    Sled(#[source] sled::Error),
    /// Another process holds the store open.
    #[error("store at {0} is in use by another process (sled holds a lock on it)")]
    Locked(PathBuf),
    /// The store on disk was written by another schema version.
    #[error("store at {path}: schema version {found}, but this build reads version {expected}; migrate or use a fresh directory")]
    SchemaMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// A record in the store could not be decoded (corruption or a foreign database).
    #[error("store: corrupt record under key {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A backup file is damaged, truncated or not a backup; nothing was restored from it.
    #[error("backup {file}, byte {at}: {reason}")]
    BadBackup {
        file: String,
        at: u64,
        reason: String,
    },
    /// The background flusher failed: whether the writes it covered reached the disk is
    /// unknown. Shared: one failed flush fails every write it covered.
    #[error("storage failed: a flush (fsync) failed, so whether the write reached the disk is unknown; writes stop until the service restarts: {0}")]
    Flush(#[source] Arc<sled::Error>),
    /// Writing to the store failed (an I/O error): whether the write reached the disk is
    /// unknown; the store takes no more writes until it is reopened.
    #[error("storage failed: {what}, so whether the write reached the disk is unknown; writes stop until the service restarts: {source}")]
    StorageFailed {
        what: String,
        #[source]
        source: Arc<sled::Error>,
    },
    /// The store's disk has less free space than it keeps (`min_free_bytes`): nothing was
    /// written; writes resume by themselves once space is back.
    #[error("storage full: {available} bytes available on the disk of {path}, below the {min_free} kept free (store.min_free_bytes); nothing was written, and writes resume once space is freed")]
    StorageFull {
        path: PathBuf,
        available: u64,
        min_free: u64,
    },
    /// More ids than the dense `u32` space holds.
    #[error("id space exhausted for {0}")]
    IdSpaceExhausted(&'static str),

    // --- import / data -----------------------------------------------------------------
    /// A line of an input file is malformed.
    #[error("{file}:{line}: {message}")]
    Parse {
        file: String,
        line: usize,
        message: String,
    },
    /// A file was already imported into this store (same content hash).
    #[error("{file} was already imported into this store on {when} ({events} events); nothing was added")]
    AlreadyImported {
        file: String,
        when: String,
        events: u64,
    },
    /// A file or a format could not be recognised.
    #[error("{0}")]
    UnknownFormat(String),
    /// A data set holds nothing usable for the requested job.
    #[error("empty data: {0}")]
    EmptyData(String),

    // --- models / evaluation --------------------------------------------------------------
    /// An unknown model name was requested.
    #[error("unknown model `{name}`; known models: {known}")]
    UnknownModel { name: String, known: String },
    /// The tensor library failed (shapes, devices, kernels).
    #[error("model: {0}")]
    Candle(#[source] candle_core::Error),
    /// A model checkpoint is missing, partial or does not fit the data.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// A configuration value is out of range.
    #[error("invalid {field}: {message}")]
    InvalidConfig { field: String, message: String },

    // --- engine ------------------------------------------------------------------------
    /// The inference queue is full: the request was refused at once; retry later.
    #[error("engine overloaded: the inference queue holds {queue} requests; retry later")]
    Overloaded { queue: usize },
    /// Something inside failed while handling the request: a thread or an actor broke, or
    /// a library under it (with its error as the source). Not the caller's fault; the part
    /// that failed is restarted or the request can be retried.
    #[error("internal failure: {what}{}", source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Internal {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A part the request needs cannot take it now (a session that crashed and restarts on
    /// the next request, a learner that does not answer); retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A thread the store or the engine needs has died (see [`crate::supervise`]): writes
    /// are refused until the process restarts. Nothing acknowledged is lost.
    #[error("unhealthy: {0}")]
    Unhealthy(String),
    /// A write was handed to the store but its acknowledgement was lost (the thread that
    /// carried it died): it may or may not be durable.
    #[error("unconfirmed: {0}")]
    Unconfirmed(String),
    /// The engine or the store has been shut down (or is shutting down).
    #[error("shut down")]
    ShutDown,
    /// A request names something malformed or out of range (a user or item id, k).
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// A request names something that does not exist (a strategy version).
    #[error("not found: {0}")]
    NotFound(String),
    /// A request conflicts with the state it was based on (a publish based on a strategy
    /// version that is no longer the one in force); nothing was changed.
    #[error("conflict: {0}")]
    Conflict(String),
    // --- generic -----------------------------------------------------------------------
    /// An I/O error with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// JSON (de)serialisation of a record failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Sled(e)
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(e)
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An internal failure, with no other library's error behind it.
    pub fn internal(what: impl Into<String>) -> Self {
        Error::Internal {
            what: what.into(),
            source: None,
        }
    }

    /// An internal failure caused by `source`.
    pub fn internal_from(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Internal {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// Whether the write that failed with this error may nevertheless be durable: the
    /// disk failed under it, or its acknowledgement was lost.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::Flush(_) | Error::StorageFailed { .. } | Error::Unconfirmed(_)
        )
    }

    /// Whether the error concerns the store as a whole (its disk, its health), not one
    /// write: retrying the events of a failed batch one by one would fail the same way.
    pub(crate) fn is_store_wide(&self) -> bool {
        matches!(
            self,
            Error::Flush(_)
                | Error::StorageFailed { .. }
                | Error::StorageFull { .. }
                | Error::Unhealthy(_)
                | Error::Unconfirmed(_)
                | Error::ShutDown
                | Error::Sled(_)
        )
    }

    /// This error again, for one more of the callers that share it (a failed batch answers
    /// each of its writers): the variants a caller acts on keep their kind, the others
    /// become an internal failure with this one's text.
    pub(crate) fn shared_copy(&self) -> Error {
        match self {
            Error::Flush(e) => Error::Flush(Arc::clone(e)),
            Error::StorageFailed { what, source } => Error::StorageFailed {
                what: what.clone(),
                source: Arc::clone(source),
            },
            Error::StorageFull {
                path,
                available,
                min_free,
            } => Error::StorageFull {
                path: path.clone(),
                available: *available,
                min_free: *min_free,
            },
            Error::Unhealthy(m) => Error::Unhealthy(m.clone()),
            Error::Unconfirmed(m) => Error::Unconfirmed(m.clone()),
            Error::ShutDown => Error::ShutDown,
            e => Error::internal(format!("writing the event: {}", report(e))),
        }
    }

    /// An out-of-range or malformed configuration value.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `error` and its causes on one line, `: `-separated, leaving out a cause whose text the
/// line already holds (this library's messages repeat their cause, so that a log line with
/// the error alone is complete).
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}
