//! The command line: with no arguments the panel runs a local demo engine; `--connect`
//! points it at a running `attune serve`; `--store` serves a store directory locally.

use std::path::PathBuf;

use clap::Parser;

use crate::connection::Endpoint;

/// Attune's control panel.
///
/// With no arguments, starts a local demo engine in-process (synthetic data in
/// $XDG_DATA_HOME/attune/demo-store, the shipped model from models/, simulated users) and
/// shows its console. The admin token stays in this process; the window never sees it.
#[derive(Debug, Clone, Parser)]
#[command(name = "attune-panel", version)]
pub struct Args {
    /// Control a running `attune serve` at this URL, e.g. http://127.0.0.1:8080 (http://
    /// only: https is not supported yet; use an SSH tunnel for a remote engine).
    #[arg(long, value_name = "URL", value_parser = parse_url, conflicts_with_all = ["store", "models"])]
    pub connect: Option<String>,

    /// The admin token file of the engine given with --connect: one bare token, or lines
    /// `NAME ROLE TOKEN` (the first admin line is used).
    #[arg(long, value_name = "FILE", requires = "connect")]
    pub token_file: Option<PathBuf>,

    /// Serve this store directory locally (127.0.0.1, a free port) with no simulated
    /// traffic, and control it.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Models directory (or one checkpoint) for the local engine [default: the first
    /// models/ holding a checkpoint beside the working directory or the executable].
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
}

fn parse_url(url: &str) -> Result<String, String> {
    Endpoint::parse(url)
        .map(|e| e.url())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("attune-panel").chain(args.iter().copied()))
    }

    #[test]
    fn accepts_the_three_modes() {
        let a = parse(&[]).expect("no arguments");
        assert!(a.connect.is_none() && a.store.is_none());
        let a =
            parse(&["--connect", "http://127.0.0.1:8080/", "--token-file", "t"]).expect("remote");
        assert_eq!(a.connect.as_deref(), Some("http://127.0.0.1:8080"));
        let a = parse(&["--store", "data/s", "--models", "models"]).expect("store");
        assert_eq!(a.store, Some(PathBuf::from("data/s")));
    }

    #[test]
    fn refuses_bad_combinations_clearly() {
        let e = parse(&["--connect", "https://engine:8443"]).expect_err("no TLS");
        assert!(e.to_string().contains("https is not supported yet"), "{e}");
        assert!(parse(&["--token-file", "t"]).is_err());
        assert!(parse(&["--connect", "http://a:1", "--store", "s"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["extra"]).is_err());
    }
}
