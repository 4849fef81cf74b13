//! Where sled's files live inside a store's directory, and how a compaction replaces them.
//!
//! A store created before compaction existed keeps sled's files (`db`, `conf`, `blobs/`,
//! `snap.*`) in the store's directory itself. A compaction writes a new generation in a
//! sub-directory, `data-N`, and then names it in `CURRENT` (written to a temporary file,
//! synced, renamed over the old one, the directory synced): that rename is the moment the
//! new generation becomes the store. Only then are the old generation's files removed. A
//! crash before the rename leaves the old generation in force and the half-written one
//! as a leftover; after it, the new one in force and the old one as a leftover; either
//! leftover is removed by the next open.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The file naming the generation in force.
const CURRENT: &str = "CURRENT";
/// sled's files when they lie in the store's directory itself (the first generation).
const LEGACY: [&str; 3] = ["db", "conf", "blobs"];
const GENERATION: &str = "data-";

/// Whether `dir` holds a store (either layout).
pub fn is_store(dir: &Path) -> bool {
    dir.join(CURRENT).is_file() || dir.join("conf").is_file()
}

/// The directory of sled's files in force for the store at `dir`; removes what an
/// interrupted compaction left behind.
pub(super) fn data_dir(dir: &Path) -> Result<PathBuf> {
    let current = match std::fs::read_to_string(dir.join(CURRENT)) {
        Ok(name) => {
            let name = name.trim();
            if !name.starts_with(GENERATION) || name.contains('/') {
                return Err(Error::Corrupt {
                    key: dir.join(CURRENT).display().to_string(),
                    reason: format!("names {name:?}, not a data-N directory"),
                });
            }
            Some(dir.join(name))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(dir.join(CURRENT), e)),
    };
    let in_force = current.clone().unwrap_or_else(|| dir.to_path_buf());
    if dir.is_dir() {
        remove_others(dir, &in_force);
    }
    Ok(in_force)
}

/// The directory of the generation after `current`.
pub(super) fn next_generation(dir: &Path, current: &Path) -> PathBuf {
    let n = current
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(GENERATION))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|_| current != dir)
        .unwrap_or(0);
    dir.join(format!("{GENERATION}{:06}", n + 1))
}

/// Makes `generation` the store's, durably.
pub(super) fn publish(dir: &Path, generation: &Path) -> Result<()> {
    let name = generation
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::internal("a generation directory without a name"))?;
    let tmp = dir.join("CURRENT.tmp");
    let io = |p: &Path, e| Error::io(p, e);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(name.as_bytes()).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
    }
    std::fs::rename(&tmp, dir.join(CURRENT)).map_err(|e| io(dir, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// Removes every generation but `keep` (the legacy files when `keep` is a sub-directory,
/// other `data-N` directories, a stray `CURRENT.tmp`). Best effort: what cannot be
/// removed now is removed by the next open.
pub(super) fn remove_others(dir: &Path, keep: &Path) {
    let mut doomed: Vec<PathBuf> = Vec::new();
    if keep != dir {
        doomed.extend(LEGACY.iter().map(|n| dir.join(n)));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let other_generation = name.starts_with(GENERATION) && e.path() != keep;
            let legacy_snapshot = keep != dir && name.starts_with("snap.");
            if other_generation || legacy_snapshot || name == "CURRENT.tmp" {
                doomed.push(e.path());
            }
        }
    }
    for p in doomed {
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match removed {
            Ok(()) => tracing::debug!(path = %p.display(), "old generation removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "could not remove an old generation")
            }
        }
    }
}
