//! Flat `user item timestamp [rating]` files (TSV, CSV) and the one-line-per-user `seq`
//! format of the SASRec / S3-Rec data sets.

use super::{LineError, LineParser, Parsed, HEADER};
use crate::event::{Action, Event, Timestamp};
use crate::wire::{check_id, seconds_to_ms};

/// Timestamps at or above this are taken as milliseconds (as seconds they would lie past
/// the year 5000).
const MS_THRESHOLD: f64 = 1e11;

/// `user item timestamp [rating]` separated by `sep`; the first line may be a header.
pub(crate) struct Delimited {
    sep: u8,
    first: bool,
    fields: Vec<String>,
}

impl Delimited {
    pub(crate) fn new(sep: u8) -> Self {
        Delimited {
            sep,
            first: true,
            fields: Vec::with_capacity(4),
        }
    }
}

/// Splits a line on `sep`; with `,` double-quoted fields may hold commas and `""` quotes.
fn split_fields(line: &str, sep: u8, out: &mut Vec<String>) -> Result<(), LineError> {
    out.clear();
    if sep != b',' {
        out.extend(line.split(sep as char).map(|f| f.trim().to_owned()));
        return Ok(());
    }
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start && !quoted => quoted = true,
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            }
            ',' if !quoted => {
                out.push(field.trim().to_owned());
                field.clear();
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        if !c.is_whitespace() {
            at_start = false;
        }
    }
    if quoted {
        return Err(LineError::new(
            "unclosed quote",
            "a quoted field is not closed",
        ));
    }
    out.push(field.trim().to_owned());
    Ok(())
}

/// Parses a timestamp in Unix seconds (fractions allowed; ≥ 1e11 read as milliseconds).
pub(crate) fn parse_ts(field: &str) -> Result<Timestamp, LineError> {
    let v: f64 = field.parse().map_err(|_| {
        LineError::new(
            "bad timestamp",
            format!("timestamp {field:?} is not a number (Unix seconds)"),
        )
    })?;
    let secs = if v.abs() >= MS_THRESHOLD {
        v / 1000.0
    } else {
        v
    };
    seconds_to_ms(secs).map_err(|m| LineError::new("bad timestamp", m))
}

/// Checks an id field.
pub(crate) fn id(field: &str, what: &str) -> Result<String, LineError> {
    check_id(field).map_err(|m| LineError::new("bad id", format!("{what}: {m}")))?;
    Ok(field.to_owned())
}

/// Parses a rating value.
pub(crate) fn rating(field: &str) -> Result<f32, LineError> {
    match field.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(LineError::new(
            "bad rating",
            format!("rating {field:?} is not a finite number"),
        )),
    }
}

impl LineParser for Delimited {
    fn parse(&mut self, _: usize, line: &str, out: &mut Parsed) -> Result<(), LineError> {
        split_fields(line, self.sep, &mut self.fields)?;
        let first = std::mem::replace(&mut self.first, false);
        let f = &self.fields;
        if first && f.len() >= 3 && f[2].parse::<f64>().is_err() {
            return Err(LineError::new(HEADER, "header"));
        }
        if !(3..=4).contains(&f.len()) {
            return Err(LineError::new(
                "wrong field count",
                format!(
                    "expected 3 or 4 fields (user item timestamp [rating]) separated by {:?}, found {}",
                    self.sep as char,
                    f.len()
                ),
            ));
        }
        let user = id(&f[0], "user")?;
        let item = id(&f[1], "item")?;
        let ts = parse_ts(&f[2])?;
        let action = match f.get(3) {
            Some(r) if !r.is_empty() => Action::Rating {
                item,
                value: rating(r)?,
            },
            _ => Action::Click { item },
        };
        out.events.push(Event { user, ts, action });
        Ok(())
    }
}

/// `user item item ...` in time order; each event's timestamp is its position (1, 2, ...)
/// in seconds.
pub(crate) struct SeqParser;

impl LineParser for SeqParser {
    fn parse(&mut self, _: usize, line: &str, out: &mut Parsed) -> Result<(), LineError> {
        let mut fields = line.split_whitespace();
        let user = id(fields.next().unwrap_or_default(), "user")?;
        let start = out.events.len();
        for (pos, item) in fields.enumerate() {
            let item = match id(item, "item") {
                Ok(i) => i,
                Err(e) => {
                    out.events.truncate(start);
                    return Err(e);
                }
            };
            out.events.push(Event {
                user: user.clone(),
                ts: (pos as i64 + 1) * 1000,
                action: Action::Click { item },
            });
        }
        if out.events.len() == start {
            return Err(LineError::new(
                "no items",
                format!("user {user:?} has no items (expected `user item item ...`)"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(p: &mut dyn LineParser, lines: &[&str]) -> Result<Parsed, String> {
        let mut out = Parsed::default();
        for (i, l) in lines.iter().enumerate() {
            match p.parse(i + 1, l, &mut out) {
                Ok(()) => {}
                Err(e) if e.reason == HEADER => {}
                Err(e) => return Err(e.message),
            }
        }
        Ok(out)
    }

    #[test]
    fn tsv_with_and_without_header_and_rating() {
        let p = parse_all(
            &mut Delimited::new(b'\t'),
            &["user\titem\ttime", "1\t2\t100", "1\t3\t101.5\t4"],
        )
        .expect("parses");
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[0].ts, 100_000);
        assert_eq!(
            p.events[1].action,
            Action::Rating {
                item: "3".into(),
                value: 4.0
            }
        );
        assert_eq!(p.events[1].ts, 101_500);
    }

    #[test]
    fn csv_quotes_and_ms_timestamps() {
        let p =
            parse_all(&mut Delimited::new(b','), &[r#""a,b",x,1700000000000"#]).expect("parses");
        assert_eq!(p.events[0].user, "a,b");
        assert_eq!(p.events[0].ts, 1_700_000_000_000);
    }

    #[test]
    fn delimited_errors() {
        for (line, needle) in [
            ("1\t2", "found 2"),
            ("1\t2\t3\t4\t5", "found 5"),
            ("1\t2\tabc\t4", "timestamp"),
            ("1\t\t3", "item"),
            ("1\t2\t3\tgood", "rating"),
        ] {
            let mut d = Delimited::new(b'\t');
            d.first = false;
            let err = parse_all(&mut d, &[line]).expect_err(line);
            assert!(err.contains(needle), "{line}: {err}");
        }
    }

    #[test]
    fn seq_positions() {
        let p = parse_all(&mut SeqParser, &["u1 a b c", "u2 d"]).expect("parses");
        assert_eq!(p.events.len(), 4);
        assert_eq!(p.events[2].ts, 3000);
        assert!(parse_all(&mut SeqParser, &["u3"]).is_err());
    }
}
