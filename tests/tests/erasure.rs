//! Forgetting is physical: after `DELETE /v1/users/{id}` and the compaction the engine runs
//! `compact_after_forget_s` later, no file under the store holds the user's id or their
//! events' bytes (the unique timestamps they were posted with), while everyone else's data
//! is intact; the same holds after a graceful stop.

use std::path::Path;
use std::time::{Duration, Instant};

use attune_tests::http::Server;

const TOKEN: &str = "erasure-test-admin-token-0123456789";
/// The forgotten user's events carry timestamps `MAGIC + i`: 8 bytes found nowhere else.
const MAGIC: i64 = 200_000_123_457;

/// Every file under `dir` that contains `needle`, with the count of occurrences.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                let n = bytes.windows(needle.len()).filter(|w| *w == needle).count();
                if n > 0 {
                    found.push((p.display().to_string(), n));
                }
            }
        }
    }
    found
}

fn traces(dir: &Path, id: &str) -> Vec<(String, usize)> {
    let mut all = files_holding(dir, id.as_bytes());
    for i in 0..20i64 {
        all.extend(files_holding(dir, &(MAGIC + i).to_le_bytes()));
    }
    all
}

#[test]
fn a_forgotten_user_leaves_no_byte_in_the_store_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token");
    let config = dir.path().join("attune.toml");
    std::fs::write(&config, "[engine]\ncompact_after_forget_s = 1.0\n").expect("config");
    let args = [
        "--token-file",
        &token_file.display().to_string(),
        "--config",
        &config.display().to_string(),
    ]
    .map(|s| s.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let secret = format!("erase-me-{nanos:x}");

    // The user's events, a recommendation (an impression) and a lookup (an audit entry);
    // a first run ends with their session snapshot written.
    {
        let mut s = Server::start_on(&store, &args);
        let events: String = (0..20i64)
            .map(|i| {
                format!(
                    r#"{{"user":"{secret}","kind":"click","item":"i{}","ts":{}}}"#,
                    i % 7,
                    MAGIC + i
                ) + "\n"
            })
            .collect();
        let (st, v) = s.call("POST", "/v1/events", None, &events);
        assert_eq!(st, 200, "{v}");
        let rec = format!(r#"{{"user":"{secret}","k":5}}"#);
        assert_eq!(s.call("POST", "/v1/recommend", None, &rec).0, 200);
        let (st, v) = s.call(
            "GET",
            &format!("/v1/users/{secret}/explain?k=3"),
            Some(TOKEN),
            "",
        );
        assert_eq!(st, 200, "{v}");
        for u in 0..15 {
            let events: String = (0..6)
                .map(|i| {
                    format!(r#"{{"user":"other{u}","kind":"click","item":"i{i}","ts":1}}"#) + "\n"
                })
                .collect();
            assert_eq!(s.call("POST", "/v1/events", None, &events).0, 200);
        }
        s.stop_gracefully(Duration::from_secs(30));
    }
    assert!(
        !traces(&store, &secret).is_empty(),
        "the test looks for bytes that are there before the forget"
    );

    let mut s = Server::start_on(&store, &args);
    let (st, v) = s.call("DELETE", &format!("/v1/users/{secret}"), Some(TOKEN), "");
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["events"].as_u64(),
        Some(21),
        "20 clicks and 1 impression: {v}"
    );
    let forgot = Instant::now();
    loop {
        let (_, stats) = s.call("GET", "/v1/stats", None, "");
        if stats["compactions"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            forgot.elapsed() < Duration::from_secs(30),
            "no compaction: {stats}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "erasure: compacted {:.1} s after the forget (compact_after_forget_s = 1)",
        forgot.elapsed().as_secs_f64()
    );
    let left = traces(&store, &secret);
    assert!(
        left.is_empty(),
        "bytes of the forgotten user remain: {left:?}"
    );

    // Everyone else intact, served from the compacted store.
    for u in 0..15 {
        let (st, v) = s.call("GET", &format!("/v1/users/other{u}"), None, "");
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["interactions"], 6, "other{u}: {v}");
    }
    let (st, v) = s.call(
        "POST",
        "/v1/events",
        None,
        r#"{"user":"after","kind":"click","item":"i1","ts":1}"#,
    );
    assert_eq!(st, 200, "writes go on after the compaction: {v}");
    let (_, audit) = s.call("GET", "/v1/audit?limit=10", Some(TOKEN), "");
    assert!(!audit.to_string().contains(&secret), "{audit}");
    s.stop_gracefully(Duration::from_secs(30));
    let left = traces(&store, &secret);
    assert!(left.is_empty(), "after the stop: {left:?}");

    // The store opens again with everyone else's events.
    let s = Server::start_on(&store, &args);
    let (_, v) = s.call("GET", "/v1/users/other3", None, "");
    assert_eq!(v["interactions"], 6, "{v}");
    let (_, v) = s.call("GET", &format!("/v1/users/{secret}"), None, "");
    assert_eq!(v["interactions"].as_u64().unwrap_or(0), 0, "{v}");
}
