//! Who is calling: named bearer tokens, each an actor in the audit log, with a role.
//! `admin` tokens may change the engine; `read` tokens may watch everything an operator
//! watches (the audit log, explanations, the guard) but change nothing.
//!
//! The token file holds one bare token (the original format: actor `admin`, role admin)
//! or lines `NAME ROLE TOKEN`, `#` starting a comment. Without a file, one admin token is
//! generated into the store on first start and printed once.

use std::path::Path;

use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;
use rand::RngCore;
use serde::Serialize;

use super::ApiError;
use crate::error::{Error, Result};
use crate::store::{RecordSpace, Store};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// No token: the public routes only.
    None,
    /// Watch: also the read-only operator routes.
    Read,
    /// Change anything.
    Admin,
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Caller {
    /// The token's name (`None` without a token).
    pub actor: Option<String>,
    pub role: Role,
}

impl Caller {
    /// The actor's name for the audit log.
    pub fn name(&self) -> &str {
        self.actor.as_deref().unwrap_or("anonymous")
    }
}

/// One named token.
#[derive(Debug, Clone)]
struct Token {
    name: String,
    role: Role,
    secret: String,
}

/// The tokens a service accepts.
#[derive(Debug, Clone)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// Shortest accepted token.
const MIN_TOKEN_LEN: usize = 16;

fn check_secret(secret: &str, at: &str) -> Result<()> {
    if secret.len() < MIN_TOKEN_LEN || secret.chars().any(char::is_whitespace) {
        return Err(Error::config(
            "token-file",
            format!("{at}: a token must be at least {MIN_TOKEN_LEN} characters, without spaces"),
        ));
    }
    Ok(())
}

impl Tokens {
    /// Parses a token file's text (`name` for messages).
    pub fn parse(text: &str, name: &str) -> Result<Tokens> {
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        if let [(n, only)] = lines[..] {
            if !only.contains(char::is_whitespace) {
                check_secret(only, &format!("{name}:{n}"))?;
                return Ok(Tokens::admin(only.to_string()));
            }
        }
        let mut tokens = Vec::new();
        for (n, line) in lines {
            let at = format!("{name}:{n}");
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [who, role, secret] = parts[..] else {
                return Err(Error::config(
                    "token-file",
                    format!("{at}: expected `NAME ROLE TOKEN` (ROLE: admin or read), or a file of one bare token"),
                ));
            };
            let role = match role {
                "admin" => Role::Admin,
                "read" => Role::Read,
                other => {
                    return Err(Error::config(
                        "token-file",
                        format!("{at}: role `{other}` is neither `admin` nor `read`"),
                    ))
                }
            };
            check_secret(secret, &at)?;
            if tokens.iter().any(|t: &Token| t.name == who) {
                return Err(Error::config(
                    "token-file",
                    format!("{at}: the name `{who}` is used twice"),
                ));
            }
            if tokens.iter().any(|t: &Token| t.secret == secret) {
                return Err(Error::config(
                    "token-file",
                    format!("{at}: this token is given twice"),
                ));
            }
            tokens.push(Token {
                name: who.to_string(),
                role,
                secret: secret.to_string(),
            });
        }
        if tokens.is_empty() {
            return Err(Error::config(
                "token-file",
                format!("{name}: no token in the file"),
            ));
        }
        Ok(Tokens { tokens })
    }

    /// One admin token named `admin`.
    pub fn admin(secret: String) -> Tokens {
        Tokens {
            tokens: vec![Token {
                name: "admin".into(),
                role: Role::Admin,
                secret,
            }],
        }
    }

    /// The tokens of the file, or the store's generated admin token (created on first
    /// start, and then printed once unless `quiet`: a host that embeds the service and
    /// holds the token itself, like the desktop panel, prints nothing).
    pub fn load(file: Option<&Path>, store: &Store, quiet: bool) -> Result<Tokens> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            return Tokens::parse(&text, &path.display().to_string());
        }
        if let Some(b) = store.get_record(RecordSpace::Blob, b"admin_token")? {
            return String::from_utf8(b)
                .map(Tokens::admin)
                .map_err(|_| Error::config("admin token", "the stored token is not UTF-8"));
        }
        let mut bytes = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        store.put_record_durable(RecordSpace::Blob, b"admin_token", token.as_bytes())?;
        // Printed once, on the terminal that started the service; never logged.
        if !quiet {
            println!("admin token (shown once; stored in the store): {token}");
        }
        Ok(Tokens::admin(token))
    }

    /// The first admin token (the one `attune demo` prints).
    pub fn first_admin(&self) -> Option<&str> {
        self.tokens
            .iter()
            .find(|t| t.role == Role::Admin)
            .map(|t| t.secret.as_str())
    }

    /// Who sent `req`: no token is `Role::None`; a token that matches none is 401.
    pub fn caller(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return Ok(Caller {
                actor: None,
                role: Role::None,
            });
        };
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        // Every token is compared in constant time, and all of them always.
        let mut found = None;
        for t in &self.tokens {
            if same(given.as_bytes(), t.secret.as_bytes()) {
                found = Some(t);
            }
        }
        match found {
            Some(t) => Ok(Caller {
                actor: Some(t.name.clone()),
                role: t.role,
            }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown token",
            )),
        }
    }

    /// The caller, if they hold at least `role`: 401 without a token, 403 with a token
    /// of a lesser role.
    pub fn require(&self, req: &HttpRequest, role: Role) -> Result<Caller, ApiError> {
        let caller = self.caller(req)?;
        if caller.role >= role {
            return Ok(caller);
        }
        let wanted = match role {
            Role::Admin => "an admin token",
            _ => "a token",
        };
        if caller.role == Role::None {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("this route needs `Authorization: Bearer <token>` with {wanted}"),
            ))
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the token `{}` is read-only; this route needs {wanted}",
                    caller.name()
                ),
            ))
        }
    }
}

/// Constant-time equality of two byte strings (their lengths may leak).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_token_is_the_admin() {
        let t = Tokens::parse("  0123456789abcdef0123\n", "f").expect("parse");
        assert_eq!(t.first_admin(), Some("0123456789abcdef0123"));
    }

    #[test]
    fn named_tokens_and_their_errors() {
        let t = Tokens::parse(
            "# operators\nalice admin aaaaaaaaaaaaaaaaaaaa\nwatch read bbbbbbbbbbbbbbbbbbbb # the wall screen\n",
            "tokens",
        )
        .expect("parse");
        assert_eq!(t.tokens.len(), 2);
        assert_eq!(t.tokens[1].role, Role::Read);
        for (text, says) in [
            ("alice owner aaaaaaaaaaaaaaaaaaaa", "tokens:1: role `owner`"),
            ("alice admin short", "tokens:1: a token must be"),
            (
                "a admin aaaaaaaaaaaaaaaaaaaa\na read bbbbbbbbbbbbbbbbbbbb",
                "tokens:2: the name `a`",
            ),
            (
                "a admin aaaaaaaaaaaaaaaaaaaa\nb read aaaaaaaaaaaaaaaaaaaa",
                "tokens:2: this token",
            ),
            (
                "alice aaaaaaaaaaaaaaaaaaaa",
                "tokens:1: expected `NAME ROLE TOKEN`",
            ),
            ("# nothing\n", "no token"),
        ] {
            let e = Tokens::parse(text, "tokens").expect_err(text).to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
