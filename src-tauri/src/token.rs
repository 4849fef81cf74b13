//! The admin token: read from a token file (or handed over by the local engine) and kept
//! on the Rust side. It never reaches the web view: [`AdminToken`] is not `Serialize`,
//! its `Debug` hides the value, and only the HTTP client reads it, to write the
//! `Authorization` header.

use std::path::Path;

use crate::error::PanelError;

/// A bearer token for the engine's admin routes.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token handed over in memory (the local engine's).
    pub fn new(token: impl Into<String>) -> AdminToken {
        AdminToken(token.into())
    }

    /// The value, for the `Authorization` header and nothing else.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<hidden>)")
    }
}

/// Reads the admin token from a token file in `attune serve --token-file` format.
pub fn read_token_file(path: &Path) -> Result<AdminToken, PanelError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PanelError::TokenFile(format!("{}: cannot read: {e}", path.display())))?;
    parse_token_file(&text, path)
}

/// Parses a token file as `attune serve` does: either one bare token (the only
/// non-comment line, one word), or lines `NAME ROLE TOKEN` (`ROLE` is `admin` or `read`),
/// of which the first `admin` line is taken; `#` starts a comment. `path` only names the
/// file in errors.
pub fn parse_token_file(text: &str, path: &Path) -> Result<AdminToken, PanelError> {
    let file = path.display();
    let lines: Vec<(usize, Vec<&str>)> = text
        .lines()
        .enumerate()
        .map(|(n, line)| {
            let content = line.split_once('#').map_or(line, |(before, _)| before);
            (n + 1, content.split_whitespace().collect::<Vec<&str>>())
        })
        .filter(|(_, fields)| !fields.is_empty())
        .collect();
    match lines.as_slice() {
        [] => {
            return Err(PanelError::TokenFile(format!(
                "{file}: no token in it; expected one bare token or lines `NAME ROLE TOKEN`"
            )))
        }
        [(_, only)] if only.len() == 1 => return Ok(AdminToken::new(only[0])),
        _ => {}
    }
    let mut admin = None;
    for (line_no, fields) in &lines {
        match fields.as_slice() {
            [_name, "admin", token] => {
                if admin.is_none() {
                    admin = Some(AdminToken::new(*token));
                }
            }
            [_name, "read", _token] => {}
            [_name, role, _token] => {
                return Err(PanelError::TokenFile(format!(
                    "{file}:{line_no}: role {role:?} is neither `admin` nor `read`"
                )))
            }
            _ => {
                return Err(PanelError::TokenFile(format!(
                    "{file}:{line_no}: expected `NAME ROLE TOKEN` (or one bare token as the whole file), found {} fields",
                    fields.len()
                )))
            }
        }
    }
    admin.ok_or_else(|| {
        PanelError::TokenFile(format!(
            "{file}: no admin line (`NAME admin TOKEN`); the panel needs an admin token"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<String, String> {
        parse_token_file(text, Path::new("tokens.txt"))
            .map(|t| t.secret().to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_bare_token_is_the_whole_file() {
        assert_eq!(
            parse("  0123456789abcdef0123\n"),
            Ok("0123456789abcdef0123".into())
        );
    }

    #[test]
    fn the_first_admin_line_is_taken() {
        let text = "# who may do what\nwatcher read rrrrrrrrrrrrrrrrrr\nalice admin aaaaaaaaaaaaaaaa # on call\nbob admin bbbbbbbbbbbbbbbb\n";
        assert_eq!(parse(text), Ok("aaaaaaaaaaaaaaaa".into()));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse("alice admin aaaa\nbob owner bbbb\n").expect_err("unknown role");
        assert!(e.starts_with("tokens.txt:2: role \"owner\""), "{e}");
        let e = parse("alice admin\nbob admin bbbb\n").expect_err("two fields");
        assert!(
            e.starts_with("tokens.txt:1: expected `NAME ROLE TOKEN`"),
            "{e}"
        );
        let e = parse("watcher read rrrr\n# nothing else\n").expect_err("no admin");
        assert!(e.starts_with("tokens.txt: no admin line"), "{e}");
        let e = parse("\n # only a comment\n").expect_err("empty");
        assert!(e.starts_with("tokens.txt: no token in it"), "{e}");
    }

    #[test]
    fn debug_hides_the_value() {
        let t = AdminToken::new("very-secret-token-value");
        assert!(!format!("{t:?}").contains("very-secret"));
    }
}
