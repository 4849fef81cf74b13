//! The sentence encoder: a pre-trained BERT-family model (candle-transformers'
//! `BertModel`) and its tokenizer turn texts into unit vectors, the sentence-transformers
//! recipe: token embeddings of the last layer, averaged over the real tokens (the padding
//! masked out), then L2-normalised, so the dot product of two vectors is their cosine.
//!
//! A checkpoint is a directory with `config.json`, `tokenizer.json` and
//! `model.safetensors` (as `scripts/fetch-encoder.sh` places all-MiniLM-L6-v2 in
//! `models/minilm-l6/`). Its identity is the directory's name plus the sha256 of the
//! weights, so embeddings stored under one model are recognised as stale under another.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// Texts encoded in one forward pass unless the caller chunks otherwise.
pub const DEFAULT_BATCH: usize = 32;
/// Longest text, in tokens, the encoder reads (the rest is cut).
pub const MAX_TOKENS: usize = 128;

/// Where `scripts/fetch-encoder.sh` puts the default encoder, relative to the repository.
pub const DEFAULT_DIR: &str = "models/minilm-l6";

/// The default encoder's directory if it was fetched: [`DEFAULT_DIR`] under the working
/// directory or one of its parents, else beside the executable or one of its parents (a
/// build under `target/` finds the repository's).
pub fn find_default() -> Option<std::path::PathBuf> {
    let rel = std::path::Path::new(DEFAULT_DIR);
    if rel.join("model.safetensors").is_file() {
        return Some(rel.to_path_buf());
    }
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok();
    cwd.iter()
        .chain(exe.iter())
        .flat_map(|p| p.ancestors())
        .map(|a| a.join(rel))
        .find(|p| p.join("model.safetensors").is_file())
}

/// Which model produced a vector: stored beside embeddings to tell when they are stale.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncoderId {
    /// The checkpoint directory's name (e.g. `minilm-l6`).
    pub name: String,
    /// sha256 of `model.safetensors`, hex.
    pub sha256: String,
    /// Width of the vectors.
    pub dim: usize,
}

impl std::fmt::Display for EncoderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}-d, sha256 {})",
            self.name,
            self.dim,
            &self.sha256[..12.min(self.sha256.len())]
        )
    }
}

/// A loaded sentence encoder.
pub struct Encoder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    id: EncoderId,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("id", &self.id).finish()
    }
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads a file of the checkpoint, naming it when it is missing.
fn read(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(bad(
            &path,
            "missing: a text encoder directory holds config.json, tokenizer.json and \
             model.safetensors (scripts/fetch-encoder.sh places all-MiniLM-L6-v2 in \
             models/minilm-l6)",
        )),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// The tokenizer set to pad each batch to its longest text (the checkpoint's file pads
/// every text to 128 tokens, which made encoding ~10× slower) and to cut at
/// [`MAX_TOKENS`].
fn configure(mut tokenizer: Tokenizer, path: &Path) -> Result<Tokenizer> {
    let pad_id = tokenizer
        .get_padding()
        .map(|p| (p.pad_id, p.pad_token.clone()))
        .or_else(|| {
            tokenizer
                .token_to_id("[PAD]")
                .map(|id| (id, "[PAD]".into()))
        })
        .ok_or_else(|| bad(path, "the tokenizer has no [PAD] token"))?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        pad_id: pad_id.0,
        pad_token: pad_id.1,
        ..PaddingParams::default()
    }));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS,
            ..TruncationParams::default()
        }))
        .map_err(|e| bad(path, format!("truncation: {e}")))?;
    Ok(tokenizer)
}

impl Encoder {
    /// Loads the checkpoint in `dir` onto `device`. A missing, truncated or mismatched
    /// file is an [`Error::Checkpoint`] naming it.
    pub fn load(dir: &Path, device: &Device) -> Result<Encoder> {
        if !dir.is_dir() {
            return Err(bad(
                dir,
                "not a directory; fetch the default encoder with scripts/fetch-encoder.sh",
            ));
        }
        let (cpath, cbytes) = read(dir, "config.json")?;
        let config: Config = serde_json::from_slice(&cbytes)
            .map_err(|e| bad(&cpath, format!("not a BERT config: {e}")))?;
        let (tpath, tbytes) = read(dir, "tokenizer.json")?;
        let tokenizer = Tokenizer::from_bytes(&tbytes)
            .map_err(|e| bad(&tpath, format!("not a tokenizer file: {e}")))?;
        let tokenizer = configure(tokenizer, &tpath)?;
        let (wpath, wbytes) = read(dir, "model.safetensors")?;
        let sha256 = format!("{:x}", Sha256::digest(&wbytes));
        let tensors = candle_core::safetensors::load_buffer(&wbytes, device)
            .map_err(|e| bad(&wpath, format!("not a readable safetensors file: {e}")))?;
        drop(wbytes);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let model = BertModel::load(vb, &config).map_err(|e| {
            bad(
                &wpath,
                format!(
                    "does not match config.json (a BERT model of width {}, {} layers): {e}",
                    config.hidden_size, config.num_hidden_layers
                ),
            )
        })?;
        let name = dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
        let enc = Encoder {
            model,
            tokenizer,
            device: device.clone(),
            id: EncoderId {
                name,
                sha256,
                dim: config.hidden_size,
            },
        };
        // The vocabulary and the embedding table must agree, or the first text with a
        // high token id fails deep inside a forward pass.
        let vocab = enc.tokenizer.get_vocab_size(true);
        if vocab > config.vocab_size {
            return Err(bad(
                &tpath,
                format!(
                    "{vocab} tokens, but config.json's model has {} embeddings",
                    config.vocab_size
                ),
            ));
        }
        Ok(enc)
    }

    /// An encoder from parts (a tiny random model in tests).
    pub fn from_parts(
        model: BertModel,
        tokenizer: Tokenizer,
        device: Device,
        id: EncoderId,
    ) -> Result<Encoder> {
        let tokenizer = configure(tokenizer, Path::new("tokenizer"))?;
        Ok(Encoder {
            model,
            tokenizer,
            device,
            id,
        })
    }

    /// Which model this is.
    pub fn id(&self) -> &EncoderId {
        &self.id
    }

    /// Width of the vectors.
    pub fn dim(&self) -> usize {
        self.id.dim
    }

    /// The token ids of `text` (special tokens included, no padding).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::internal(format!("tokenizing: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Unit vectors of `texts`, `batch` texts per forward pass (each batch padded to its
    /// longest text).
    pub fn encode_batched(&self, texts: &[&str], batch: usize) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch.max(1)) {
            out.extend(self.encode(chunk)?);
        }
        Ok(out)
    }

    /// Unit vectors of `texts`, in one forward pass.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::internal(format!("tokenizing: {e}")))?;
        let n = encodings.len();
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, dim)
                                                                     // Masked mean over the real tokens, then unit length.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (n, dim)
        let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        let unit = mean.broadcast_div(&norm)?;
        Ok(unit.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
    }
}
