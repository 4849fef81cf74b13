//! Key layout of the store's single sled tree.
//!
//! Everything that one import or one append must change atomically (events, the per-user
//! index, new ids, catalogue records, the import record) lives in one tree, so a single
//! `apply_batch` commits it all or nothing. Keys start with a one-byte prefix; integers are
//! big-endian so that sled's lexicographic order is numeric order.

/// `e` + seq (u64) of the block's first event → a block of encoded events (`Vec<Event<u32>>`).
pub const EVENT: u8 = b'e';
/// `u` + user (u32) + seq (u64) of the first entry → that user's entries of one block
/// ([`super::UserEntry`], 21 bytes each).
pub const USER_SEQ: u8 = b'u';
/// `U` + external user id → dense id (u32).
pub const USER_ID: u8 = b'U';
/// `V` + dense user id (u32) → external id.
pub const USER_NAME: u8 = b'V';
/// `I` + external item id → dense id (u32).
pub const ITEM_ID: u8 = b'I';
/// `J` + dense item id (u32) → external id.
pub const ITEM_NAME: u8 = b'J';
/// `c` + dense item id (u32) → catalogue record (JSON).
pub const CATALOGUE: u8 = b'c';
/// `h` + sha256 of an imported file → import record (JSON).
pub const IMPORT: u8 = b'h';
/// `m` + name → metadata value.
pub const META: u8 = b'm';

/// Metadata name of the schema version (u32, big-endian).
pub const META_SCHEMA: &[u8] = b"schema_version";

pub fn event(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = EVENT;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn user_seq(user: u32, seq: u64) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = USER_SEQ;
    k[1..5].copy_from_slice(&user.to_be_bytes());
    k[5..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn user_prefix(user: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = USER_SEQ;
    k[1..].copy_from_slice(&user.to_be_bytes());
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

/// Reads the big-endian u64 after a one-byte prefix.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

/// Reads a big-endian u32 at `at`.
pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}
