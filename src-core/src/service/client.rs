//! The blocking HTTP client of the programs that drive a service from outside: `attune
//! demo`'s simulated users and the guard's webhooks. A thin shape over `reqwest`'s
//! blocking client (keep-alive pooling, chunked bodies, timeouts are its own), so that
//! callers speak in paths and statuses; plain HTTP, no proxies.

use std::net::SocketAddr;
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
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Client {
            base: format!("http://{addr}"),
            http,
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
        let body = resp.bytes().map_err(std::io::Error::other)?.to_vec();
        Ok(Response { status, body })
    }
}
