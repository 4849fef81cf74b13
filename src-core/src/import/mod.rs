//! Importers: dataset files into events and catalogue records, checked line by line.
//!
//! A file is read whole, hashed (so the store can refuse a second import of the same
//! content), and parsed completely before anything is written: a malformed line stops the
//! import with `file:line: what is wrong` and nothing of that file is committed, unless
//! [`ImportOptions::skip_invalid`] asks to import the rest and count what was skipped.
//!
//! Formats (see the README for examples): `movielens` (ml-100k `u.data`/`u.item`, ml-1m
//! `ratings.dat`/`movies.dat`), `tsv`/`csv` (`user item timestamp [rating]`), `seq` (one
//! user per line, items in time order) and `jsonl` (see [`crate::wire`]).

mod delimited;
mod movielens;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::data::{Dataset, DatasetBuilder};
use crate::error::{Error, Result};
use crate::event::{Item, ItemId, RawEvent};
use crate::store::{ContentHash, ImportRecord, Store};
use crate::wire::{self, Record};

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// MovieLens ml-100k (`u.data`, `u.item`) and ml-1m (`ratings.dat`, `movies.dat`).
    Movielens,
    /// Tab-separated `user item timestamp [rating]`, header optional.
    Tsv,
    /// Comma-separated `user item timestamp [rating]`, header optional.
    Csv,
    /// One line per user: `user item item ...`, in time order; timestamps are positions.
    Seq,
    /// One JSON object per line (events and catalogue records).
    Jsonl,
}

impl Format {
    /// Every format name, for help and errors.
    pub const NAMES: &'static str = "movielens, tsv, csv, seq, jsonl";
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "movielens" => Format::Movielens,
            "tsv" => Format::Tsv,
            "csv" => Format::Csv,
            "seq" => Format::Seq,
            "jsonl" => Format::Jsonl,
            other => {
                return Err(Error::UnknownFormat(format!(
                    "unknown format `{other}`; expected one of {}",
                    Format::NAMES
                )))
            }
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Movielens => "movielens",
            Format::Tsv => "tsv",
            Format::Csv => "csv",
            Format::Seq => "seq",
            Format::Jsonl => "jsonl",
        })
    }
}

/// How to treat malformed lines.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Import the valid lines and count the others, instead of refusing the file.
    pub skip_invalid: bool,
    /// [`load_dataset`]: the catalogue records' items without interactions count too
    /// ([`DatasetBuilder::whole_catalogue`]).
    pub whole_catalogue: bool,
}

/// Lines left out of a file under `--skip-invalid`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkipReport {
    /// Number of lines skipped.
    pub lines: u64,
    /// Count per reason.
    pub reasons: BTreeMap<String, u64>,
    /// The first few skipped lines, as `file:line: message`.
    pub examples: Vec<String>,
}

/// How many skipped lines are quoted in a [`SkipReport`].
const SKIP_EXAMPLES: usize = 5;

/// A malformed line: a short reason (for counting) and the full message.
#[derive(Debug)]
pub(crate) struct LineError {
    reason: &'static str,
    message: String,
}

impl LineError {
    pub(crate) fn new(reason: &'static str, message: impl Into<String>) -> Self {
        LineError {
            reason,
            message: message.into(),
        }
    }
}

/// What one file held.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub events: Vec<RawEvent>,
    pub items: Vec<Item>,
    pub skipped: SkipReport,
}

/// A parsed file with its identity.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    /// The file name as given.
    pub file: String,
    pub hash: ContentHash,
    pub parsed: Parsed,
    /// Lines read (including skipped, excluding blank and header lines).
    pub lines: u64,
}

/// A line parser for one format.
pub(crate) trait LineParser {
    /// Parses one non-blank line (`line_no` from 1), adding to `out`.
    fn parse(&mut self, line_no: usize, line: &str, out: &mut Parsed) -> Result<(), LineError>;
    /// Whether the file's bytes are latin-1 rather than UTF-8.
    fn latin1(&self) -> bool {
        false
    }
}

struct JsonlParser;

impl LineParser for JsonlParser {
    fn parse(&mut self, _: usize, line: &str, out: &mut Parsed) -> Result<(), LineError> {
        match wire::parse_record(line) {
            Ok(Record::Event(e)) => out.events.push(e),
            Ok(Record::Item(i)) => out.items.push(i),
            Err(m) => {
                let reason = if m.starts_with("invalid JSON") {
                    "invalid JSON"
                } else {
                    "invalid record"
                };
                return Err(LineError::new(reason, m));
            }
        }
        Ok(())
    }
}

fn parser_for(format: Format, file: &str, first_line: &str) -> Result<Box<dyn LineParser>> {
    Ok(match format {
        Format::Movielens => movielens::detect(file, first_line)?,
        Format::Tsv => Box::new(delimited::Delimited::new(b'\t')),
        Format::Csv => Box::new(delimited::Delimited::new(b',')),
        Format::Seq => Box::new(delimited::SeqParser),
        Format::Jsonl => Box::new(JsonlParser),
    })
}

/// Reads and parses one file completely. Nothing is written anywhere.
///
/// `progress` is called with (bytes parsed, total bytes) every few thousand lines.
pub fn parse_file(
    path: &Path,
    format: Format,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ParsedFile> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let hash = ContentHash::of(&bytes);
    let total = bytes.len() as u64;
    let is_blank = |l: &[u8]| l.iter().all(u8::is_ascii_whitespace);
    let Some(first) = bytes.split(|&b| b == b'\n').find(|l| !is_blank(l)) else {
        return Err(Error::EmptyData(format!("{file}: the file is empty")));
    };
    let mut parser = parser_for(format, &file, &latin1(first))?;
    let is_latin1 = parser.latin1();
    let mut out = Parsed::default();
    let mut lines = 0u64;
    let mut offset = 0usize;
    for (idx, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = idx + 1;
        offset += raw.len() + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if is_blank(raw) {
            continue;
        }
        lines += 1;
        let line: Cow<'_, str> = if is_latin1 {
            Cow::Owned(latin1(raw))
        } else {
            match std::str::from_utf8(raw) {
                Ok(s) => Cow::Borrowed(s),
                Err(e) => {
                    let err = LineError::new("invalid UTF-8", format!("not valid UTF-8: {e}"));
                    skip_or_fail(&file, line_no, err, opts, &mut out.skipped)?;
                    continue;
                }
            }
        };
        if let Err(err) = parser.parse(line_no, &line, &mut out) {
            if err.reason == HEADER {
                lines -= 1;
                continue;
            }
            skip_or_fail(&file, line_no, err, opts, &mut out.skipped)?;
        }
        if line_no % 65_536 == 0 {
            progress(offset.min(bytes.len()) as u64, total);
        }
    }
    progress(total, total);
    if out.events.is_empty() && out.items.is_empty() {
        return Err(Error::EmptyData(format!(
            "{file}: no events or catalogue records found{}",
            if out.skipped.lines > 0 {
                format!(" ({} lines skipped as invalid)", out.skipped.lines)
            } else {
                String::new()
            }
        )));
    }
    Ok(ParsedFile {
        file,
        hash,
        parsed: out,
        lines,
    })
}

/// Decodes latin-1 (ISO 8859-1): every byte is the code point of the same value.
fn latin1(raw: &[u8]) -> String {
    raw.iter().map(|&b| b as char).collect()
}

/// The reason a parser gives for a header line it recognised and skipped.
pub(crate) const HEADER: &str = "header";

fn skip_or_fail(
    file: &str,
    line: usize,
    err: LineError,
    opts: &ImportOptions,
    skipped: &mut SkipReport,
) -> Result<()> {
    if !opts.skip_invalid {
        return Err(Error::Parse {
            file: file.to_owned(),
            line,
            message: err.message,
        });
    }
    skipped.lines += 1;
    *skipped.reasons.entry(err.reason.to_owned()).or_insert(0) += 1;
    if skipped.examples.len() < SKIP_EXAMPLES {
        skipped
            .examples
            .push(format!("{file}:{line}: {}", err.message));
    }
    Ok(())
}

/// The outcome of importing one file.
#[derive(Debug, Clone)]
pub enum FileOutcome {
    Imported {
        record: ImportRecord,
        lines: u64,
        skipped: SkipReport,
    },
    /// The same content was imported before; nothing was added.
    AlreadyImported { file: String, message: String },
}

/// Parses every file first (any error stops before anything is written), then imports
/// them into the store one atomic file at a time, catalogue files first.
pub fn import_files(
    store: &Store,
    paths: &[&Path],
    format: Format,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(ImportProgress),
) -> Result<Vec<FileOutcome>> {
    let mut parsed = Vec::with_capacity(paths.len());
    for path in paths {
        let file = path.display().to_string();
        let p = parse_file(path, format, opts, &mut |done, total| {
            progress(ImportProgress::Parsing {
                file: file.clone(),
                done,
                total,
            })
        })?;
        parsed.push(p);
    }
    // Catalogue-only files first, so titles are there when the events arrive.
    parsed.sort_by_key(|p| !p.parsed.events.is_empty());
    let mut outcomes = Vec::with_capacity(parsed.len());
    for p in parsed {
        let total = p.parsed.events.len() as u64;
        let file = p.file.clone();
        let result = store.import(
            &p.file,
            &p.hash,
            &p.parsed.events,
            &p.parsed.items,
            |done| {
                progress(ImportProgress::Writing {
                    file: file.clone(),
                    done,
                    total,
                })
            },
        );
        match result {
            Ok(record) => outcomes.push(FileOutcome::Imported {
                record,
                lines: p.lines,
                skipped: p.parsed.skipped,
            }),
            Err(e @ Error::AlreadyImported { .. }) => outcomes.push(FileOutcome::AlreadyImported {
                file: p.file,
                message: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(outcomes)
}

/// Progress of a long import.
#[derive(Debug, Clone)]
pub enum ImportProgress {
    /// Bytes of a file parsed.
    Parsing { file: String, done: u64, total: u64 },
    /// Events of a file written.
    Writing { file: String, done: u64, total: u64 },
}

/// Reads dataset files straight into a [`Dataset`] (no store), e.g. for `attune eval --data`.
pub fn load_dataset(paths: &[&Path], format: Format, opts: &ImportOptions) -> Result<Dataset> {
    let name = paths
        .iter()
        .map(|p| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect::<Vec<_>>()
        .join("+");
    let mut builder = DatasetBuilder::new(name).whole_catalogue(opts.whole_catalogue);
    for path in paths {
        let p = parse_file(path, format, opts, &mut |_, _| {})?;
        for item in p.parsed.items {
            builder.describe(item);
        }
        for ev in &p.parsed.events {
            if let Some(item) = ev.action.item() {
                builder.push(&ev.user, item, ev.ts, ev.action.kind(), ev.action.value());
            }
        }
    }
    let ds = builder.finish();
    if ds.users.is_empty() {
        return Err(Error::EmptyData("the files hold no interactions".into()));
    }
    Ok(ds)
}

/// Builds a [`Dataset`] from every interaction in a store's log.
pub fn dataset_from_store(store: &Store) -> Result<Dataset> {
    dataset_from_store_with(store, false)
}

/// [`dataset_from_store`], with every catalogue item counted when `whole_catalogue`
/// ([`DatasetBuilder::whole_catalogue`]).
pub fn dataset_from_store_with(store: &Store, whole_catalogue: bool) -> Result<Dataset> {
    let (users, items) = store.interners();
    let mut builder =
        DatasetBuilder::new(store.path().display().to_string()).whole_catalogue(whole_catalogue);
    for ev in store.all_events() {
        let (_, ev) = ev?;
        if let Some(&item) = ev.action.item() {
            let (Some(u), Some(i)) = (users.name(ev.user), items.name(item)) else {
                return Err(Error::Corrupt {
                    key: format!("event of user {}", ev.user),
                    reason: "id without a name".into(),
                });
            };
            builder.push(u, i, ev.ts, ev.action.kind(), ev.action.value());
        }
    }
    for id in 0..items.len() as ItemId {
        if let Some(item) = store.item(id)? {
            builder.describe(item);
        }
    }
    let ds = builder.finish();
    if ds.users.is_empty() {
        return Err(Error::EmptyData(format!(
            "store {} holds no interactions",
            store.path().display()
        )));
    }
    Ok(ds)
}
