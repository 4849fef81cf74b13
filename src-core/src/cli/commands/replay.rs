//! The strategy comparisons: `attune replay` (logged sessions through fresh engines, with
//! its `--from`/`--to` times) and `attune simulate` (simulated users answering slates).

use std::time::Instant;

use anyhow::{bail, Context, Result};

use attune::import::Format;

use super::serving::{default_checkpoint, shipped_checkpoint};
use crate::cli::progress;
use crate::cli::{ReplayArgs, SimulateArgs};

pub fn simulate(a: SimulateArgs) -> Result<()> {
    // A serving workload (see `avoid_huge_pages`): 9.1-9.7 s instead of 10.3-11.2 s for
    // the default simulation, 147 MB peak RSS instead of 195 MB.
    attune::os::avoid_huge_pages();
    let mut strategies = Vec::new();
    for path in &a.strategies {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading strategy {}", path.display()))?;
        let mut s = attune::engine::strategy::Strategy::from_json(&text)
            .with_context(|| format!("strategy {}", path.display()))?;
        if s.name.is_empty() || s.name == "default" {
            s.name = path
                .file_stem()
                .map_or_else(|| "strategy".into(), |n| n.to_string_lossy().into_owned());
        }
        strategies.push(s);
    }
    let default_world = a.items == 500 && a.seed == 42;
    let model = if a.no_model {
        None
    } else if a.model.is_some() {
        a.model.clone()
    } else if default_world && a.purchase_world {
        shipped_checkpoint("synthetic-purchase")
    } else if default_world {
        default_checkpoint()
    } else {
        None
    };
    let cfg = attune::simulate::SimConfig {
        steps: a.steps,
        users: a.users,
        items: a.items,
        seed: a.seed,
        k: a.k,
        model: model.clone(),
        strategies,
        change_at: a.change_at,
        purchase_world: a.purchase_world,
        ..Default::default()
    };
    let n = if cfg.strategies.is_empty() {
        2
    } else {
        cfg.strategies.len()
    };
    let bar = progress::count((a.steps * n) as u64, "simulating");
    let started = Instant::now();
    let report = attune::simulate::simulate(&cfg, &mut |s, step| {
        bar.set_position((s * a.steps + step) as u64);
    })?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "{} steps per strategy, {} users, {} items, seed {}, model {}, tastes change at {:.0}% ({:.1} s)",
        a.steps,
        a.users,
        a.items,
        a.seed,
        model.map_or_else(|| "none".into(), |m| m.display().to_string()),
        a.change_at * 100.0,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<12} {:>10} {:>8} {:>9} {:>14} {:>14} {:>9} {:>9} {:>9}  weights at the end (seq like purchase itemknn markov pop text)",
        "strategy", "reward", "ctr", "purchases", "before change", "after change", "÷oracle<", "÷oracle>", "recovery"
    );
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0}%", v * 100.0));
    for s in &report.strategies {
        let w = s.weights_end;
        let reference = s.name == "oracle" || s.name == "random";
        println!(
            "{:<12} {:>10.0} {:>8.3} {:>9} {:>14.0} {:>14.0} {:>9} {:>9} {:>9}  {}",
            s.name,
            s.reward,
            s.ctr,
            s.purchases,
            s.reward_before_change,
            s.reward_after_change,
            pct(s.share_of_oracle_before),
            pct(s.share_of_oracle_after),
            s.recovery_steps
                .map_or("never".to_string(), |r| r.to_string()),
            if reference {
                "(reference, no engine)".to_string()
            } else {
                format!(
                    "{:.2} {:.2} {:.2} {:.2} {:.2} {:.2} {:.2}",
                    w.seq, w.like, w.purchase, w.itemknn, w.markov, w.pop, w.text
                )
            }
        );
    }
    println!(
        "recovery: steps after the change (step {}) until a strategy's reward over {} steps is back to 90% of its own rate before it",
        report.change_step, report.recovery_window
    );
    if a.purchase_world {
        for s in report
            .strategies
            .iter()
            .filter(|s| s.weights_over_time.len() > 1)
        {
            let path: Vec<String> = s
                .weights_over_time
                .iter()
                .map(|w| format!("{:.2}", w.weights.purchase))
                .collect();
            println!(
                "{}: purchase weight every {} steps: {}",
                s.name,
                s.weights_over_time[1].step,
                path.join(" ")
            );
        }
    }
    if let [first, second, ..] = report.strategies.as_slice() {
        if second.reward > 0.0 {
            println!(
                "{} earns {:+.1}% reward against {}",
                first.name,
                (first.reward / second.reward - 1.0) * 100.0,
                second.name
            );
        }
    }
    Ok(())
}

/// Parses `--from`/`--to`: Unix seconds, or `YYYY-MM-DD[THH:MM:SS]` in UTC; ms since the
/// epoch.
fn parse_time(flag: &str, s: &str) -> Result<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    let bad = || anyhow::anyhow!("--{flag} {s:?}: expected Unix seconds or YYYY-MM-DD[THH:MM:SS]");
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let t: Vec<i64> = time
        .trim_end_matches('Z')
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return Err(bad());
    };
    if !(1..=12).contains(m) || !(1..=31).contains(day) || *hh > 23 || *mm > 59 || *ss > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000)
}

pub fn replay(a: ReplayArgs) -> Result<()> {
    use attune::replay::{self, Log, ReplayConfig, Source};
    // Ctrl-C stops the replay after its current round; the report covers what ran.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        stop.store(true, std::sync::atomic::Ordering::SeqCst);
                        eprintln!("\nstopping after the current round (Ctrl-C again to abort)");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                    std::process::exit(130);
                });
            }
        });
    }
    let source = match &a.store {
        Some(dir) => {
            if !dir.is_dir() {
                bail!("--store {}: no such store directory", dir.display());
            }
            Source::Store(dir.clone())
        }
        None => {
            let Some(format) = &a.format else {
                bail!("--data needs --format ({})", Format::NAMES);
            };
            Source::Files(a.data.clone(), format.parse()?)
        }
    };
    let strategies = a
        .strategies
        .iter()
        .map(|p| replay::strategy_file(p))
        .collect::<attune::Result<Vec<_>>>()?;
    let from = a
        .from
        .as_deref()
        .map(|s| parse_time("from", s))
        .transpose()?;
    let to = a.to.as_deref().map(|s| parse_time("to", s)).transpose()?;
    let warm_until = a
        .warm_until
        .as_deref()
        .map(|s| parse_time("warm-until", s))
        .transpose()?;
    let cfg = ReplayConfig {
        strategies,
        model: a.model.clone(),
        score_dtype: a.score_dtype,
        from,
        to,
        warm_until,
        finetune_every: a.finetune_every,
        k: a.k,
        seed: a.seed,
        round: a.round,
        lookahead: a.lookahead,
        ..ReplayConfig::default()
    };
    let t = Instant::now();
    let log = Log::read(&source, from, to)?;
    let read_s = t.elapsed().as_secs_f64();
    let n = (log.events.len() * cfg.strategies.len().max(1)) as u64;
    let bar = progress::Steps::new(n, "replaying");
    let report = replay::replay(&log, &cfg, &stop, &|done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    if let Some(dir) = &a.report {
        replay::report::write(&report, dir)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} events replayed{} in {:.1} s ({:.0} events/s per strategy; reading took {:.1} s), k = {}",
            report.source,
            report.events,
            if report.partial { " (stopped early: partial)" } else { "" },
            report.seconds,
            report.strategies.iter().map(|s| report.events as f64 / s.seconds.max(1e-9)).fold(f64::INFINITY, f64::min),
            read_s,
            report.k
        );
        println!(
            "{:<20} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>10}",
            "strategy",
            "HR",
            "NDCG",
            "MRR",
            "coverage",
            "rankings",
            "reward",
            "p50 µs",
            "p99 µs",
            "served"
        );
        for s in &report.strategies {
            println!(
                "{:<20} {:>8.4} {:>8.4} {:>8.4} {:>8.3} {:>9} {:>9.0} {:>8.0} {:>8.0} {:>10}",
                s.name,
                s.hr,
                s.ndcg,
                s.mrr,
                s.coverage,
                s.rankings,
                s.reward,
                s.latency_p50_us,
                s.latency_p99_us,
                s.served_agreement.map_or("-".into(), |x| format!("{x:.3}"))
            );
        }
        for s in report.strategies.iter().filter(|s| s.finetune_passes > 0) {
            println!(
                "{}: {} fine-tuning passes, {:.1} s ({:.2} s each)",
                s.name,
                s.finetune_passes,
                s.finetune_seconds,
                s.finetune_seconds / s.finetune_passes as f64
            );
        }
        if let Some(dir) = &a.report {
            println!("report: {}", dir.join("index.html").display());
        }
    }
    Ok(())
}
