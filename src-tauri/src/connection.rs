//! Where the panel is connected: the engine's address, how the panel got there (a local
//! demo, a local store, a remote `attune serve`), and the admin token for it. The
//! [`ConnectionInfo`] the web view sees is built from here and leaves the token out.

use std::net::{SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

use crate::error::PanelError;
use crate::token::AdminToken;

/// An engine's HTTP address: `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    /// Parses `http://host[:port][/]`. Only plain HTTP is spoken; an `https://` URL is
    /// refused with a message saying so.
    pub fn parse(url: &str) -> Result<Endpoint, PanelError> {
        let url = url.trim();
        let bad = |why: &str| PanelError::BadRequest(format!("URL {url:?}: {why}"));
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(bad(
                "https is not supported yet; connect over http:// (to a remote engine, e.g. through an SSH tunnel: ssh -L 8080:127.0.0.1:8080 HOST, then http://127.0.0.1:8080)",
            ));
        }
        if !lower.starts_with("http://") {
            return Err(bad("expected http://HOST:PORT"));
        }
        let rest = &url["http://".len()..];
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !(path.is_empty() || path == "/") {
            return Err(bad(
                "expected no path after HOST:PORT (the panel adds /v1/... itself)",
            ));
        }
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; use a token file",
            ));
        }
        if authority.is_empty()
            || !authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
        {
            return Err(bad("expected http://HOST:PORT"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected `:PORT` after the IPv6 address"))?,
                ),
            };
            (host, port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| bad("the port must be a number in 1..=65535"))?,
        };
        Ok(Endpoint {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The endpoint of a server this process bound.
    pub fn from_addr(addr: SocketAddr) -> Endpoint {
        Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    /// `host:port`, as the `Host` header and the URL write it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.authority())
    }

    /// The socket addresses the host resolves to (looked up on each call: a host name may
    /// move).
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }
}

/// How the panel reached its engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The panel runs `attune demo` in-process (synthetic store, simulated users).
    LocalDemo,
    /// A running `attune serve` elsewhere.
    Remote,
    /// The panel serves a store directory in-process, with no simulated traffic.
    Store,
}

/// The panel's connection, token included. Shared behind a lock by the commands and the
/// stream reader.
#[derive(Debug, Clone)]
pub struct Connection {
    pub endpoint: Endpoint,
    pub token: Option<AdminToken>,
    pub mode: Mode,
    /// The engine's label for people (`demo`, `staging`, `production`), when known.
    pub environment: Option<String>,
    /// Whether the engine serves an attention model checkpoint.
    pub model_found: bool,
    /// Sentences for people about this connection (e.g. why there is no model).
    pub notes: Vec<String>,
}

impl Connection {
    /// What the web view may know about the connection: everything but the token.
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            url: self.endpoint.url(),
            mode: self.mode,
            environment: self.environment.clone(),
            model_found: self.model_found,
            authenticated: self.token.is_some(),
            notes: self.notes.clone(),
        }
    }
}

/// The answer of `connection_info` and `connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// `http://host:port` of the engine.
    pub url: String,
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub environment: Option<String>,
    pub model_found: bool,
    /// Whether the panel holds an admin token for this engine (admin routes answer 401
    /// without one).
    pub authenticated: bool,
    /// Sentences for people about this connection.
    pub notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        let e = Endpoint::parse("http://127.0.0.1:8080/").expect("a plain URL");
        assert_eq!(e.url(), "http://127.0.0.1:8080");
        assert_eq!(
            Endpoint::parse(" HTTP://Engine.Example:9000")
                .expect("upper case scheme")
                .url(),
            "http://engine.example:9000"
        );
        assert_eq!(
            Endpoint::parse("http://localhost")
                .expect("default port")
                .url(),
            "http://localhost:80"
        );
        assert_eq!(
            Endpoint::parse("http://[::1]:8080").expect("IPv6").url(),
            "http://[::1]:8080"
        );
        assert_eq!(
            Endpoint::from_addr("[::1]:81".parse().expect("an address")).url(),
            "http://[::1]:81"
        );
    }

    #[test]
    fn refuses_what_it_cannot_speak() {
        let https = Endpoint::parse("https://engine:8443")
            .expect_err("no TLS")
            .to_string();
        assert!(https.contains("https is not supported yet"), "{https}");
        for bad in [
            "engine:8080",
            "http://",
            "http://engine:0",
            "http://engine:99999",
            "http://engine:8080/v1",
            "http://user:pw@engine:8080",
            "http://engine name:8080",
            "http://engine:80\r\nX: y",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn info_leaves_the_token_out() {
        let c = Connection {
            endpoint: Endpoint::parse("http://127.0.0.1:1").expect("a plain URL"),
            token: Some(AdminToken::new("the-admin-token-1234")),
            mode: Mode::LocalDemo,
            environment: Some("demo".into()),
            model_found: false,
            notes: vec![],
        };
        let json = serde_json::to_string(&c.info()).expect("plain data serialises");
        assert!(!json.contains("the-admin-token-1234"));
        assert!(json.contains(r#""mode":"local-demo""#), "{json}");
        assert!(json.contains(r#""authenticated":true"#), "{json}");
    }
}
