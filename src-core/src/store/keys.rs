//! Key layout of the store's sled tree.
//!
//! Everything that one append or one imported chunk must change atomically (event blocks,
//! the ids they introduce, an import record) is written by a single `apply_batch` (or a
//! plain insert when it is one key). sled batches are kept to a few large values: in
//! sled 0.34 every key written through a batch costs kilobytes of memory that stay
//! allocated, while large values and plain inserts do not (measured; see ARCHITECTURE.md). Hence events go in blocks, new ids in blocks,
//! and the per-user index is maintained with plain inserts by a background indexer.
//!
//! Keys start with a one-byte prefix; integers are big-endian so that sled's lexicographic
//! order is numeric order.

/// `e` + seq (u64) of the block's first event → a block of encoded events (`Vec<Event<u32>>`).
pub const EVENT: u8 = b'e';
/// `u` + user (u32) + chunk number (u32) → up to [`super::index::CHUNK_ENTRIES`] entries of
/// the user's sequence ([`super::UserEntry`], 21 bytes each), in log order.
pub const USER_SEQ: u8 = b'u';
/// `n` + space (`u` users, `i` items) + first dense id (u32) → the external ids (a
/// `Vec<String>`) introduced by one write, densely numbered from the first.
pub const ID_BLOCK: u8 = b'n';
/// `c` + dense item id (u32) → catalogue record (JSON).
pub const CATALOGUE: u8 = b'c';
/// `h` + sha256 of an imported file → import record (JSON).
pub const IMPORT: u8 = b'h';
/// `m` + name → metadata value.
pub const META: u8 = b'm';

/// `r` + space byte + key → a record of one of the engine's spaces
/// ([`super::RecordSpace`]: strategies, session snapshots, blobs).
pub const RECORD: u8 = b'r';

/// Id-block space of users.
pub const SPACE_USERS: u8 = b'u';
/// Id-block space of items.
pub const SPACE_ITEMS: u8 = b'i';

/// Metadata name of the schema version (u32).
pub const META_SCHEMA: &[u8] = b"schema_version";
/// Metadata name of the index watermark (u64): events below it are in the per-user index.
pub const META_INDEXED: &[u8] = b"indexed_upto";
/// Metadata name of an import in progress (JSON), rolled back on open.
pub const META_PENDING: &[u8] = b"pending_import";
/// Metadata name of the sequence floor (u64): no event is ever numbered below it again.
/// Forgetting a user may remove the log's last events; the floor keeps their numbers from
/// being reused after a restart.
pub const META_SEQ_FLOOR: &[u8] = b"seq_floor";

pub fn event(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = EVENT;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn user_chunk(user: u32, chunk: u32) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = USER_SEQ;
    k[1..5].copy_from_slice(&user.to_be_bytes());
    k[5..].copy_from_slice(&chunk.to_be_bytes());
    k
}

pub fn user_prefix(user: u32) -> [u8; 5] {
    with_id(USER_SEQ, user)
}

pub fn id_block(space: u8, first: u32) -> [u8; 6] {
    let mut k = [0u8; 6];
    k[0] = ID_BLOCK;
    k[1] = space;
    k[2..].copy_from_slice(&first.to_be_bytes());
    k
}

pub fn with_id(prefix: u8, id: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn with_bytes(prefix: u8, bytes: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(bytes.len() + 1);
    k.push(prefix);
    k.extend_from_slice(bytes);
    k
}

pub fn meta(name: &[u8]) -> Vec<u8> {
    with_bytes(META, name)
}

/// Reads the big-endian u64 after a one-byte prefix.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

/// Reads a big-endian u32 at `at`.
pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}
