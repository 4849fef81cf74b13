//! The text source while serving: items posted while serving are embedded in the
//! background and become candidates within seconds; similar items and search by text;
//! a missing encoder leaves the service up without the text source, saying why.

use std::time::{Duration, Instant};

use attune_tests::encoder_dir;
use attune_tests::http::Server;

fn item(id: &str, title: &str, tag: &str) -> String {
    format!(r#"{{"kind":"item","item":"{id}","title":"{title}","tags":["{tag}"]}}"#)
}

/// Polls `GET /v1/info` until the text source has `items` vectors and nothing pending.
fn until_embedded(s: &Server, items: u64) -> Duration {
    let start = Instant::now();
    loop {
        let (_, info) = s.call("GET", "/v1/info", None, "");
        let t = &info["text"];
        if t["items"] == items && t["pending"] == 0 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not embedded in 60 s: {t}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn new_items_are_found_by_text_and_become_candidates() {
    let Some(enc) = encoder_dir() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("store");
    let enc_s = enc.display().to_string();
    let s = Server::start_on(&store, &["--encoder", &enc_s]);
    let token = s.token().expect("admin token").to_owned();
    let mut catalogue = Vec::new();
    for (i, (title, tag)) in [
        ("Brass Desk Lamp", "home"),
        ("Ceramic Table Lamp", "home"),
        ("Wooden Floor Lamp", "home"),
        ("Trail Running Shoes", "sport"),
        ("Waterproof Hiking Boots", "sport"),
        ("Road Cycling Helmet", "sport"),
        ("Dark Roast Coffee Beans", "food"),
        ("Green Tea Leaves", "food"),
    ]
    .iter()
    .enumerate()
    {
        catalogue.push(item(&format!("p{i}"), title, tag));
    }
    let (st, body) = s.call("POST", "/v1/items", Some(&token), &catalogue.join("\n"));
    assert_eq!(st, 200, "{body}");
    until_embedded(&s, 8);
    let (st, info) = s.call("GET", "/v1/info", None, "");
    assert_eq!(st, 200);
    assert_eq!(info["text"]["state"], "on", "{info}");
    assert!(info["text"]["encoder"]
        .as_str()
        .expect("encoder")
        .contains("384-d"));

    // Similar items: the other lamps first.
    let (st, sim) = s.call("GET", "/v1/items/p0/similar?k=2", None, "");
    assert_eq!(st, 200, "{sim}");
    let ids: Vec<&str> = sim["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["item"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|i| ["p1", "p2"].contains(i)), "{sim}");
    // Each match carries the item's title and tags, for the panel.
    assert!(
        !sim["items"][0]["title"].as_str().expect("title").is_empty(),
        "{sim}"
    );
    assert!(
        sim["items"][0]["tags"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{sim}"
    );
    // Search by free text.
    let (st, found) = s.call(
        "GET",
        "/v1/items/search?q=something%20to%20drink&k=2",
        None,
        "",
    );
    assert_eq!(st, 200, "{found}");
    let first = found["items"][0]["item"].as_str().expect("id");
    assert!(["p6", "p7"].contains(&first), "{found}");

    // A user who clicked two lamps; then a new lamp arrives while serving.
    let now = 1_700_000_000;
    for (n, p) in ["p0", "p1"].iter().enumerate() {
        let ev = format!(
            r#"{{"user":"u1","kind":"click","item":"{p}","ts":{}}}"#,
            now + n
        );
        assert_eq!(s.call("POST", "/v1/events", None, &ev).0, 200);
    }
    let posted = Instant::now();
    let (st, _) = s.call(
        "POST",
        "/v1/items",
        Some(&token),
        &item("fresh", "Glass Pendant Lamp", "home"),
    );
    assert_eq!(st, 200);
    let lag = until_embedded(&s, 9);
    eprintln!(
        "a posted item was embedded {:?} after its post",
        posted.elapsed().max(lag)
    );
    let (st, rec) = s.call("POST", "/v1/recommend", None, r#"{"user":"u1","k":5}"#);
    assert_eq!(st, 200, "{rec}");
    let items = rec["items"].as_array().expect("items");
    let fresh = items
        .iter()
        .find(|i| i["item"] == "fresh")
        .unwrap_or_else(|| panic!("the new lamp is not in the slate: {rec}"));
    assert!(
        fresh["breakdown"]["text"].as_f64().expect("text share") > 0.3,
        "{fresh}"
    );
    assert!(rec["weights"]["text"].as_f64().expect("text weight") > 0.0);
    // The lamp nobody clicked outranks the unrelated items.
    let pos = |id: &str| items.iter().position(|i| i["item"] == id);
    if let Some(coffee) = pos("p6") {
        assert!(pos("fresh") < Some(coffee), "{rec}");
    }

    // Bad requests.
    for (path, code) in [
        ("/v1/items/search", 400),
        ("/v1/items/search?q=lamp&k=0", 400),
        ("/v1/items/search?q=lamp&x=1", 400),
        ("/v1/items/nope/similar", 404),
        ("/v1/items/p0/similar?k=abc", 400),
    ] {
        let (st, body) = s.call("GET", path, None, "");
        assert_eq!(st, code, "{path}: {body}");
    }
}

#[test]
fn a_broken_encoder_leaves_the_service_up_without_text() {
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("store");
    let missing = dir.path().join("no-encoder-here");
    let missing_s = missing.display().to_string();
    let s = Server::start_on(&store, &["--encoder", &missing_s]);
    let (st, info) = s.call("GET", "/v1/info", None, "");
    assert_eq!(st, 200);
    assert_eq!(info["text"]["state"], "off", "{info}");
    let reason = info["text"]["reason"].as_str().expect("reason");
    assert!(reason.contains("no-encoder-here"), "{reason}");
    let (st, body) = s.call("GET", "/v1/items/search?q=lamp", None, "");
    assert_eq!(st, 503, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("text source is off"));
    // Serving goes on.
    let (st, _) = s.call("POST", "/v1/recommend", None, r#"{"user":"a","k":3}"#);
    assert_eq!(st, 200);
    let (st, _) = s.call(
        "POST",
        "/v1/events",
        None,
        r#"{"user":"a","kind":"click","item":"x","ts":1700000000}"#,
    );
    assert_eq!(st, 200);
}
