//! One user's incremental state (the window, per-layer key and value caches, the user
//! vector), its snapshot form (the window alone), and the temporaries of a forward pass.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::*;

/// Cached keys and values of one layer.
#[derive(Clone, Default, PartialEq)]
pub(super) struct KvCache {
    /// Keys as panels of `P` positions: row `p·dim + h·head_dim + j` holds component `j`
    /// of head `h`'s keys at positions `p·P..p·P + P` (its lanes), so that a query's
    /// scores come out `P` positions at a time.
    pub(super) k: Vec<[f32; P]>,
    /// Values, `(len, dim)` row-major.
    pub(super) v: Vec<f32>,
}

/// One user's incremental state: the window of items the model reads and, per layer, the
/// keys and values of every position, plus the final hidden state of the last position
/// (the user vector). About `layers · 2 · len · dim · 4` bytes (200 KiB at ml-1m size).
///
/// Serialised, it holds only the window (`{"items": [...]}`): caches are a pure function
/// of the window and the weights, so a deserialised state is *cold* and
/// [`FastModel::refresh`] (or the next [`FastModel::push`]) re-encodes it, giving the very
/// same state. A state built by another model (say, before a retrain) is re-encoded the
/// same way.
#[derive(Clone, Default)]
pub struct SessionState {
    pub(super) items: Vec<u32>,
    pub(super) layers: Vec<KvCache>,
    pub(super) user: Vec<f32>,
    /// Id of the model whose caches these are; 0 when cold.
    pub(super) model_id: u64,
}

impl fmt::Debug for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionState")
            .field("len", &self.items.len())
            .field("warm", &self.is_warm())
            .field("model_id", &self.model_id)
            .finish()
    }
}

#[derive(Serialize)]
pub(super) struct SnapshotRef<'a> {
    pub(super) items: &'a [u32],
}

#[derive(Deserialize)]
pub(super) struct Snapshot {
    pub(super) items: Vec<u32>,
}

impl Serialize for SessionState {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        SnapshotRef { items: &self.items }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SessionState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = Snapshot::deserialize(deserializer)?;
        Ok(SessionState {
            items: s.items,
            ..SessionState::default()
        })
    }
}

impl SessionState {
    /// The window the state encodes, oldest first (dense item ids).
    pub fn items(&self) -> &[u32] {
        &self.items
    }

    /// Items in the window.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Approximate heap bytes held (window, caches, user vector).
    pub fn approx_bytes(&self) -> usize {
        self.items.capacity() * 4
            + self
                .layers
                .iter()
                .map(|l| l.k.capacity() * P * 4 + l.v.capacity() * 4)
                .sum::<usize>()
            + self.user.capacity() * 4
    }

    /// Whether the caches are built (false after deserialisation until a refresh).
    pub fn is_warm(&self) -> bool {
        self.model_id != 0
    }

    /// The user vector (final hidden state of the last item), `dim` values; `None` when
    /// the window is empty or the state is cold.
    pub fn user_vector(&self) -> Option<&[f32]> {
        (self.is_warm() && !self.items.is_empty()).then_some(self.user.as_slice())
    }
}

/// Temporaries of one token's forward pass, reused across the tokens of an encode.
pub(super) struct Scratch {
    pub(super) x: Vec<f32>,
    pub(super) h: Vec<f32>,
    pub(super) qkv: Vec<f32>,
    pub(super) att: Vec<f32>,
    pub(super) proj: Vec<f32>,
    pub(super) hidden: Vec<f32>,
    pub(super) scores: Vec<f32>,
}

impl Scratch {
    pub(super) fn new(cfg: &Config) -> Self {
        let d = cfg.dim;
        Scratch {
            x: vec![0.0; d],
            h: vec![0.0; d],
            qkv: vec![0.0; 3 * d],
            att: vec![0.0; d],
            proj: vec![0.0; d],
            hidden: vec![0.0; d * cfg.ffn_mult],
            scores: Vec::with_capacity(cfg.max_len.next_multiple_of(P)),
        }
    }
}
