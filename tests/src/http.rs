//! `attune serve` as a real process on a free loopback port, and a small HTTP/1.1 client
//! over std TCP: one-shot requests, keep-alive connections and raw bytes (for fuzzing).
//! Shared by the service tests (`service.rs`, `service_faults.rs`, `service_sigkill.rs`, `service_soak.rs`), so
//! that each drives the binary exactly as a user would.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::attune_bin;

/// How long a client waits on a read or a write before giving up.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of the server's stderr kept for [`Server::log_tail`].
const LOG_LINES: usize = 400;

/// A running `attune serve`; killed (SIGKILL) when dropped. Its stderr (the log) is kept
/// rather than shown, and printed if the test panics.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    token: Option<String>,
    store: PathBuf,
    log: Arc<Mutex<VecDeque<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Serves a fresh store in a temporary directory, with the shipped models.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_on(&dir.path().join("store"), &[]);
        s._dir = Some(dir);
        s
    }

    /// Serves `store` (created if missing) with the shipped models and `extra` arguments
    /// (`--body-limit N`, ...); returns once the server listens.
    pub fn start_on(store: &Path, extra: &[&str]) -> Server {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let (store_s, models_s) = (store.display().to_string(), models.display().to_string());
        let mut args = vec![
            "--bind",
            "127.0.0.1:0",
            "--store",
            &store_s,
            "--models",
            &models_s,
        ];
        args.extend_from_slice(extra);
        Server::launch(&args, store)
    }

    /// Runs `attune serve ARGS` (all the arguments are the caller's: give `--bind
    /// 127.0.0.1:0`); `store` is what [`Server::store`] reports. Returns once it listens.
    pub fn launch(args: &[&str], store: &Path) -> Server {
        let mut child = Command::new(attune_bin())
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn attune serve");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let (mut addr, mut token) = (None, None);
        while addr.is_none() {
            let Some(line) = lines.next() else {
                let status = child.wait();
                std::thread::sleep(Duration::from_millis(200)); // the log's last lines
                panic!(
                    "attune serve exited before listening ({status:?}):\n{}",
                    tail(&log)
                );
            };
            let line = line.expect("a line of stdout");
            if let Some(t) = line.strip_prefix("admin token (shown once; stored in the store): ") {
                token = Some(t.to_string());
            }
            if let Some(a) = line.strip_prefix("listening on http://") {
                addr = Some(a.parse().expect("a socket address"));
            }
        }
        // Keep draining stdout so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            addr: addr.expect("address"),
            token,
            store: store.to_path_buf(),
            log,
            _dir: None,
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin token, printed on the store's first start only.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The store directory.
    pub fn store(&self) -> &Path {
        &self.store
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A keep-alive client of this server.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// One request on a fresh connection (`Connection: close`); panics on I/O errors.
    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> Response {
        let mut c = Client::new(self.addr);
        c.keep_alive = false;
        c.call(method, path, token, body.as_bytes())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One request on a fresh connection: the status and the body as JSON (`Null` when
    /// the body is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let r = self.request(method, path, token, body);
        let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
        (r.status, v)
    }

    /// SIGTERM, and asserts a graceful stop (exit code 0) within `within`.
    pub fn stop_gracefully(&mut self, within: Duration) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.pid());
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "exit status {status:?}\n{}",
                    self.log_tail()
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no graceful stop within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines the server logged.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful stop), then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.pid());
        self.child.wait().expect("wait for attune serve")
    }

    /// Resident set size of the server in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }
}

fn tail(log: &Mutex<VecDeque<String>>) -> String {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.iter().fold(String::new(), |out, l| out + l + "\n")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- attune serve's log (last lines) ---\n{}",
                self.log_tail()
            );
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: status {} body {:?}", self.status, self.text()))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body is the service's error shape: `{"error": {"code": "...",
    /// "message": "..."}}`.
    pub fn is_json_error(&self) -> bool {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&self.body) else {
            return false;
        };
        v["error"]["code"].is_string() && v["error"]["message"].is_string()
    }
}

/// An HTTP/1.1 client of one server: keeps its connection alive between calls (unless
/// `keep_alive` is off) and reconnects after an error or a `Connection: close`. It never
/// retries a request: after an error, whether the server acted on it is unknown.
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    /// Reuse the connection between requests (the default).
    pub keep_alive: bool,
}

impl Client {
    /// A client of `addr`; connects on the first call.
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            keep_alive: true,
        }
    }

    /// Sends a request with a JSON content type (and a bearer token if given) and reads
    /// the response.
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: attune\r\n");
        if !self.keep_alive {
            head.push_str("Connection: close\r\n");
        }
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.exchange(&bytes, method.eq_ignore_ascii_case("HEAD"))
    }

    /// Writes `request` (a complete request, as bytes) and reads one response.
    pub fn exchange(&mut self, request: &[u8], head_only: bool) -> io::Result<Response> {
        let result = self.try_exchange(request, head_only);
        match &result {
            Ok(r) if self.keep_alive && !r.closes() => {}
            _ => self.conn = None,
        }
        result
    }

    fn try_exchange(&mut self, request: &[u8], head_only: bool) -> io::Result<Response> {
        if self.conn.is_none() {
            self.conn = Some(BufReader::new(connect(self.addr)?));
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.get_mut().write_all(request)?;
        read_response(conn, head_only)
    }
}

impl Response {
    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Connects to `addr`. A client that opens tens of thousands of connections a minute (the
/// fuzzer opens one per request) can run out of local ports while closed ones sit in
/// TIME_WAIT: that failure is the test machine's, not the server's, so it is retried for a
/// while instead of being reported as the server not answering.
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let s = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e)
                if e.kind() == io::ErrorKind::AddrNotAvailable
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    };
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sends arbitrary bytes on a fresh connection, half-closes it (so that a server waiting
/// for more body sees the end), and reads what comes back: `Ok(None)` when the server
/// closed the connection without answering.
pub fn exchange_raw(
    addr: SocketAddr,
    request: &[u8],
    head_only: bool,
    timeout: Duration,
) -> io::Result<Option<Response>> {
    let s = connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    let mut s = BufReader::new(s);
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = s.get_mut().write_all(request);
    let _ = s.get_mut().shutdown(Shutdown::Write);
    if s.fill_buf()?.is_empty() {
        return Ok(None);
    }
    read_response(&mut s, head_only).map(Some)
}

/// Reads one response (skipping `1xx` interim ones) from `r`.
pub fn read_response(r: &mut impl BufRead, head_only: bool) -> io::Result<Response> {
    loop {
        let status_line = read_line(r)?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if (100..200).contains(&status) {
            continue;
        }
        let mut res = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 204 || status == 304 {
            return Ok(res);
        }
        if res
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size = read_line(r)?;
                let size = size.split(';').next().unwrap_or("").trim();
                let n = usize::from_str_radix(size, 16)
                    .map_err(|_| bad(format!("bad chunk size {size:?}")))?;
                if n == 0 {
                    // Trailers, then the empty line.
                    while !read_line(r)?.is_empty() {}
                    break;
                }
                let at = res.body.len();
                res.body.resize(at + n, 0);
                r.read_exact(&mut res.body[at..])?;
                read_line(r)?;
            }
        } else if let Some(len) = res.header("content-length") {
            let n: usize = len
                .parse()
                .map_err(|_| bad(format!("bad content-length {len:?}")))?;
            res.body.resize(n, 0);
            r.read_exact(&mut res.body)?;
        } else {
            r.read_to_end(&mut res.body)?;
        }
        return Ok(res);
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
