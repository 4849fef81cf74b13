//! The state shared by the engine's handle, its actors and its threads: the serving model
//! slot, the strategy in force with its learned weights, the catalogue's names and tags,
//! and `EngineCore` itself (what every batch reads is swapped atomically, never locked).

use super::*;

/// The attention model serving now, with its item mapping.
#[derive(Debug)]
pub(crate) struct ModelSlot {
    pub fast: FastModel,
    pub version: u64,
    /// Store item id → model item index (`u32::MAX`: unknown to the model).
    pub to_model: Vec<u32>,
    /// Model item index → store item id.
    pub from_model: Vec<ItemId>,
    pub has_task_heads: bool,
    /// The model on the engine's device, when requests are encoded in batches there
    /// rather than incrementally on the CPU.
    pub batched: Option<crate::model::SeqRec>,
    /// Seconds the graph index over the item table took to build, when there is one.
    pub index_build_s: Option<f64>,
    pub checkpoint: Checkpoint,
    /// The safetensors file holding these weights (fine-tuning starts from it).
    pub weights: PathBuf,
}

impl ModelSlot {
    pub fn to_model(&self, item: ItemId) -> Option<u32> {
        self.to_model
            .get(item as usize)
            .copied()
            .filter(|&i| i != u32::MAX)
    }
}

/// The strategy and weights every request reads.
#[derive(Debug, Clone)]
pub(crate) struct LiveStrategy {
    pub version: u64,
    pub strategy: Arc<Strategy>,
    pub weights: [f32; N_SOURCES],
    pub evidence: [f32; N_SOURCES],
    pub version_record: Arc<StrategyVersion>,
}

/// Names and tags of the catalogue, by store item id.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub(super) names: Vec<Arc<str>>,
    pub(super) tags: Vec<Arc<[String]>>,
}

impl Catalog {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn name(&self, item: ItemId) -> &str {
        self.names.get(item as usize).map_or("?", |n| n)
    }

    pub fn tags(&self, item: ItemId) -> &[String] {
        self.tags.get(item as usize).map_or(&[], |t| t)
    }

    /// This catalogue extended with the store's items it lacks.
    pub(super) fn extended(&self, store: &Store) -> Catalog {
        let n = store.n_items();
        let mut names = self.names.clone();
        let mut tags = self.tags.clone();
        for id in names.len()..n {
            let id = id as ItemId;
            names.push(Arc::from(store.item_name(id).unwrap_or_default()));
            let t: Vec<String> = store
                .item(id)
                .ok()
                .flatten()
                .map(|i| i.tags)
                .unwrap_or_default();
            tags.push(t.into());
        }
        Catalog { names, tags }
    }
}

/// State shared by the handle, the actors and the threads.
pub(crate) struct EngineCore {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub registry: Registry,
    pub(super) book: StrategyBook,
    // What every batch reads is swapped, not locked: a reader never waits, so a writer
    // preempted mid-swap (the learner runs at background priority) cannot stall the
    // compute threads, and the old value is freed by whoever drops it last, outside any
    // lock. Writers of `live` and `catalog` take `swap_writers` to read-modify-write.
    pub(super) live: ArcSwap<LiveStrategy>,
    pub(super) model: ArcSwapOption<ModelSlot>,
    pub(super) sources: ArcSwap<SourceSnapshot>,
    pub(super) catalog: ArcSwap<Catalog>,
    pub(super) swap_writers: Mutex<()>,
    pub(super) inference: RwLock<Option<Addr<InferenceActor>>>,
    pub(super) batcher: RwLock<Option<Batcher>>,
    pub(super) arbiters: Vec<ArbiterHandle>,
    /// Per arbiter, where compute threads hand a batch's answers for its sessions: one
    /// message (one wake-up of the arbiter) per batch, not one per request.
    pub(super) replies: Vec<inference::ReplySender>,
    pub(super) learner: crossbeam_channel::Sender<LearnerMsg>,
    pub(crate) log: crossbeam_channel::Sender<log::LogMsg>,
    pub(super) started: Instant,
    pub(super) start_ms: i64,
    pub(super) requests: AtomicU64,
    pub(super) model_versions: AtomicU64,
    pub(crate) config: EngineConfig,
    pub(super) closed: AtomicBool,
    pub(super) finetune: FineTuneConfig,
    /// Users being forgotten: their requests are refused meanwhile.
    pub(super) forgetting: Mutex<std::collections::HashSet<Arc<str>>>,
    /// When the store is due for a compaction (after a forget): the janitor runs it.
    pub(super) compact_due: Mutex<Option<Instant>>,
    /// The items' text vectors and the encoder behind them.
    pub(crate) text: Arc<text::TextSource>,
}

pub(super) fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|e| e.into_inner()).clone()
}

pub(super) fn write<T>(lock: &RwLock<T>, v: T) {
    *lock.write().unwrap_or_else(|e| e.into_inner()) = v;
}

impl EngineCore {
    pub fn live(&self) -> Arc<LiveStrategy> {
        self.live.load_full()
    }

    pub fn model(&self) -> Option<Arc<ModelSlot>> {
        self.model.load_full()
    }

    pub fn sources(&self) -> Arc<SourceSnapshot> {
        self.sources.load_full()
    }

    /// Publishes new sources and returns the old ones: the caller should keep them
    /// until the next publish, so that a compute thread still ranking with them is not the
    /// one left to free them (thousands of lists) on a request's time.
    pub fn set_sources(&self, s: SourceSnapshot) -> Arc<SourceSnapshot> {
        self.sources.swap(Arc::new(s))
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    pub(super) fn swap_writers(&self) -> std::sync::MutexGuard<'_, ()> {
        self.swap_writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The catalogue, extended from the store first if it lacks `item`.
    pub fn catalog_for(&self, item: Option<ItemId>) -> Arc<Catalog> {
        let c = self.catalog();
        match item {
            Some(i) if i as usize >= c.len() => {
                let _writer = self.swap_writers();
                let now = self.catalog();
                if i as usize >= now.len() {
                    let next = Arc::new(now.extended(&self.store));
                    self.catalog.store(Arc::clone(&next));
                    next
                } else {
                    now
                }
            }
            _ => c,
        }
    }

    pub fn batcher(&self) -> Option<Batcher> {
        read(&self.batcher)
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn next_request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{n}", self.start_ms)
    }

    pub fn request_seed(&self, user: &str, n: u64) -> u64 {
        // FNV-1a over the user, mixed with the engine seed and the user's request count.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.config.seed;
        for b in user.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    pub fn learn(&self, msg: LearnerMsg) {
        if self.learner.try_send(msg).is_err() {
            Metrics::add(&self.metrics.learner_dropped, 1);
        }
    }

    /// Sets the learned weights, unless the strategy changed meanwhile.
    pub fn publish_weights(
        &self,
        version: u64,
        weights: [f32; N_SOURCES],
        evidence: [f32; N_SOURCES],
    ) {
        let _writer = self.swap_writers();
        let now = self.live();
        if now.version == version {
            let mut next = (*now).clone();
            next.weights = weights;
            next.evidence = evidence;
            self.live.store(Arc::new(next));
        }
    }

    pub(super) fn set_live_version(&self, v: StrategyVersion) {
        let v = Arc::new(v);
        let _writer = self.swap_writers();
        self.live
            .store(Arc::new(learner::initial_live(Arc::clone(&v))));
        self.learn(LearnerMsg::Strategy(v));
    }

    /// Builds a serving slot for a checkpoint, interning its items into the store.
    pub(super) fn model_slot(&self, ck: Checkpoint, weights: PathBuf) -> Result<ModelSlot> {
        let missing: Vec<Item> = ck
            .items
            .iter()
            .filter(|name| self.store.item_id(name).is_none())
            .map(|name| Item {
                id: name.clone(),
                title: String::new(),
                tags: Vec::new(),
                attrs: Default::default(),
            })
            .collect();
        if !missing.is_empty() {
            self.store.put_items(&missing)?;
        }
        let mut from_model = Vec::with_capacity(ck.items.len());
        let mut to_model = vec![u32::MAX; self.store.n_items()];
        for (idx, name) in ck.items.iter().enumerate() {
            let id = self.store.item_id(name).ok_or_else(|| Error::Checkpoint {
                path: ck.dir.clone(),
                message: format!("item {name} could not be added to the store"),
            })?;
            from_model.push(id);
            to_model[id as usize] = idx as u32;
        }
        let mut fast = FastModel::from_model(&ck.model)?
            .with_gemm(false)
            .with_score_dtype(self.config.score_dtype);
        let batched = self.batched_model(&ck.config, &weights)?;
        // A large catalogue's candidates come from a graph index, built here: on the
        // thread loading the model, while requests go on with the model serving now.
        let mut index_build_s = None;
        if batched.is_none() && fast.n_items() >= self.config.ann_min_items {
            let started = std::time::Instant::now();
            let cfg = crate::model::fast::HnswConfig {
                m: self.config.ann_m,
                ..Default::default()
            };
            fast = fast.with_index(&cfg, self.config.ann_ef);
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                items = fast.n_items(),
                secs,
                mib = fast.index().map_or(0, |(g, _)| g.bytes()) >> 20,
                "candidate index built"
            );
            index_build_s = Some(secs);
        }
        let tasks = &ck.config.tasks;
        Ok(ModelSlot {
            fast,
            version: self.model_versions.fetch_add(1, Ordering::Relaxed) + 1,
            to_model,
            from_model,
            has_task_heads: tasks.like > 0.0 || tasks.purchase > 0.0,
            batched,
            index_build_s,
            checkpoint: ck,
            weights,
        })
    }

    /// The model on the configured device for the batched path, if that path is on.
    pub(super) fn batched_model(
        &self,
        cfg: &crate::model::Config,
        weights: &std::path::Path,
    ) -> Result<Option<crate::model::SeqRec>> {
        if self.config.incremental && self.config.device == "cpu" {
            return Ok(None);
        }
        let device = crate::model::device(&self.config.device)?;
        if device.is_cpu() && self.config.incremental {
            return Ok(None);
        }
        let mut varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let model = crate::model::SeqRec::load(vb, cfg)?;
        varmap.load(weights)?;
        Ok(Some(model))
    }

    pub(super) fn swap_in(&self, slot: ModelSlot) -> u64 {
        let v = slot.version;
        self.model.store(Some(Arc::new(slot)));
        Metrics::add(&self.metrics.model_swaps, 1);
        v
    }

    /// Fine-tunes a copy of `base`'s weights on `sequences`, checkpoints the result into
    /// the store's directory (`finetuned/`) and swaps it in; returns the new version. Each
    /// pass's wall time, failed or not, goes into `finetune_time`.
    pub fn fine_tune_and_swap(&self, base: &ModelSlot, sequences: &[Vec<u32>]) -> Result<u64> {
        let started = std::time::Instant::now();
        let result = self.fine_tune_and_swap_untimed(base, sequences);
        self.metrics
            .finetune_time
            .record_duration(started.elapsed());
        result
    }

    fn fine_tune_and_swap_untimed(&self, base: &ModelSlot, sequences: &[Vec<u32>]) -> Result<u64> {
        let ck = &base.checkpoint;
        let mut varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = crate::model::SeqRec::load(vb, &ck.config)?;
        varmap.load(&base.weights)?;
        let loss = fine_tune(&varmap, &model, sequences, &self.finetune)?;
        let dir = self.store.path().join("finetuned");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let version = self.model_versions.load(Ordering::Relaxed) + 1;
        let file = dir.join(format!("model-v{version}.safetensors"));
        let tmp = dir.join(format!(".model-v{version}.safetensors.tmp"));
        varmap.save(&tmp)?;
        std::fs::rename(&tmp, &file).map_err(|e| Error::io(&file, e))?;
        tracing::debug!(loss, file = %file.display(), "fine-tuning pass");
        let new_ck = Checkpoint {
            model,
            ..ck.clone()
        };
        let slot = self.model_slot(new_ck, file)?;
        let v = self.swap_in(slot);
        // Keep the two newest fine-tuned checkpoints.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut files: Vec<(u64, PathBuf)> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| {
                    let n = p.file_name()?.to_str()?;
                    let v = n.strip_prefix("model-v")?.strip_suffix(".safetensors")?;
                    Some((v.parse().ok()?, p))
                })
                .collect();
            files.sort();
            let keep = files.len().saturating_sub(2);
            for (_, p) in files.into_iter().take(keep) {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(v)
    }
}
