//! End-to-end tests of the `attune` command line: import (every format, malformed input,
//! `--skip-invalid`, duplicates, latin-1), generate (determinism) and eval (JSON contract).

use attune::store::{Store, StoreConfig};
use attune_tests::{attune, ok_stdout, shared_data};
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write input");
    p.display().to_string()
}

fn events_in(store: &Path) -> u64 {
    Store::open(store, StoreConfig::default())
        .expect("store opens")
        .next_seq()
}

#[test]
fn malformed_line_names_file_and_line_and_commits_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let good = write(dir.path(), "good.tsv", "u1\ti1\t100\nu1\ti2\t101\n");
    let bad = write(
        dir.path(),
        "bad.tsv",
        "u1\ti1\t100\nu2\ti2\tnot-a-time\nu3\ti3\t5\n",
    );
    let s = store.to_str().expect("utf-8 path");
    let out = attune(&["import", "--store", s, "--format", "tsv", &good, &bad]);
    assert!(
        !out.status.success(),
        "a malformed file must fail the import"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.tsv:2:"),
        "error must name file and line: {err}"
    );
    assert!(
        err.contains("timestamp"),
        "error must say what is wrong: {err}"
    );
    assert_eq!(events_in(&store), 0, "nothing of any file is committed");

    let out = attune(&[
        "import",
        "--store",
        s,
        "--format",
        "tsv",
        "--skip-invalid",
        &bad,
    ]);
    let text = ok_stdout(&out);
    assert!(text.contains("skipped 1 invalid lines"), "{text}");
    assert!(text.contains("bad timestamp"), "{text}");
    assert_eq!(events_in(&store), 2);
}

#[test]
fn the_same_file_twice_is_imported_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let s = store.to_str().expect("utf-8 path");
    let f = write(
        dir.path(),
        "a.csv",
        "user,item,ts,rating\nu1,i1,100,4\nu2,i1,200,5\n",
    );
    ok_stdout(&attune(&["import", "--store", s, "--format", "csv", &f]));
    let copy = write(
        dir.path(),
        "copy.csv",
        "user,item,ts,rating\nu1,i1,100,4\nu2,i1,200,5\n",
    );
    let text = ok_stdout(&attune(&["import", "--store", s, "--format", "csv", &copy]));
    assert!(text.contains("already imported"), "{text}");
    assert_eq!(events_in(&store), 2);
}

#[test]
fn seq_and_jsonl_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let s = store.to_str().expect("utf-8 path");
    let seq = write(dir.path(), "s.txt", "1 10 11 12\n2 11 12\n");
    ok_stdout(&attune(&["import", "--store", s, "--format", "seq", &seq]));
    let jsonl = write(
        dir.path(),
        "e.jsonl",
        concat!(
            r#"{"kind":"item","item":"10","title":"Ten","tags":["t"]}"#,
            "\n",
            r#"{"user":"3","kind":"purchase","item":"10","ts":5,"price":2.5}"#,
            "\n",
        ),
    );
    ok_stdout(&attune(&[
        "import", "--store", s, "--format", "jsonl", &jsonl,
    ]));
    let st = Store::open(&store, StoreConfig::default()).expect("open");
    assert_eq!(st.next_seq(), 6);
    let id = st.item_id("10").expect("item 10");
    assert_eq!(st.item(id).expect("read").expect("catalogue").title, "Ten");
    drop(st);
    let out = attune(&["import", "--store", s, "--format", "seq", &seq]);
    let _held = Store::open(&store, StoreConfig::default()).expect("open");
    let out2 = attune(&["import", "--store", s, "--format", "seq", &seq]);
    assert!(
        String::from_utf8_lossy(&out2.stderr).contains("in use by another process"),
        "{out2:?}"
    );
    drop(out);
    drop(_held);

    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"user\":\"3\",\"kind\":\"click\",\"ts\":5}\n",
    );
    let out = attune(&["import", "--store", s, "--format", "jsonl", &bad]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.jsonl:1:") && err.contains("`item`"),
        "{err}"
    );
}

#[test]
fn unknown_format_and_empty_file_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = dir.path().join("store");
    let s = s.to_str().expect("utf-8 path");
    let f = write(dir.path(), "x.tsv", "");
    let out = attune(&["import", "--store", s, "--format", "parquet", &f]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format `parquet`"));
    let out = attune(&["import", "--store", s, "--format", "tsv", &f]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}

#[test]
fn movielens_1m_titles_are_latin1_decoded() {
    let (Some(movies), Some(ratings)) = (
        shared_data("ml-1m/movies.dat"),
        shared_data("ml-100k/u.data"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let s = store.to_str().expect("utf-8 path");
    let m = movies.to_str().expect("utf-8 path");
    let r = ratings.to_str().expect("utf-8 path");
    ok_stdout(&attune(&[
        "import",
        "--store",
        s,
        "--format",
        "movielens",
        m,
        r,
    ]));
    let st = Store::open(&store, StoreConfig::default()).expect("open");
    assert_eq!(st.next_seq(), 100_000);
    let id = st.item_id("73").expect("movie 73");
    let item = st.item(id).expect("read").expect("catalogue record");
    assert_eq!(item.title, "Misérables, Les (1995)");
    assert_eq!(item.tags, vec!["Drama", "Musical"]);
}

#[test]
fn generate_is_deterministic_and_eval_speaks_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let c = dir.path().join("c.jsonl");
    let gen = |out: &Path, seed: &str| {
        ok_stdout(&attune(&[
            "generate",
            "--out",
            out.to_str().expect("path"),
            "--users",
            "300",
            "--items",
            "120",
            "--seed",
            seed,
        ]))
    };
    gen(&a, "5");
    gen(&b, "5");
    gen(&c, "6");
    let read = |p: &Path| std::fs::read(p).expect("read");
    assert_eq!(read(&a), read(&b), "same seed, same data");
    assert_ne!(read(&a), read(&c), "another seed, other data");

    let out = attune(&[
        "eval",
        "--data",
        a.to_str().expect("path"),
        "--format",
        "jsonl",
        "--model",
        "pop",
        "--model",
        "markov",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&ok_stdout(&out)).expect("one JSON object");
    assert_eq!(v["k"], 10);
    assert!(v["users"].as_u64().expect("users") > 250);
    assert!(v["items"].as_u64().expect("items") > 50);
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    for r in results {
        for f in ["model", "hr", "ndcg", "mrr", "coverage", "seconds"] {
            assert!(r.get(f).is_some(), "result lacks {f}: {r}");
        }
    }
    // The synthetic data has sequential structure: transitions beat popularity.
    assert!(
        results[1]["ndcg"].as_f64() > results[0]["ndcg"].as_f64(),
        "{v}"
    );

    let out = attune(&[
        "eval",
        "--data",
        a.to_str().expect("path"),
        "--format",
        "jsonl",
        "--model",
        "nope",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model `nope`"));
}

#[test]
fn generate_into_a_store_then_eval_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let s = store.to_str().expect("utf-8 path");
    ok_stdout(&attune(&[
        "generate", "--store", s, "--users", "200", "--items", "100",
    ]));
    assert!(events_in(&store) > 1000);
    let text = ok_stdout(&attune(&["eval", "--store", s, "--model", "pop"]));
    assert!(text.contains("pop"), "{text}");
}

#[test]
fn cold_start_eval_speaks_the_same_json_and_refuses_bad_fractions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let s = store.to_str().expect("utf-8 path");
    ok_stdout(&attune(&[
        "generate", "--store", s, "--users", "300", "--items", "150",
    ]));
    let mut args = vec![
        "eval",
        "--store",
        s,
        "--cold-items",
        "0.3",
        "--seed",
        "4",
        "--model",
        "random",
        "--model",
        "tag-overlap",
        "--json",
    ];
    let encoder = attune_tests::encoder_dir();
    let enc = encoder
        .as_ref()
        .map(|d| d.to_str().expect("path").to_owned());
    if let Some(e) = &enc {
        args.extend(["--model", "text", "--encoder", e]);
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok_stdout(&attune(&args))).expect("one JSON object");
    assert_eq!(v["items"], 45, "{v}");
    assert_eq!(v["cold"]["cold_items"], 45);
    assert_eq!(v["cold"]["warm_items"], 105);
    let row = |m: &str| {
        v["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["model"] == m)
            .unwrap_or_else(|| panic!("no {m} row: {v}"))
            .clone()
    };
    assert!((row("random")["hr"].as_f64().expect("hr") - 10.0 / 45.0).abs() < 1e-9);
    // Users keep to a few categories, and the tags name them: better than chance.
    assert!(
        row("tag-overlap")["hr"].as_f64() > row("random")["hr"].as_f64(),
        "{v}"
    );
    if enc.is_some() {
        // Titles name the category too.
        assert!(
            row("text")["hr"].as_f64() > row("random")["hr"].as_f64(),
            "{v}"
        );
    }

    for bad in ["1.5", "0", "-0.2"] {
        let flag = format!("--cold-items={bad}");
        let out = attune(&["eval", "--store", s, &flag]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cold-items"), "{err}");
    }
    let out = attune(&[
        "eval",
        "--store",
        s,
        "--cold-items",
        "0.2",
        "--model",
        "text",
        "--encoder",
        "/nonexistent/enc",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/enc") && err.contains("fetch-encoder"),
        "{err}"
    );
}

#[test]
fn simulate_reports_the_references_and_each_strategys_share_of_the_oracle() {
    let v: serde_json::Value = serde_json::from_str(&ok_stdout(&attune(&[
        "simulate", "--steps", "400", "--users", "60", "--json",
    ])))
    .expect("json");
    let names: Vec<&str> = v["strategies"]
        .as_array()
        .expect("strategies")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["adaptive", "frozen", "oracle", "random"], "{v}");
    assert_eq!(v["change_step"], 200, "{v}");
    assert_eq!(v["recovery_window"], 50, "{v}");
    let oracle = &v["strategies"][2];
    assert_eq!(oracle["share_of_oracle_after"], 1.0, "{v}");
    for s in v["strategies"].as_array().expect("strategies") {
        let share = s["share_of_oracle_before"].as_f64().expect("a share");
        assert!((0.0..=1.0).contains(&share), "{s}");
        assert!(s["reward"].as_f64() <= oracle["reward"].as_f64(), "{s}");
    }
}
