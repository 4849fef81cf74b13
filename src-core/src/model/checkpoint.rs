//! Model checkpoints on disk: a directory with `model.safetensors`, `config.json` and
//! `items.json` (the external item ids, in the model's item order), written atomically
//! (temporary files, then renames), plus the model card and the trainer's resume state.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use super::{Config, SeqRec};
use crate::error::{Error, Result};

/// Weights file name.
pub const WEIGHTS: &str = "model.safetensors";
/// Config file name.
pub const CONFIG: &str = "config.json";
/// Item vocabulary file name.
pub const ITEMS: &str = "items.json";

/// A loaded model with its vocabulary.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: Config,
    /// External item ids; model item `i` (token `i + 1`) is `items[i]`.
    pub items: Vec<String>,
    pub model: SeqRec,
}

fn ck_err(dir: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: dir.to_path_buf(),
        message: message.into(),
    }
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    let dst = dir.join(name);
    std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))
}

/// Saves weights, config and vocabulary into `dir` (created if needed).
pub fn save(dir: &Path, varmap: &VarMap, config: &Config, items: &[String]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(".{WEIGHTS}.tmp"));
    varmap.save(&tmp)?;
    let dst = dir.join(WEIGHTS);
    std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
    write_atomic(dir, CONFIG, &serde_json::to_vec_pretty(config)?)?;
    write_atomic(dir, ITEMS, &serde_json::to_vec(items)?)?;
    Ok(())
}

impl Checkpoint {
    /// Loads a checkpoint directory onto `device` with weights in `dtype`.
    pub fn load(dir: impl AsRef<Path>, device: &Device, dtype: DType) -> Result<Checkpoint> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(ck_err(dir, "no such checkpoint directory"));
        }
        let read = |name: &str| -> Result<Vec<u8>> {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| ck_err(dir, format!("{name}: {e}")))
        };
        let config: Config = serde_json::from_slice(&read(CONFIG)?)
            .map_err(|e| ck_err(dir, format!("{CONFIG}: {e}")))?;
        config
            .validate()
            .map_err(|e| ck_err(dir, format!("{CONFIG}: {e}")))?;
        let items: Vec<String> = serde_json::from_slice(&read(ITEMS)?)
            .map_err(|e| ck_err(dir, format!("{ITEMS}: {e}")))?;
        if items.len() != config.n_items {
            return Err(ck_err(
                dir,
                format!(
                    "{ITEMS} lists {} items but the config says {}",
                    items.len(),
                    config.n_items
                ),
            ));
        }
        let weights = dir.join(WEIGHTS);
        if !weights.is_file() {
            return Err(ck_err(dir, format!("{WEIGHTS} is missing")));
        }
        // SAFETY-free path: read the file into memory rather than mmap it.
        let tensors = candle_core::safetensors::load(&weights, device)
            .map_err(|e| ck_err(dir, format!("{WEIGHTS}: {e}")))?;
        let tensors = tensors
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_dtype(dtype)?)))
            .collect::<Result<std::collections::HashMap<_, _>>>()?;
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        let model = SeqRec::load(vb, &config)
            .map_err(|e| ck_err(dir, format!("{WEIGHTS} does not match {CONFIG}: {e}")))?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            items,
            model,
        })
    }

    /// Loads the checkpoint into trainable variables (for resuming or fine-tuning).
    pub fn load_trainable(dir: &Path, device: &Device) -> Result<(VarMap, Checkpoint)> {
        let ck = Checkpoint::load(dir, device, DType::F32)?;
        let mut varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = SeqRec::load(vb, &ck.config)?;
        varmap.load(dir.join(WEIGHTS))?;
        Ok((varmap, Checkpoint { model, ..ck }))
    }
}
