//! The configuration file of `attune serve --config FILE` (TOML): everything the flags
//! set, plus the engine's knobs (`[engine]`, the fields of [`EngineConfig`] but the store
//! and the model, which are set at the top level). Flags given on the command line win
//! over the file; the file wins over the defaults. `examples/attune.toml` is a commented
//! example (a test parses it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::EngineConfig;
use crate::error::{Error, Result};

/// What a configuration file holds. Relative paths are relative to the file's directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    /// Store directory.
    pub store: Option<PathBuf>,
    /// A checkpoint directory, or a directory of them.
    pub models: Option<PathBuf>,
    /// Address to listen on.
    pub bind: Option<SocketAddr>,
    /// File holding the admin token.
    pub token_file: Option<PathBuf>,
    /// Largest request body, in bytes.
    pub body_limit: Option<usize>,
    /// HTTP worker threads.
    pub workers: Option<usize>,
    /// Interval of the live stream's figures, in milliseconds.
    pub stream_every_ms: Option<u64>,
    /// A label for people shown in the console's header (`production`, `staging`).
    pub environment: Option<String>,
    /// The engine's knobs.
    #[serde(default)]
    engine: Option<toml::Table>,
}

impl ServeFile {
    /// Reads and checks a configuration file; errors name the file and the line.
    pub fn load(path: &Path) -> Result<ServeFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut file = Self::parse(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut file.store, &mut file.models, &mut file.token_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(file)
    }

    /// Parses the text of a configuration file named `name` (for messages).
    pub fn parse(text: &str, name: &str) -> Result<ServeFile> {
        let at = |span: Option<std::ops::Range<usize>>| {
            span.map_or(0, |s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            })
        };
        let file: ServeFile = toml::from_str(text).map_err(|e| Error::Parse {
            file: name.to_string(),
            line: at(e.span()),
            message: e.message().to_string(),
        })?;
        if let Some(engine) = &file.engine {
            for key in ["store", "model"] {
                if engine.contains_key(key) {
                    return Err(Error::config(
                        format!("{name}: [engine] {key}"),
                        format!("set `{key}` at the top level of the file (the `--store`/`--models` flags)"),
                    ));
                }
            }
        }
        // Check the engine section now, so a typo fails at load time with its line.
        file.engine_config(PathBuf::new(), None, text, name)?;
        if file.workers == Some(0) || file.body_limit == Some(0) || file.stream_every_ms == Some(0)
        {
            return Err(Error::config(
                name,
                "workers, body_limit and stream_every_ms must be positive",
            ));
        }
        Ok(file)
    }

    fn engine_config(
        &self,
        store: PathBuf,
        model: Option<PathBuf>,
        text: &str,
        name: &str,
    ) -> Result<EngineConfig> {
        let mut cfg: EngineConfig = match &self.engine {
            Some(t) => t.clone().try_into().map_err(|e: toml::de::Error| {
                // The section's own errors carry no position: name the section's line.
                let line = text
                    .lines()
                    .position(|l| l.trim_start().starts_with("[engine"))
                    .map_or(0, |i| i + 1);
                Error::Parse {
                    file: name.to_string(),
                    line,
                    message: format!("[engine]: {}", e.message()),
                }
            })?,
            None => EngineConfig::default(),
        };
        cfg.store = store;
        cfg.model = model;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The engine configuration for `store` and `model`.
    pub fn engine(&self, store: PathBuf, model: Option<PathBuf>) -> Result<EngineConfig> {
        self.engine_config(store, model, "", "config")
    }

    /// The live stream's interval, if set.
    pub fn stream_every(&self) -> Option<Duration> {
        self.stream_every_ms.map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_example_parses_and_means_what_it_says() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/attune.toml");
        let f = ServeFile::load(&path).expect("the example parses");
        assert_eq!(f.bind, Some(SocketAddr::from(([127, 0, 0, 1], 8080))));
        assert!(f
            .store
            .as_deref()
            .is_some_and(|p| p.ends_with("data/store")));
        let e = f.engine(PathBuf::from("s"), None).expect("engine section");
        assert_eq!(e.queue_capacity, 4096);
        assert_eq!(e.strategy.batching.max_batch, 16);
        assert_eq!(e.store_config.cache_capacity, 256 << 20);
        assert_eq!(e.score_dtype, crate::model::fast::ScoreDtype::F32);
    }

    #[test]
    fn mistakes_name_the_file_and_the_line() {
        let e = ServeFile::parse("bind = \"127.0.0.1:1\"\nbnid = 3\n", "a.toml")
            .expect_err("unknown key");
        assert!(e.to_string().starts_with("a.toml:2:"), "{e}");
        let e = ServeFile::parse("workers = \"two\"\n", "a.toml").expect_err("type");
        assert!(e.to_string().starts_with("a.toml:1:"), "{e}");
        let e = ServeFile::parse("[engine]\nqueue_capacty = 5\n", "a.toml").expect_err("typo");
        assert!(e.to_string().contains("queue_capacty"), "{e}");
        let e = ServeFile::parse("[engine]\nqueue_capacity = 0\n", "a.toml").expect_err("range");
        assert!(e.to_string().contains("queue_capacity"), "{e}");
        let e = ServeFile::parse("[engine]\nstore = \"x\"\n", "a.toml").expect_err("store");
        assert!(e.to_string().contains("top level"), "{e}");
        let f = ServeFile::parse("[engine]\nscore_dtype = \"int8\"\n", "a.toml").expect("int8");
        let e = f.engine(PathBuf::from("s"), None).expect("engine");
        assert_eq!(e.score_dtype, crate::model::fast::ScoreDtype::Int8);
        let e = ServeFile::parse("[engine]\nscore_dtype = \"f8\"\n", "a.toml").expect_err("dtype");
        assert!(e.to_string().contains("f8"), "{e}");
        assert!(ServeFile::parse("", "empty.toml").is_ok());
    }
}
