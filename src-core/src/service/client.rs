//! The blocking HTTP client of the programs that drive a service from outside: `attune
//! demo`'s simulated users, the guard's webhooks, and the end-to-end tests. A thin shape
//! over `reqwest`'s blocking client (keep-alive pooling, chunked bodies, timeouts are its
//! own), so that callers speak in paths and statuses; plain HTTP, no proxies, redirects
//! not followed.

use std::net::SocketAddr;
use std::time::Duration;

/// A response: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> std::io::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(std::io::Error::other)
    }
}

/// A client of the server at one address; its connections are kept alive between
/// requests.
#[derive(Debug)]
pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client of the server at `addr`; requests time out after `timeout`.
    pub fn new(addr: SocketAddr, timeout: Duration) -> std::io::Result<Client> {
        Client::build(addr, timeout, true)
    }

    /// A client that opens a new connection for every request.
    pub fn fresh(addr: SocketAddr, timeout: Duration) -> std::io::Result<Client> {
        Client::build(addr, timeout, false)
    }

    fn build(addr: SocketAddr, timeout: Duration, keep_alive: bool) -> std::io::Result<Client> {
        let mut b = reqwest::blocking::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .connect_timeout(timeout)
            .timeout(timeout);
        if !keep_alive {
            b = b.pool_max_idle_per_host(0);
        }
        Ok(Client {
            base: format!("http://{addr}"),
            http: b.build().map_err(std::io::Error::other)?,
        })
    }

    /// Sends one request with a JSON body (and a bearer token if given).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<Response> {
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(std::io::Error::other)?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_ascii_lowercase(), v)
            })
            .collect();
        let body = resp.bytes().map_err(std::io::Error::other)?.to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
