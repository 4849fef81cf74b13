//! MovieLens files: ml-100k (`u.data`, `u.item`) and ml-1m (`ratings.dat`, `movies.dat`,
//! also a partial file such as `ratings_users1-2999.dat`). Each file is recognised by its
//! first line, not its name. Catalogue files are latin-1.

use super::delimited::{id, parse_ts, rating};
use super::{LineError, LineParser, Parsed};
use crate::error::{Error, Result};
use crate::event::{Action, Event, Item};

/// Genre columns of ml-100k's `u.item`, in `u.genre` order.
const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// Which MovieLens file a parser reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `user\titem\trating\ttimestamp`
    Data100k,
    /// `id|title|release|video release|url|19 genre flags`
    Item100k,
    /// `user::item::rating::timestamp`
    Ratings1m,
    /// `id::title::Genre|Genre`
    Movies1m,
}

pub(crate) struct MovieLens {
    kind: Kind,
}

/// Recognises the file from its first line.
pub(crate) fn detect(file: &str, first_line: &str) -> Result<Box<dyn LineParser>> {
    let kind = if first_line.contains("::") {
        match first_line.split("::").count() {
            4 => Kind::Ratings1m,
            3 => Kind::Movies1m,
            n => return Err(unknown(file, &format!("a `::` line with {n} fields"))),
        }
    } else if first_line.contains('|') {
        match first_line.split('|').count() {
            24 => Kind::Item100k,
            n => return Err(unknown(file, &format!("a `|` line with {n} fields"))),
        }
    } else if first_line.split('\t').count() == 4 {
        Kind::Data100k
    } else {
        return Err(unknown(
            file,
            "neither `::`, `|` nor 4 tab-separated fields",
        ));
    };
    Ok(Box::new(MovieLens { kind }))
}

fn unknown(file: &str, what: &str) -> Error {
    Error::UnknownFormat(format!(
        "{file}: not a MovieLens ratings or movies file (its first line has {what}); \
         expected ml-100k u.data / u.item or ml-1m ratings.dat / movies.dat \
         (users.dat and u.user are not imported)"
    ))
}

fn fields<'a>(line: &'a str, sep: &str, n: usize, what: &str) -> Result<Vec<&'a str>, LineError> {
    let f: Vec<&str> = line.split(sep).collect();
    if f.len() != n {
        return Err(LineError::new(
            "wrong field count",
            format!(
                "expected {n} {sep:?}-separated fields ({what}), found {}",
                f.len()
            ),
        ));
    }
    Ok(f)
}

impl LineParser for MovieLens {
    fn parse(&mut self, _: usize, line: &str, out: &mut Parsed) -> Result<(), LineError> {
        match self.kind {
            Kind::Data100k | Kind::Ratings1m => {
                let f = if self.kind == Kind::Data100k {
                    fields(line, "\t", 4, "user item rating timestamp")?
                } else {
                    fields(line, "::", 4, "user::item::rating::timestamp")?
                };
                let item = id(f[1].trim(), "item")?;
                out.events.push(Event {
                    user: id(f[0].trim(), "user")?,
                    ts: parse_ts(f[3].trim())?,
                    action: Action::Rating {
                        item,
                        value: rating(f[2].trim())?,
                    },
                });
            }
            Kind::Item100k => {
                let f = fields(line, "|", 24, "id|title|release|video|url|19 genre flags")?;
                let mut tags = Vec::new();
                for (flag, genre) in f[5..].iter().zip(ML100K_GENRES) {
                    match *flag {
                        "1" => tags.push(genre.to_owned()),
                        "0" => {}
                        other => {
                            return Err(LineError::new(
                                "bad genre flag",
                                format!("genre flag for {genre} is {other:?}, expected 0 or 1"),
                            ))
                        }
                    }
                }
                let mut item = Item {
                    id: id(f[0].trim(), "item")?,
                    title: f[1].to_owned(),
                    tags,
                    ..Default::default()
                };
                for (key, v) in [("release_date", f[2]), ("imdb_url", f[4])] {
                    if !v.is_empty() {
                        item.attrs.insert(key.to_owned(), v.to_owned());
                    }
                }
                out.items.push(item);
            }
            Kind::Movies1m => {
                let f = fields(line, "::", 3, "id::title::genres")?;
                out.items.push(Item {
                    id: id(f[0].trim(), "item")?,
                    title: f[1].to_owned(),
                    tags: f[2]
                        .split('|')
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    ..Default::default()
                });
            }
        }
        Ok(())
    }

    fn latin1(&self) -> bool {
        matches!(self.kind, Kind::Item100k | Kind::Movies1m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(first: &str, lines: &[&str]) -> Result<Parsed, String> {
        let mut p = detect("f", first).map_err(|e| e.to_string())?;
        let mut out = Parsed::default();
        for (i, l) in lines.iter().enumerate() {
            p.parse(i + 1, l, &mut out).map_err(|e| e.message)?;
        }
        Ok(out)
    }

    #[test]
    fn recognises_each_file() {
        let r = parse("1::2::5::978300760", &["1::2::5::978300760"]).expect("ratings");
        assert_eq!(r.events[0].ts, 978_300_760_000);
        let m = parse(
            "1::Toy Story (1995)::Animation|Comedy",
            &["1::Toy Story (1995)::Animation|Comedy"],
        )
        .expect("movies");
        assert_eq!(m.items[0].tags, vec!["Animation", "Comedy"]);
        let d = parse("196\t242\t3\t881250949", &["196\t242\t3\t881250949"]).expect("u.data");
        assert_eq!(
            d.events[0].action,
            Action::Rating {
                item: "242".into(),
                value: 3.0
            }
        );
        let item = "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0";
        let i = parse(item, &[item]).expect("u.item");
        assert_eq!(i.items[0].tags, vec!["Animation", "Children's", "Comedy"]);
        assert!(detect("f", "1::F::25::10::48067").is_err());
        assert!(detect("f", "hello world").is_err());
    }

    #[test]
    fn malformed_lines() {
        let err = parse("1::2::5::9", &["1::2::5"]).expect_err("short");
        assert!(err.contains("found 3"), "{err}");
        let err = parse("1::2::5::9", &["1::2::x::9"]).expect_err("bad rating");
        assert!(err.contains("rating"), "{err}");
    }
}
