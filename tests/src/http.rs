//! `attune serve` as a real process on a free loopback port, and its client (the
//! service's own, over reqwest): one-shot requests and keep-alive connections. Shared by the service
//! tests, so that each drives the binary exactly as a user would; the fuzzer's raw bytes
//! go through [`crate::raw`].

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
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
        Server::launch_under(&[], args, store)
    }

    /// [`Server::launch`] under a wrapper command (`fiu-run -x ...`), given as its
    /// program and arguments; the `attune` binary and `serve ARGS` follow them.
    pub fn launch_under(wrapper: &[&str], args: &[&str], store: &Path) -> Server {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(attune_bin());
                c
            }
            None => Command::new(attune_bin()),
        };
        let mut child = cmd
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
        Client::fresh(self.addr)
            .call(method, path, token, body.as_bytes())
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

/// A client of one server: the service's own ([`attune::service::client::Client`],
/// reqwest's blocking client), answering in this module's [`Response`]. It keeps its
/// connections alive between calls (unless made with [`Client::fresh`]) and never
/// retries a request: after an error, whether the server acted on it is unknown.
pub struct Client(attune::service::client::Client);

impl Client {
    /// A keep-alive client of `addr`; connects on the first call.
    pub fn new(addr: SocketAddr) -> Client {
        Client(
            attune::service::client::Client::new(addr, IO_TIMEOUT)
                .expect("an HTTP client without TLS builds"),
        )
    }

    /// A client that opens a new connection for every request.
    pub fn fresh(addr: SocketAddr) -> Client {
        Client(
            attune::service::client::Client::fresh(addr, IO_TIMEOUT)
                .expect("an HTTP client without TLS builds"),
        )
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
        let r = self.0.request(method, path, token, body)?;
        Ok(Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }
}
