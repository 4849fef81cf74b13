//! A small blocking HTTP/1.1 client with keep-alive, for the programs that drive the
//! service from outside (`attune demo`'s simulated users, load generators, tests). It
//! speaks just what the service answers: `Content-Length` or chunked bodies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> std::io::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(std::io::Error::other)
    }
}

/// One keep-alive connection to a server (reconnected when the server closed it).
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// A client of the server at `addr`; requests time out after `timeout`.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Client {
        Client {
            addr,
            timeout,
            conn: None,
        }
    }

    fn connect(&mut self) -> std::io::Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            self.conn = Some(BufReader::new(s));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))
    }

    /// Sends one request. A connection the server closed while idle is reopened once,
    /// when nothing of the answer was read yet.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<Response> {
        let reused = self.conn.is_some();
        match self.try_request(method, path, token, body) {
            Err(e) if reused && e.kind() == std::io::ErrorKind::ConnectionAborted => {
                self.conn = None;
                self.try_request(method, path, token, body)
            }
            other => other,
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<Response> {
        let host = self.addr;
        let conn = self.connect()?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        let stale = |e: std::io::Error| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) {
                std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e)
            } else {
                e
            }
        };
        let result = (|| {
            conn.get_mut().write_all(&req).map_err(stale)?;
            let mut line = String::new();
            if conn.read_line(&mut line).map_err(stale)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the server closed the connection",
                ));
            }
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
            let (mut length, mut chunked, mut close) = (None, false, false);
            loop {
                line.clear();
                conn.read_line(&mut line)?;
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap_or((l, ""));
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
            let mut body = Vec::new();
            if chunked {
                loop {
                    line.clear();
                    conn.read_line(&mut line)?;
                    let n = usize::from_str_radix(line.trim(), 16)
                        .map_err(|_| std::io::Error::other("bad chunk size"))?;
                    let mut chunk = vec![0; n + 2];
                    conn.read_exact(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            } else if let Some(n) = length {
                body.resize(n, 0);
                conn.read_exact(&mut body)?;
            } else {
                conn.read_to_end(&mut body)?;
                close = true;
            }
            Ok((Response { status, body }, close))
        })();
        match result {
            Ok((r, close)) => {
                if close {
                    self.conn = None;
                }
                Ok(r)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}
