//! Backups of the store while the service runs. sled locks the store's directory, so
//! `attune backup --store DIR` cannot open a served store itself; it asks the process
//! that holds it through a Unix socket in that directory, `DIR/backup.sock`. Reaching it
//! needs the same file-system rights as reading the store's files, which is what a backup
//! gives anyway. The request is the line `backup`, answered with the backup file's bytes
//! ([`crate::store::Store::backup_to`]), or `compact`, answered with one line of JSON
//! ([`crate::store::Store::compact`]); a failure is a line `ERR message`.

use std::path::PathBuf;

use crate::store::Store;

/// The socket's file name inside the store's directory.
pub const SOCKET: &str = "backup.sock";

/// The listener: a thread answering backup requests, one at a time, until dropped.
pub(crate) struct Listener {
    #[cfg(unix)]
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    #[cfg(unix)]
    thread: Option<crate::supervise::Supervised>,
    path: PathBuf,
}

impl Listener {
    /// Listens at `STORE/backup.sock`; `None` (logged) where that is not possible.
    #[cfg(unix)]
    pub(crate) fn start(store: &Store) -> Option<Listener> {
        use std::os::unix::net::UnixListener;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::Duration;

        let path = store.path().join(SOCKET);
        // This process holds the store's lock: a socket file left there is stale.
        let _ = std::fs::remove_file(&path);
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot listen for backups; `attune backup` will not reach this service");
                return None;
            }
        };
        if let Err(e) = listener.set_nonblocking(true) {
            tracing::warn!(error = %e, "cannot listen for backups");
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let store = store.clone();
        let thread = store
            .supervisor()
            .clone()
            .spawn(
                "attune-backups",
                crate::os::BackgroundPriority::Normal,
                crate::supervise::Restart::Never,
                move || {
                    while !stopping.load(Ordering::Acquire) {
                        match listener.accept() {
                            Ok((stream, _)) => answer(&store, stream),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                std::thread::sleep(Duration::from_millis(50))
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "backup socket");
                                std::thread::sleep(Duration::from_millis(50))
                            }
                        }
                    }
                    Ok(())
                },
            )
            .map_err(|e| tracing::warn!(error = %e, "cannot start the backup listener"))
            .ok()?;
        Some(Listener {
            stop,
            thread: Some(thread),
            path,
        })
    }

    #[cfg(not(unix))]
    pub(crate) fn start(_store: &Store) -> Option<Listener> {
        None
    }
}

#[cfg(unix)]
fn answer(store: &Store, stream: std::os::unix::net::UnixStream) {
    use std::io::{BufRead, Write};
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(&stream);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut out = &stream;
    match line.trim() {
        "backup" => match store.backup_to(out) {
            Ok(s) => tracing::info!(
                snapshot_seq = s.snapshot_seq,
                events = s.events,
                bytes = s.bytes,
                writer_pause_us = s.writer_pause_us,
                "backup sent"
            ),
            // The client sees a file without its checksum and refuses it.
            Err(e) => tracing::warn!(error = %e, "backup failed"),
        },
        "compact" => match store.compact() {
            Ok(c) => {
                let _ = writeln!(out, "{}", serde_json::to_string(&c).unwrap_or_default());
            }
            Err(e) => {
                let _ = writeln!(out, "ERR {}", crate::error::report(&e));
            }
        },
        other => {
            let _ = writeln!(out, "ERR unknown request {other:?}; `backup` or `compact`");
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            self.stop.store(true, std::sync::atomic::Ordering::Release);
            if let Some(t) = self.thread.take() {
                t.join();
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
