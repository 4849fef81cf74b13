//! The live stream: a background thread reads the engine's `GET /v1/stream` and hands
//! each server-sent event to a sink (the web view's channel). When the connection drops
//! it reports `connection: disconnected`, retries every [`RETRY_EVERY`], and reports
//! `connection: connected` when it is back. It reads the panel's current connection at
//! each attempt, so switching engines is a reconnect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::connection::Connection;
use crate::http;

/// Pause between two connection attempts.
pub const RETRY_EVERY: Duration = Duration::from_millis(1500);

/// Connecting to the engine may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Silence after which the stream is taken for dead and reopened (the engine sends its
/// figures once a second).
const SILENCE_TIMEOUT: Duration = Duration::from_secs(15);

/// One message to the web view: a server-sent event, or the panel's own `connection`
/// event (`{"state": "connected" | "disconnected", "url": ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamMessage {
    pub event: String,
    pub data: serde_json::Value,
}

impl StreamMessage {
    fn connection(state: &str, url: &str) -> StreamMessage {
        StreamMessage {
            event: "connection".into(),
            data: serde_json::json!({"state": state, "url": url}),
        }
    }

    fn from_frame(frame: http::Frame) -> StreamMessage {
        let data =
            serde_json::from_str(&frame.data).unwrap_or(serde_json::Value::String(frame.data));
        StreamMessage {
            event: frame.event,
            data,
        }
    }
}

/// Receives the stream's messages; returns `false` when nobody listens any more (the
/// reader then stops).
pub trait Sink: Send + 'static {
    fn deliver(&self, message: StreamMessage) -> bool;
}

impl<F: Fn(StreamMessage) -> bool + Send + 'static> Sink for F {
    fn deliver(&self, message: StreamMessage) -> bool {
        self(message)
    }
}

/// What the reader thread and its owner share.
struct Control {
    stop: AtomicBool,
    /// Set to drop the current stream and reconnect at once (the connection changed).
    kick: AtomicBool,
    /// Bumped to interrupt the reader wherever it waits (connecting or reading).
    interrupts: tokio::sync::watch::Sender<u64>,
}

impl Default for Control {
    fn default() -> Control {
        Control {
            stop: AtomicBool::new(false),
            kick: AtomicBool::new(false),
            interrupts: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Control {
    fn interrupt(&self) {
        self.interrupts.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// How one open stream ended.
enum Ended {
    /// The web view stopped listening.
    SinkGone,
    /// A stop or a switch of engines.
    Interrupted,
    /// The engine or the network ended it; why, for the log.
    Dropped(String),
}

/// A running reader. Dropping it stops the reader and waits for its thread.
pub struct Subscription {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Subscription {
    /// Starts reading the stream of the engine `connection` points to.
    pub fn start(connection: Arc<RwLock<Connection>>, sink: impl Sink) -> Subscription {
        let control = Arc::new(Control::default());
        let shared = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name("panel-stream".into())
            .spawn(move || read_loop(&connection, &sink, &shared))
            .map_err(|e| tracing::error!(error = %e, "cannot start the stream reader"))
            .ok();
        Subscription { control, thread }
    }

    /// Drops the open stream and reconnects at once, to the connection's current engine.
    pub fn reconnect(&self) {
        self.control.kick.store(true, Ordering::SeqCst);
        self.control.interrupt();
    }

    /// Whether the reader still runs (it ends when its sink is gone).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the reader and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.control.stop.store(true, Ordering::SeqCst);
        self.control.interrupt();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.halt();
    }
}

fn read_loop(connection: &RwLock<Connection>, sink: &impl Sink, control: &Control) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the stream reader's runtime");
            return;
        }
    };
    // The state last reported, so a long outage is reported once.
    let mut reported_down = false;
    while !control.stop.load(Ordering::SeqCst) {
        control.kick.store(false, Ordering::SeqCst);
        let mut interrupts = control.interrupts.subscribe();
        // A stop or switch that came before the subscription.
        if control.stop.load(Ordering::SeqCst) {
            break;
        }
        if control.kick.load(Ordering::SeqCst) {
            continue;
        }
        let (endpoint, token) = {
            let c = connection.read().unwrap_or_else(|e| e.into_inner());
            (c.endpoint.clone(), c.token.clone())
        };
        let url = endpoint.url();
        let opened = runtime.block_on(async {
            tokio::select! {
                opened = http::open_events(
                    &endpoint,
                    "/v1/stream",
                    token.as_ref(),
                    CONNECT_TIMEOUT,
                    SILENCE_TIMEOUT,
                ) => Some(opened),
                _ = interrupts.changed() => None,
            }
        });
        match opened {
            None => continue,
            Some(Ok(mut events)) => {
                tracing::info!(url, "live stream connected");
                if !sink.deliver(StreamMessage::connection("connected", &url)) {
                    return;
                }
                let ended = runtime.block_on(async {
                    loop {
                        tokio::select! {
                            frame = events.next_frame() => match frame {
                                Ok(Some(frame)) => {
                                    if !sink.deliver(StreamMessage::from_frame(frame)) {
                                        break Ended::SinkGone;
                                    }
                                }
                                Ok(None) => break Ended::Dropped("the engine ended the stream".into()),
                                Err(e) => break Ended::Dropped(e.to_string()),
                            },
                            _ = interrupts.changed() => break Ended::Interrupted,
                        }
                    }
                });
                let why = match ended {
                    Ended::SinkGone => return,
                    Ended::Interrupted => "interrupted".to_string(),
                    Ended::Dropped(why) => why,
                };
                if control.stop.load(Ordering::SeqCst) {
                    break;
                }
                tracing::info!(url, why, "live stream disconnected");
                if !sink.deliver(StreamMessage::connection("disconnected", &url)) {
                    return;
                }
                reported_down = true;
            }
            Some(Err(e)) => {
                if !reported_down {
                    tracing::info!(url, error = %e, "live stream unavailable; retrying");
                    if !sink.deliver(StreamMessage::connection("disconnected", &url)) {
                        return;
                    }
                    reported_down = true;
                }
            }
        }
        // Wait before the next attempt, unless stopped or switched meanwhile.
        let until = Instant::now() + RETRY_EVERY;
        while Instant::now() < until
            && !control.stop.load(Ordering::SeqCst)
            && !control.kick.load(Ordering::SeqCst)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Endpoint, Mode};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    fn connection_to(addr: std::net::SocketAddr) -> Arc<RwLock<Connection>> {
        Arc::new(RwLock::new(Connection {
            endpoint: Endpoint::from_addr(addr),
            token: None,
            mode: Mode::Remote,
            environment: None,
            model_found: false,
            notes: vec![],
        }))
    }

    /// Answers each connection with one `stats` frame, then closes it.
    fn flaky_server(listener: TcpListener, connections: usize) {
        for n in 0..connections {
            let (mut s, _) = listener.accept().expect("a connection");
            let mut reader = BufReader::new(s.try_clone().expect("clone the socket"));
            let mut line = String::new();
            while reader.read_line(&mut line).expect("the request") > 2 {
                line.clear();
            }
            let frame = format!("event: stats\ndata: {{\"n\": {n}}}\n\n");
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{frame}",
                frame.len()
            );
            s.write_all(answer.as_bytes()).expect("the answer");
        }
    }

    #[test]
    fn reports_disconnects_and_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let addr = listener.local_addr().expect("bound address");
        std::thread::spawn(move || flaky_server(listener, 2));
        let (tx, rx) = mpsc::channel();
        let subscription = Subscription::start(connection_to(addr), move |m: StreamMessage| {
            tx.send(m).is_ok()
        });
        let mut seen = Vec::new();
        while seen.len() < 6 {
            let m = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the reader goes on");
            let state = m.data["state"].as_str().unwrap_or_default().to_string();
            seen.push(format!("{} {}{}", m.event, state, m.data["n"]));
        }
        subscription.stop();
        assert_eq!(
            seen,
            [
                "connection connectednull",
                "stats 0",
                "connection disconnectednull",
                "connection connectednull",
                "stats 1",
                "connection disconnectednull",
            ]
        );
    }

    #[test]
    fn stopping_interrupts_a_blocked_read() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let addr = listener.local_addr().expect("bound address");
        // Reads the request, answers the head, then stays silent. (Answering before the
        // request is read makes reqwest drop the connection as a protocol error, which no
        // real server provokes.)
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("a connection");
            let mut reader = BufReader::new(s.try_clone().expect("clone the socket"));
            let mut line = String::new();
            while reader.read_line(&mut line).expect("the request") > 2 {
                line.clear();
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .expect("the head");
            std::thread::sleep(Duration::from_secs(5));
        });
        let (tx, rx) = mpsc::channel();
        let subscription = Subscription::start(connection_to(addr), move |m: StreamMessage| {
            tx.send(m).is_ok()
        });
        let first = rx.recv_timeout(Duration::from_secs(10)).expect("connected");
        assert_eq!(first.data["state"], "connected");
        let started = Instant::now();
        subscription.stop();
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(server);
    }
}
