//! Store benchmarks: durable appends with group commit (1 and 8 writers, several batch
//! sizes) and the import rate of the ml-1m subset.

use std::time::{Duration, Instant};

use attune::import::{self, Format, ImportOptions};
use attune::store::{Store, StoreConfig};
use attune_benches::{events, shared_data};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("store/append");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for writers in [1usize, 8] {
        for batch in [1usize, 100, 1000] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
            let payloads: Vec<_> = (0..writers)
                .map(|w| events(w as u64 * 1_000_000, batch, 1000, 3700))
                .collect();
            g.throughput(Throughput::Elements((writers * batch) as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("{writers}-writers"), format!("batch-{batch}")),
                &batch,
                |b, _| {
                    // One iteration = every writer appends one batch, concurrently.
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        std::thread::scope(|s| {
                            for p in &payloads {
                                let store = store.clone();
                                s.spawn(move || {
                                    for _ in 0..iters {
                                        store.append(p).expect("append");
                                    }
                                });
                            }
                        });
                        start.elapsed()
                    });
                },
            );
        }
    }
    g.finish();
}

fn import_ml1m(c: &mut Criterion) {
    let Some(path) = shared_data("ml-1m/ratings_users1-2999.dat") else {
        eprintln!("skipping import bench: ../shared/data/ml-1m is not present");
        return;
    };
    let lines = std::fs::read(&path)
        .expect("read")
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    let mut g = c.benchmark_group("import");
    g.sample_size(10).throughput(Throughput::Elements(lines));
    g.bench_function("ml-1m-subset", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let start = Instant::now();
                let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
                import::import_files(
                    &store,
                    &[path.as_path()],
                    Format::Movielens,
                    &ImportOptions::default(),
                    &mut |_| {},
                )
                .expect("import");
                store.close().expect("close");
                total += start.elapsed();
            }
            total
        });
    });
    g.finish();
}

criterion_group!(benches, append, import_ml1m);
criterion_main!(benches);
