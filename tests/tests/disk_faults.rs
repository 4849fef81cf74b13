//! The store's disk full, and failing, under a real `attune serve`:
//!
//! - on a small tmpfs, writes past `min_free_bytes` answer 507 `storage_full` with
//!   `Retry-After`, `/healthz` says why, nothing refused is in the store, and once the
//!   tmpfs is grown writes resume without a restart;
//! - with libfiu's `fiu-run` injecting EIO into `pwrite` and `fsync`/`fdatasync`, the first
//!   failure stops writes (503 `storage_failed`, then `unhealthy`) and fails `/healthz`,
//!   every acknowledged event survives a kill -9, and no event answered "not written" is
//!   there.
//!
//! Mounting a tmpfs needs root and fiu-run needs `fiu-utils` (`scripts/setup.sh` installs
//! it); without them the tests skip with a note, unless `ATTUNE_REQUIRE_TOOLS=1`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use attune::store::{Store, StoreConfig};
use attune_tests::http::{Client, Server};
use attune_tests::tool;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mb: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("ATTUNE_REQUIRE_TOOLS").is_err(),
                "cannot mount a tmpfs (root needed) and ATTUNE_REQUIRE_TOOLS is set"
            );
            eprintln!("skipping: cannot mount a tmpfs here (root needed)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn grow(&self, mb: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount the tmpfs larger");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A config file keeping `min_free` bytes free.
fn config(dir: &Path, min_free: u64) -> PathBuf {
    let p = dir.join("attune.toml");
    std::fs::write(
        &p,
        format!("[engine.store_config]\nmin_free_bytes = {min_free}\n"),
    )
    .expect("config");
    p
}

/// A body of 50 clicks on items no other body uses: `b{batch}-{j}`.
fn body(batch: usize) -> String {
    (0..50)
        .map(|j| {
            format!(
                r#"{{"user":"u{}","kind":"click","item":"b{batch}-{j}","ts":1}}"#,
                (batch * 50 + j) % 300
            ) + "\n"
        })
        .collect()
}

/// Every event in the store: (seq, item name).
fn stored(store: &Path) -> Vec<(u64, String)> {
    let s = Store::open(store, StoreConfig::default()).expect("reopen");
    let all = s
        .all_events()
        .map(|e| {
            let (seq, ev) = e.expect("event");
            let item = ev
                .action
                .item()
                .and_then(|i| s.item_name(*i))
                .unwrap_or_default();
            (seq, item)
        })
        .collect();
    s.close().expect("close");
    all
}

#[test]
fn a_full_disk_answers_507_and_writes_resume_when_space_returns() {
    let Some(fs) = Tmpfs::mount(8) else { return };
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(conf_dir.path(), 1 << 20);
    let store = fs.path().join("store");
    let cfg_s = cfg.display().to_string();
    let mut s = Server::start_on(&store, &["--config", &cfg_s]);
    let mut c = Client::new(s.addr());
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut batch = 0;
    let full = loop {
        assert!(batch < 5000, "the disk never filled");
        let b = body(batch);
        let r = c
            .call("POST", "/v1/events", None, b.as_bytes())
            .expect("answer");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        if r.status == 200 {
            for (j, seq) in v["seqs"].as_array().expect("seqs").iter().enumerate() {
                acked.push((seq.as_u64().expect("seq"), format!("b{batch}-{j}")));
            }
        } else {
            refused.extend((0..50).map(|j| format!("b{batch}-{j}")));
            break (r, v);
        }
        batch += 1;
    };
    let (r, v) = full;
    assert_eq!(r.status, 507, "{v}");
    assert_eq!(v["error"]["code"], "storage_full", "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("0 of the body's events"), "{v}");
    assert!(
        r.headers.iter().any(|(k, _)| k == "retry-after"),
        "Retry-After"
    );
    let (st, health) = s.call("GET", "/healthz", None, "");
    assert_eq!(st, 503, "{health}");
    assert!(
        health["storage_full"]["available_bytes"].is_u64(),
        "{health}"
    );
    // Reads go on.
    assert_eq!(s.call("GET", "/v1/users/u1", None, "").0, 200);

    // Space returns: writes resume by themselves.
    fs.grow(32);
    let grown = Instant::now();
    loop {
        batch += 1;
        let b = body(batch);
        let r = c
            .call("POST", "/v1/events", None, b.as_bytes())
            .expect("answer");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        if r.status == 200 {
            for (j, seq) in v["seqs"].as_array().expect("seqs").iter().enumerate() {
                acked.push((seq.as_u64().expect("seq"), format!("b{batch}-{j}")));
            }
            break;
        }
        assert_eq!(r.status, 507, "{v}");
        refused.extend((0..50).map(|j| format!("b{batch}-{j}")));
        assert!(
            grown.elapsed() < Duration::from_secs(10),
            "writes never resumed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "disk full: {} events acknowledged before, writes resumed {:.0} ms after the tmpfs grew",
        acked.len() - 50,
        grown.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(s.call("GET", "/healthz", None, "").0, 200);

    // Nothing acknowledged is lost, nothing refused is there, nothing twice.
    s.kill();
    let present = stored(&store);
    let items: BTreeSet<&str> = present.iter().map(|(_, i)| i.as_str()).collect();
    assert_eq!(
        present.len(),
        acked.len(),
        "the store holds exactly what was acknowledged"
    );
    assert_eq!(items.len(), present.len(), "no event twice");
    for (seq, item) in &acked {
        assert!(
            present.contains(&(*seq, item.clone())),
            "acknowledged {seq} {item}"
        );
    }
    for item in &refused {
        assert!(!items.contains(item.as_str()), "refused {item} is there");
    }
}

#[test]
fn io_errors_stop_writes_fail_health_and_lose_nothing_acknowledged() {
    let (Some(_), Some(_)) = (tool("fiu-run"), tool("fiu-ctrl")) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let ctrl = dir.path().join("fiu");
    let ctrl_s = ctrl.display().to_string();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let (store_s, models_s) = (store.display().to_string(), models.display().to_string());
    let mut s = Server::launch_under(
        &["fiu-run", "-x", "-f", &ctrl_s],
        &[
            "--bind",
            "127.0.0.1:0",
            "--store",
            &store_s,
            "--models",
            &models_s,
        ],
        &store,
    );
    let mut c = Client::new(s.addr());
    let mut acked: Vec<(u64, String)> = Vec::new();
    let post = |c: &mut Client, batch: usize| {
        let r = c
            .call("POST", "/v1/events", None, body(batch).as_bytes())
            .expect("answer");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        (r.status, v)
    };
    for batch in 0..20 {
        let (st, v) = post(&mut c, batch);
        assert_eq!(st, 200, "{v}");
        for (j, seq) in v["seqs"].as_array().expect("seqs").iter().enumerate() {
            acked.push((seq.as_u64().expect("seq"), format!("b{batch}-{j}")));
        }
    }
    // EIO at random in the store's writes and syncs from now on.
    let enabled = Command::new("fiu-ctrl")
        .args(["-f", &ctrl_s])
        .args([
            "-c",
            "enable_random name=posix/io/rw/pwrite,probability=0.3",
        ])
        .args([
            "-c",
            "enable_random name=posix/io/sync/fsync,probability=0.3",
        ])
        .args([
            "-c",
            "enable_random name=posix/io/sync/fdatasync,probability=0.3",
        ])
        .arg(s.pid().to_string())
        .status()
        .expect("fiu-ctrl");
    assert!(enabled.success(), "fiu-ctrl enabled the failure points");
    let (mut unknown, mut not_written) = (Vec::new(), Vec::new());
    let mut first_failure = None;
    for batch in 20..400 {
        let (st, v) = post(&mut c, batch);
        let items: Vec<String> = (0..50).map(|j| format!("b{batch}-{j}")).collect();
        match (st, v["error"]["code"].as_str()) {
            (200, _) => {
                for (j, seq) in v["seqs"].as_array().expect("seqs").iter().enumerate() {
                    acked.push((seq.as_u64().expect("seq"), format!("b{batch}-{j}")));
                }
                continue;
            }
            (503, Some("storage_failed")) => unknown.extend(items),
            (503, Some("unhealthy")) => not_written.extend(items),
            _ => panic!("batch {batch}: {st} {v}"),
        }
        // From the first failure on, the service must not claim health.
        let (hs, health) = s.call("GET", "/healthz", None, "");
        assert_eq!(hs, 503, "after a failed write: {health}");
        first_failure.get_or_insert(batch);
        if not_written.len() >= 250 {
            break;
        }
    }
    let first = first_failure.expect("an injected EIO failed a write");
    s.kill();
    let present = stored(&store);
    let items: BTreeSet<&str> = present.iter().map(|(_, i)| i.as_str()).collect();
    assert_eq!(items.len(), present.len(), "no event twice");
    for (seq, item) in &acked {
        assert!(
            present.contains(&(*seq, item.clone())),
            "acknowledged {seq} {item} lost"
        );
    }
    for item in &not_written {
        assert!(
            !items.contains(item.as_str()),
            "{item} was answered not written"
        );
    }
    let unknown_present = unknown
        .iter()
        .filter(|i| items.contains(i.as_str()))
        .count();
    eprintln!(
        "EIO: {} acknowledged (first failure at batch {first}), all present; {} answered \
         not written, none present; {} of unknown outcome, {unknown_present} present",
        acked.len(),
        not_written.len(),
        unknown.len()
    );
}
