//! Reference figures of the evaluation protocol on real data sets, so a change to the
//! harness or a baseline that moves the numbers is caught. The data files live outside
//! the repository (their licences forbid committing them); tests skip when absent.

use std::path::PathBuf;

use attune::data::{Dataset, DatasetBuilder};
use attune::eval::{evaluate, EvalReport, ModelResult, Split};
use attune::EventKind;
use attune_tests::shared_data;

/// Reads a delimited `user item [rating] timestamp_seconds` file into a data set.
fn load(path: &PathBuf, sep: &str, rated: bool) -> Dataset {
    let text = std::fs::read_to_string(path).expect("readable data file");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut b = DatasetBuilder::new(name);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(sep).collect();
        let (rating, ts) = if rated { (f[2], f[3]) } else { ("0", f[2]) };
        let ts: i64 = ts.trim().parse().expect("integer timestamp");
        let (kind, value) = if rated {
            (EventKind::Rating, rating.parse().expect("numeric rating"))
        } else {
            (EventKind::Click, 0.0)
        };
        b.push(f[0], f[1], ts * 1000, kind, value);
    }
    b.finish()
}

fn all_models() -> Vec<String> {
    attune::baselines::MODEL_NAMES
        .iter()
        .map(|&m| m.to_owned())
        .collect()
}

fn result<'a>(report: &'a EvalReport, model: &str) -> &'a ModelResult {
    report
        .results
        .iter()
        .find(|r| r.model == model)
        .expect("model was evaluated")
}

fn assert_near(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 0.002,
        "{what}: got {got:.4}, reference {want:.4}"
    );
}

#[test]
fn ml_100k_matches_reference_figures() {
    let Some(path) = shared_data("ml-100k/u.data") else {
        return;
    };
    let dataset = load(&path, "\t", true);
    let models = ["pop".to_owned(), "itemknn".to_owned(), "markov".to_owned()];
    let report = evaluate(&dataset, &models, 10, Split::Test).expect("evaluates");
    println!("{}", report.to_table());
    assert_eq!(report.users, 943);
    assert_eq!(report.items, 1682);

    let pop = result(&report, "pop");
    assert_near("pop HR@10", pop.hr, 0.0859);
    assert_near("pop NDCG@10", pop.ndcg, 0.0450);
    let knn = result(&report, "itemknn");
    assert_near("itemknn HR@10", knn.hr, 0.1092);
    assert_near("itemknn NDCG@10", knn.ndcg, 0.0563);
    // Not a reference figure: a floor under the tuned transitions model.
    assert!(result(&report, "markov").ndcg > 0.09);
}

/// Every baseline on every shared data set, with timings; run in release with
/// `cargo test --release -p attune-tests --test eval_reference -- --ignored --nocapture`.
#[test]
#[ignore = "minutes in debug builds; a measurement, not a check"]
fn all_baselines_on_all_data_sets() {
    let sets = [
        ("ml-100k/u.data", "\t", true),
        ("ml-1m/ratings_users1-2999.dat", "::", true),
        ("amazon-beauty/beauty_interactions.tsv", "\t", false),
    ];
    for (rel, sep, rated) in sets {
        let Some(path) = shared_data(rel) else {
            continue;
        };
        let dataset = load(&path, sep, rated);
        let report = evaluate(&dataset, &all_models(), 10, Split::Test).expect("evaluates");
        println!("{}", report.to_table());
        for r in &report.results {
            assert!(
                r.seconds < 60.0,
                "{} on {rel} took {:.1} s",
                r.model,
                r.seconds
            );
        }
    }
}
