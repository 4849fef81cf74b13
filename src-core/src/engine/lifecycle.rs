//! Opening and closing the engine: [`Engine::open`] opens the store, loads the model,
//! counts the log into the baseline sources and starts the actor system, the inference
//! compute threads, the learner, the janitor and the log writer; [`Engine::shutdown`]
//! persists every session and stops them in order, closing the store last.

use super::*;
use crate::os::BackgroundPriority;
use crate::supervise::{Restart, Supervised};

/// Handles of the threads the engine runs.
pub(super) struct Threads {
    pub(super) system: Option<System>,
    pub(super) system_thread: Option<Supervised>,
    pub(super) learner: Option<Supervised>,
    pub(super) janitor: Option<Janitor>,
    pub(super) log: Option<log::LogWriter>,
    pub(super) text: Option<Supervised>,
}

impl Engine {
    /// Opens the store, loads the model, counts the log into the baseline sources and
    /// starts the actors. Blocks until the engine serves.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        let store = Store::open(&config.store, config.store_config.clone())?;
        store.set_background_priority(indexer_priority(config.background_priority));
        let sup = store.supervisor().clone();
        let book = StrategyBook::open(store.clone(), &config.strategy)?;
        let current = book
            .current()?
            .ok_or_else(|| Error::config("strategy", "the store holds no current strategy"))?;
        let checkpoint = match &config.model {
            Some(dir) => Some(Checkpoint::load(dir, &Device::Cpu, DType::F32)?),
            None => None,
        };
        let (ltx, lrx) = crossbeam_channel::bounded(config.learner_queue);

        // The actix system and its arbiters, on their own threads.
        let (sys_tx, sys_rx) = std::sync::mpsc::channel();
        let arbiters_n = config.arbiters;
        let system_thread = sup.spawn(
            "attune-actix",
            BackgroundPriority::Normal,
            Restart::Never,
            move || {
                let sys = System::new();
                let arbiters: Vec<Arbiter> = (0..arbiters_n).map(|_| Arbiter::new()).collect();
                let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
                let _ = sys_tx.send((System::current(), handles));
                let ran = sys.run();
                for a in arbiters {
                    a.stop();
                    let _ = a.join();
                }
                ran.map_err(|e| Error::internal_from("the actix system stopped", e))
            },
        )?;
        let (system, arbiters) = sys_rx
            .recv()
            .map_err(|_| Error::internal("the actix system failed to start"))?;

        let replies: Vec<_> = arbiters.iter().map(inference::reply_box).collect();
        let log_writer = log::LogWriter::start(store.clone(), replies.clone())?;
        let live = learner::initial_live(Arc::new(current));
        let (text_source, text_thread) = text::TextSource::start(
            config.encoder.as_deref(),
            config.text_fields.clone(),
            &store,
            &sup,
            config.background_priority,
        )?;
        let shared = Arc::new(EngineCore {
            store: store.clone(),
            metrics: Arc::default(),
            registry: Registry::default(),
            book,
            live: ArcSwap::from_pointee(live),
            model: ArcSwapOption::empty(),
            sources: ArcSwap::default(),
            catalog: ArcSwap::default(),
            swap_writers: Mutex::new(()),
            inference: RwLock::new(None),
            batcher: RwLock::new(None),
            arbiters,
            replies,
            learner: ltx,
            log: log_writer.tx.clone(),
            started: Instant::now(),
            start_ms: crate::store::now_ms(),
            requests: AtomicU64::new(0),
            model_versions: AtomicU64::new(0),
            finetune: config.finetune.clone(),
            config: config.clone(),
            closed: AtomicBool::new(false),
            forgetting: Mutex::default(),
            compact_due: Mutex::default(),
            text: text_source,
        });
        if let Some(ck) = checkpoint {
            let weights = ck.dir.join(crate::model::checkpoint::WEIGHTS);
            let slot = shared.model_slot(ck, weights)?;
            shared.model.store(Some(Arc::new(slot)));
        }
        shared
            .catalog
            .store(Arc::new(Catalog::default().extended(&store)));
        // Sessions load their user's history on first use: let the per-user index catch
        // up with the log first, so those loads never scan the log's tail.
        store.sync_index();
        // Count the log into the sources.
        let counts = count_log(&store, config.pop_half_life)?;
        let mut counts = counts;
        counts.ensure_items(store.n_items());
        // Before serving starts nothing waits on other threads: the rows are built on all of them.
        let _ = shared.set_sources(counts.snapshot(None, true));

        // The inference actor lives on the system's own arbiter; compute threads beside.
        let (itx, irx) = std::sync::mpsc::channel();
        let sh = Arc::clone(&shared);
        let (capacity, threads) = (config.queue_capacity, config.compute_threads);
        system.arbiter().spawn(async move {
            let (batcher, addr) = inference::start(&sh, capacity, threads);
            let _ = itx.send((batcher, addr));
        });
        let (batcher, addr) = irx
            .recv()
            .map_err(|_| Error::internal("the inference actor failed to start"))?;
        write(&shared.batcher, Some(batcher));
        write(&shared.inference, Some(addr));

        let learner = {
            let mut learner = Some(Learner::new(
                Arc::clone(&shared),
                counts,
                config.finetune_every,
            ));
            sup.spawn(
                "attune-learner",
                config.background_priority,
                Restart::Never,
                move || {
                    if let Some(l) = learner.take() {
                        l.run(&lrx);
                    }
                    Ok(())
                },
            )?
        };
        let janitor = Janitor::start(Arc::clone(&shared))?;
        tracing::info!(store = %store.path().display(), model = ?config.model, "engine open");
        Ok(Engine {
            shared,
            threads: Arc::new(Mutex::new(Threads {
                system: Some(system),
                system_thread: Some(system_thread),
                learner: Some(learner),
                janitor: Some(janitor),
                log: Some(log_writer),
                text: text_thread,
            })),
        })
    }

    /// Stops accepting work, persists every session, lets the learner finish, stops the
    /// threads and closes the store (everything is flushed; the directory's lock is
    /// released when the last clone of the handle is dropped). Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let addrs: Vec<Addr<SessionActor>> = self
            .shared
            .registry
            .drain()
            .into_iter()
            .map(|e| e.addr)
            .collect();
        for a in addrs {
            let _ = a.send(session::Evict).await;
        }
        let shared = Arc::clone(&self.shared);
        let threads = Arc::clone(&self.threads);
        // Joining threads blocks; do it off the caller's executor.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(shutdown_threads(&shared, &threads));
        });
        rx.await
            .map_err(|_| Error::internal("the shutdown thread died"))?
    }
}

fn shutdown_threads(shared: &EngineCore, threads: &Mutex<Threads>) -> Result<()> {
    let mut t = threads.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(j) = t.janitor.take() {
        j.stop();
    }
    shared.text.stop();
    if let Some(h) = t.text.take() {
        h.join();
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    if shared.learner.send(LearnerMsg::Shutdown(tx)).is_ok() {
        let _ = rx.recv_timeout(Duration::from_secs(30));
    }
    if let Some(h) = t.learner.take() {
        h.join();
    }
    // Closing the queue (the last sender is the shared batcher) ends the compute threads
    // once their batch is done; the inference actor hands them over for joining.
    write(&shared.batcher, None);
    let compute = match read(&shared.inference) {
        Some(addr) => {
            futures_executor::block_on(addr.send(inference::TakeThreads)).unwrap_or_default()
        }
        None => Vec::new(),
    };
    for h in compute {
        h.join();
    }
    write(&shared.inference, None);
    if let Some(sys) = t.system.take() {
        sys.stop();
    }
    if let Some(h) = t.system_thread.take() {
        h.join();
    }
    // Every session has stopped: what they queued is written and acknowledged first.
    if let Some(w) = t.log.take() {
        w.stop();
    }
    shared.store.close()
}

/// Counts every interaction of the log, in log order, into fresh source counts.
pub(super) fn count_log(store: &Store, half_life: u64) -> Result<OnlineCounts> {
    let mut counts = OnlineCounts::with_half_life(half_life);
    let mut recent: HashMap<u32, Vec<ItemId>> = HashMap::new();
    for ev in store.all_events() {
        let (_, ev) = ev?;
        if !ev.action.kind().is_interaction() {
            continue;
        }
        let Some(&item) = ev.action.item() else {
            continue;
        };
        let prev = recent.entry(ev.user).or_default();
        counts.observe(item, prev);
        prev.push(item);
        if prev.len() > 2 * sources::CO_WINDOW {
            prev.drain(..sources::CO_WINDOW);
        }
    }
    Ok(counts)
}
