//! `attune backup` and `attune restore`: a consistent backup of a store, served or not,
//! into one checked file, and a new store rebuilt from it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use attune::store::{restore_backup, verify_backup, BackupSummary, Store, StoreConfig};

use crate::cli::{BackupArgs, CompactArgs, RestoreArgs};

pub fn backup(a: BackupArgs) -> Result<()> {
    if !attune::store::is_store(&a.store) {
        bail!("--store {}: no store there", a.store.display());
    }
    if a.out.exists() {
        bail!(
            "--out {} exists; a backup never overwrites a file: choose a new name",
            a.out.display()
        );
    }
    let mut partial = a.out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let started = Instant::now();
    let written = write_backup(&a.store, &partial).and_then(|how| {
        let summary = verify_backup(&partial)
            .with_context(|| format!("the backup written to {} is unusable", partial.display()))?;
        Ok((how, summary))
    });
    let (how, s) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &a.out)
        .with_context(|| format!("renaming {} to {}", partial.display(), a.out.display()))?;
    println!("backup of {} ({how})", a.store.display());
    print_contents(&s);
    println!(
        "  writers paused {:.3} ms while the snapshot point was taken",
        s.writer_pause_us as f64 / 1000.0
    );
    println!(
        "  wrote {} in {:.2} s to {} (checked: SHA-256 over the whole file)",
        megabytes(s.bytes),
        started.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

/// Writes the backup of `store` to `file`: directly when no process holds the store,
/// else by asking the process that serves it. Says which.
fn write_backup(store: &Path, file: &Path) -> Result<&'static str> {
    // A service answering on the store's socket holds it: ask it at once (opening the
    // store would wait for sled's lock before reporting it held).
    #[cfg(unix)]
    if let Ok(stream) =
        std::os::unix::net::UnixStream::connect(store.join(attune::service::backups::SOCKET))
    {
        from_service(store, stream, file)?;
        return Ok("served: taken by the running service");
    }
    match Store::open(store, StoreConfig::default()) {
        Ok(s) => {
            let out = create(file)?;
            s.backup_to(out)?;
            s.close()?;
            Ok("not served: read directly")
        }
        Err(attune::Error::Locked(_)) => {
            let socket = store.join(attune::service::backups::SOCKET);
            bail!(
                "{} is in use by another process, and no attune service answers at {} \
                 (only `attune serve` and `attune demo` take backups of a store they hold)",
                store.display(),
                socket.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

fn create(file: &Path) -> Result<File> {
    File::options()
        .write(true)
        .create_new(true)
        .open(file)
        .with_context(|| format!("creating {}", file.display()))
}

/// Receives the backup from the service at the other end of `stream`.
#[cfg(unix)]
fn from_service(
    store: &Path,
    mut stream: std::os::unix::net::UnixStream,
    file: &Path,
) -> Result<()> {
    use std::io::{Read, Write};
    let socket = store.join(attune::service::backups::SOCKET);
    stream
        .write_all(b"backup\n")
        .with_context(|| format!("asking {} for a backup", socket.display()))?;
    let mut head = [0u8; 4];
    stream
        .read_exact(&mut head)
        .with_context(|| format!("{} closed without answering", socket.display()))?;
    if &head == b"ERR " {
        let mut rest = String::new();
        let _ = stream.read_to_string(&mut rest);
        bail!("the service refused the backup: {}", rest.trim());
    }
    let mut out = std::io::BufWriter::new(create(file)?);
    out.write_all(&head)?;
    std::io::copy(&mut stream, &mut out)
        .with_context(|| format!("receiving the backup from {}", socket.display()))?;
    out.flush()?;
    out.get_ref().sync_all()?;
    Ok(())
}

pub fn compact(a: CompactArgs) -> Result<()> {
    if !attune::store::is_store(&a.store) {
        bail!("--store {}: no store there", a.store.display());
    }
    let (how, c) = compact_store(&a.store)?;
    println!(
        "compacted {} ({how}): {} keys; {} of files before, {} after; appends waited {:.1} ms",
        a.store.display(),
        c.keys,
        megabytes(c.bytes_before),
        megabytes(c.bytes_after),
        c.writer_pause_ms
    );
    Ok(())
}

fn compact_store(store: &Path) -> Result<(&'static str, attune::store::Compacted)> {
    #[cfg(unix)]
    if let Ok(mut stream) =
        std::os::unix::net::UnixStream::connect(store.join(attune::service::backups::SOCKET))
    {
        use std::io::{BufRead, Write};
        stream.write_all(b"compact\n")?;
        let mut line = String::new();
        std::io::BufReader::new(&stream).read_line(&mut line)?;
        if let Some(e) = line.strip_prefix("ERR ") {
            bail!("the service could not compact the store: {}", e.trim());
        }
        let c = serde_json::from_str(line.trim())
            .with_context(|| format!("the service answered {line:?}"))?;
        return Ok(("served: compacted by the running service", c));
    }
    let s = Store::open(store, StoreConfig::default())?;
    let c = s.compact()?;
    s.close()?;
    Ok(("not served: compacted directly", c))
}

pub fn restore(a: RestoreArgs) -> Result<()> {
    let started = Instant::now();
    let s = restore_backup(&a.from, &a.store)
        .with_context(|| format!("restoring {} into {}", a.from.display(), a.store.display()))?;
    println!(
        "restored {} ({}, checked) into {} in {:.2} s",
        a.from.display(),
        megabytes(s.bytes),
        a.store.display(),
        started.elapsed().as_secs_f64()
    );
    print_contents(&s);
    println!(
        "  the store numbers its next event {}; its per-user index was rebuilt",
        s.snapshot_seq
    );
    Ok(())
}

fn print_contents(s: &BackupSummary) {
    println!(
        "  snapshot at event {} (taken {}): {} events, {} users, {} items, strategy {}",
        s.snapshot_seq,
        attune::store::format_utc(s.created_ms),
        s.events,
        s.users,
        s.items,
        s.strategy_version
            .map_or_else(|| "none".to_string(), |v| format!("v{v}"))
    );
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
