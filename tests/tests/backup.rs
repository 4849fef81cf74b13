//! `attune backup` and `attune restore`: a backup taken from a running `attune serve`
//! under write load restores every event acknowledged before its snapshot point, in order,
//! with the id maps, strategies, audit log and session snapshots; the restored store
//! serves. A truncated, altered or foreign file is refused and leaves nothing behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune::store::{RecordSpace, Store, StoreConfig};
use attune::Action;
use attune_tests::attune;
use attune_tests::http::{Client, Server};

const TOKEN: &str = "backup-test-admin-token-0123456789";

fn serve(store: &Path, token_file: &Path) -> Server {
    let t = token_file.display().to_string();
    Server::start_on(store, &["--token-file", &t])
}

/// The snapshot point `attune backup` printed.
fn snapshot_seq(stdout: &str) -> u64 {
    let at = stdout
        .split("snapshot at event ")
        .nth(1)
        .unwrap_or_else(|| panic!("no snapshot point in {stdout:?}"));
    at.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no snapshot point in {stdout:?}"))
}

fn run_ok(args: &[&str]) -> String {
    let out = attune(args);
    assert!(
        out.status.success(),
        "attune {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_err(args: &[&str]) -> String {
    let out = attune(args);
    assert!(!out.status.success(), "attune {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_backup_under_write_load_restores_everything_acknowledged_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, restored, file) = (
        dir.path().join("src"),
        dir.path().join("restored"),
        dir.path().join("src.backup"),
    );
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token file");

    // A first run leaves session snapshots (written at shutdown), a second strategy
    // version and audit entries behind.
    {
        let mut s = serve(&src, &token_file);
        for u in 0..5 {
            let body = format!(r#"{{"user":"early{u}","kind":"click","item":"i{u}","ts":1}}"#);
            assert_eq!(s.call("POST", "/v1/events", None, &body).0, 200);
            let rec = format!(r#"{{"user":"early{u}","k":5}}"#);
            assert_eq!(s.call("POST", "/v1/recommend", None, &rec).0, 200);
        }
        let (st, v) = s.call(
            "POST",
            "/v1/strategy/rollback",
            Some(TOKEN),
            r#"{"version": 1}"#,
        );
        assert_eq!(st, 200, "{v}");
        s.stop_gracefully(Duration::from_secs(30));
    }
    let sessions_before: BTreeMap<Vec<u8>, Vec<u8>> = {
        let store = Store::open(&src, StoreConfig::default()).expect("open");
        let snaps = store.records(RecordSpace::Session).expect("sessions");
        store.close().expect("close");
        snaps.into_iter().collect()
    };
    assert!(
        !sessions_before.is_empty(),
        "the first run left session snapshots"
    );

    // Write load from three clients while the backup is taken.
    let mut s = serve(&src, &token_file);
    let addr = s.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(u64, String, String)>>> = Arc::default();
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
            std::thread::spawn(move || {
                let mut c = Client::new(addr);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let events: Vec<(String, String)> = (0..4)
                        .map(|j| {
                            (
                                format!("w{t}-{}", (n + j) % 25),
                                format!("i{}", (n * 7 + j) % 300),
                            )
                        })
                        .collect();
                    let body: String = events
                        .iter()
                        .map(|(u, i)| {
                            format!(r#"{{"user":"{u}","kind":"click","item":"{i}","ts":1}}"#) + "\n"
                        })
                        .collect();
                    let r = c
                        .call("POST", "/v1/events", None, body.as_bytes())
                        .expect("answer");
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
                    let seqs = v["seqs"].as_array().expect("seqs");
                    let mut a = acked.lock().expect("lock");
                    for (seq, (u, i)) in seqs.iter().zip(events) {
                        a.push((seq.as_u64().expect("seq"), u, i));
                    }
                    n += 4;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let f = file.display().to_string();
    let src_s = src.display().to_string();
    let out = run_ok(&["backup", "--store", &src_s, "--out", &f]);
    assert!(
        out.contains("served: taken by the running service"),
        "{out}"
    );
    assert!(out.contains("writers paused"), "{out}");
    let cut = snapshot_seq(&out);
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    s.stop_gracefully(Duration::from_secs(30));
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    let before: Vec<_> = acked.iter().filter(|(seq, _, _)| *seq < cut).collect();
    assert!(
        before.len() > 50,
        "load before the snapshot point: {}",
        before.len()
    );
    assert!(
        acked.len() > before.len(),
        "load after the snapshot point too"
    );

    let r = restored.display().to_string();
    let out = run_ok(&["restore", "--from", &f, "--store", &r]);
    assert!(out.contains(&format!("snapshot at event {cut}")), "{out}");

    let source = Store::open(&src, StoreConfig::default()).expect("source");
    let store = Store::open(&restored, StoreConfig::default()).expect("restored");
    // Every event below the cut, in order, and nothing after it.
    let all: Vec<(u64, attune::Event)> = store
        .all_events()
        .collect::<attune::Result<_>>()
        .expect("events");
    assert_eq!(
        all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (0..cut).collect::<Vec<_>>(),
        "the restored log is exactly the source's below the snapshot point"
    );
    let originals: Vec<(u64, attune::Event)> = source
        .events(0..cut)
        .collect::<attune::Result<_>>()
        .expect("source events");
    assert_eq!(all, originals, "same events, same dense ids");
    for (seq, user, item) in before {
        let ev = &all[*seq as usize].1;
        assert_eq!(store.user_name(ev.user).as_deref(), Some(user.as_str()));
        let Action::Click { item: id } = &ev.action else {
            panic!("event {seq} is not a click");
        };
        assert_eq!(store.item_name(*id).as_deref(), Some(item.as_str()));
    }
    assert_eq!(
        store.next_seq(),
        cut,
        "numbering goes on from the snapshot point"
    );
    // Id maps: every id the restored store knows names what the source's does.
    for id in 0..store.n_users() as u32 {
        assert_eq!(store.user_name(id), source.user_name(id), "user id {id}");
    }
    for id in 0..store.n_items() as u32 {
        assert_eq!(store.item_name(id), source.item_name(id), "item id {id}");
    }
    // Strategies, audit and sessions as the source held them.
    for space in [RecordSpace::Strategy, RecordSpace::Audit] {
        assert_eq!(
            store.records(space).expect("restored"),
            source.records(space).expect("source"),
            "{space:?}"
        );
    }
    let sessions: BTreeMap<Vec<u8>, Vec<u8>> = store
        .records(RecordSpace::Session)
        .expect("sessions")
        .into_iter()
        .collect();
    for (k, v) in &sessions_before {
        assert_eq!(
            sessions.get(k),
            Some(v),
            "session {}",
            String::from_utf8_lossy(k)
        );
    }
    // The per-user index was rebuilt: a user's history is complete.
    let w = store.user_id("w0-3").expect("a writer's user");
    let in_log = all.iter().filter(|(_, e)| e.user == w).count();
    assert_eq!(store.user_history(w).expect("history").len(), in_log);
    source.close().expect("close");
    store.close().expect("close");
    drop((source, store));

    // The restored store serves, with the strategy version the source had.
    let s = serve(&restored, &token_file);
    assert_eq!(s.call("GET", "/healthz", None, "").0, 200);
    let (_, strategy) = s.call("GET", "/v1/strategy", None, "");
    assert_eq!(strategy["version"], 2, "{strategy}");
    let (st, user) = s.call("GET", "/v1/users/w0-3", None, "");
    assert_eq!(st, 200, "{user}");
    let (st, rec) = s.call("POST", "/v1/recommend", None, r#"{"user":"w0-3","k":5}"#);
    assert_eq!(st, 200, "{rec}");
}

#[test]
fn a_damaged_backup_is_refused_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let file = dir.path().join("good.backup");
    let (src_s, f) = (src.display().to_string(), file.display().to_string());
    run_ok(&["generate", "--store", &src_s, "--users", "50"]);
    let out = run_ok(&["backup", "--store", &src_s, "--out", &f]);
    assert!(out.contains("not served"), "{out}");
    let bytes = std::fs::read(&file).expect("backup");

    // Never overwrites a file.
    let err = run_err(&["backup", "--store", &src_s, "--out", &f]);
    assert!(err.contains("exists"), "{err}");

    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("truncated", bytes[..bytes.len() / 2].to_vec(), "truncated"),
        (
            "no checksum",
            bytes[..bytes.len() - 32].to_vec(),
            "truncated",
        ),
        (
            "altered",
            {
                let mut b = bytes.clone();
                let at = b.len() / 2;
                b[at] ^= 0x5a;
                b
            },
            "",
        ),
        (
            "foreign",
            b"hello, not a backup at all".to_vec(),
            "not an Attune backup",
        ),
    ];
    for (name, content, says) in cases {
        let bad = dir
            .path()
            .join(format!("{}.backup", name.replace(' ', "-")));
        std::fs::write(&bad, content).expect("write");
        let target = dir
            .path()
            .join(format!("restored-{}", name.replace(' ', "-")));
        let err = run_err(&[
            "restore",
            "--from",
            &bad.display().to_string(),
            "--store",
            &target.display().to_string(),
        ]);
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            err.contains(&bad.display().to_string()),
            "{name} names the file: {err}"
        );
        if name == "altered" {
            assert!(
                err.contains("checksum mismatch") || err.contains("corrupt"),
                "{name}: {err}"
            );
        }
        assert!(!target.exists(), "{name}: nothing written");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("restoring"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: no temporary store left");
    }

    // Into a store that holds data: refused.
    let err = run_err(&["restore", "--from", &f, "--store", &src_s]);
    assert!(err.contains("not empty"), "{err}");
    // The good file restores.
    let target = dir.path().join("restored");
    let out = run_ok(&[
        "restore",
        "--from",
        &f,
        "--store",
        &target.display().to_string(),
    ]);
    assert!(out.contains("restored"), "{out}");
}
