//! The panel's HTTP: forwarding one REST call (any method, a JSON body, an answer of any
//! content type) and reading the engine's server-sent event stream while it arrives.
//! Requests go through `reqwest` (the blocking client for calls, the async one for the
//! stream, whose reads another thread must be able to interrupt); what is ours is the
//! event-stream framing ([`FrameParser`], the WHATWG rules the panel needs: `event:`,
//! multi-line `data:`, comments, CRLF or LF).

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use crate::connection::Endpoint;
use crate::token::AdminToken;

/// Largest answer body the panel reads, in bytes.
pub const MAX_BODY: u64 = 64 << 20;

/// Longest line of the event stream, in bytes.
const MAX_LINE: usize = 1 << 20;

/// One request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    pub token: Option<&'a AdminToken>,
    /// A JSON body.
    pub body: Option<&'a [u8]>,
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

fn user_agent() -> String {
    format!("attune-panel/{}", env!("CARGO_PKG_VERSION"))
}

/// An I/O error whose message carries reqwest's whole chain of causes (its own message
/// names the URL; the cause says why, e.g. "Connection refused").
fn to_io(e: reqwest::Error) -> io::Error {
    let kind = if e.is_timeout() {
        io::ErrorKind::TimedOut
    } else if e.is_connect() {
        io::ErrorKind::ConnectionRefused
    } else {
        io::ErrorKind::Other
    };
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    io::Error::new(kind, message)
}

/// The blocking client of every call with this timeout (the panel uses two: calls and
/// probes). Built once: a blocking client owns a runtime thread.
fn blocking_client(timeout: Duration) -> io::Result<reqwest::blocking::Client> {
    static CLIENTS: OnceLock<std::sync::Mutex<Vec<(Duration, reqwest::blocking::Client)>>> =
        OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = clients.iter().find(|(t, _)| *t == timeout) {
        return Ok(c.clone());
    }
    let client = reqwest::blocking::Client::builder()
        .user_agent(user_agent())
        .no_proxy()
        .connect_timeout(timeout)
        // Per operation: waiting for the head, then each read of the body.
        .timeout(timeout)
        .build()
        .map_err(to_io)?;
    clients.push((timeout, client.clone()));
    Ok(client)
}

/// Sends `request` and reads the whole answer; `timeout` bounds connecting, waiting for
/// the answer's head and each read of its body.
pub fn send(endpoint: &Endpoint, request: Request<'_>, timeout: Duration) -> io::Result<Response> {
    use std::io::Read;
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| io::Error::other(format!("bad method {:?}", request.method)))?;
    let url = format!("{}{}", endpoint.url(), request.path);
    let mut call = blocking_client(timeout)?
        .request(method, &url)
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(t) = request.token {
        call = call.bearer_auth(t.secret());
    }
    if let Some(body) = request.body.filter(|b| !b.is_empty()) {
        call = call
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
    }
    let answer = call.send().map_err(to_io)?;
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    let read = answer.take(MAX_BODY + 1).read_to_end(&mut body)?;
    if read as u64 > MAX_BODY {
        return Err(io::Error::other(format!(
            "the answer is larger than {MAX_BODY} bytes"
        )));
    }
    Ok(Response {
        status,
        content_type,
        body,
    })
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The `event:` field (`message` when the frame has none).
    pub event: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// An open server-sent event stream (async: the reader awaits it beside its interrupt).
pub struct EventStream {
    answer: reqwest::Response,
    parser: FrameParser,
    ready: std::collections::VecDeque<Frame>,
}

/// Opens the event stream at `path`. Answers other than 200 are errors. `read_timeout`
/// bounds the silence between two reads.
pub async fn open_events(
    endpoint: &Endpoint,
    path: &str,
    token: Option<&AdminToken>,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> io::Result<EventStream> {
    let client = reqwest::Client::builder()
        .user_agent(user_agent())
        .no_proxy()
        .connect_timeout(connect_timeout)
        .read_timeout(read_timeout)
        .build()
        .map_err(to_io)?;
    let mut call = client
        .get(format!("{}{path}", endpoint.url()))
        .header(reqwest::header::ACCEPT, "text/event-stream");
    if let Some(t) = token {
        call = call.bearer_auth(t.secret());
    }
    // Connecting and the head: bounded here (read_timeout covers the body's reads).
    let answer = tokio::time::timeout(connect_timeout + read_timeout, call.send())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the stream's head did not come"))?
        .map_err(to_io)?;
    if answer.status() != reqwest::StatusCode::OK {
        return Err(io::Error::other(format!(
            "GET {path} answered {}",
            answer.status().as_u16()
        )));
    }
    Ok(EventStream {
        answer,
        parser: FrameParser::default(),
        ready: Default::default(),
    })
}

impl EventStream {
    /// The next frame; `None` when the server ended the stream.
    pub async fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Ok(Some(frame));
            }
            match self.answer.chunk().await.map_err(to_io)? {
                Some(bytes) => self.ready.extend(self.parser.push(&bytes)?),
                None => return Ok(None),
            }
        }
    }
}

/// Cuts a byte stream into server-sent events, however the bytes are split.
#[derive(Debug, Default)]
pub struct FrameParser {
    /// The line being read, not yet ended.
    line: Vec<u8>,
    /// The last byte was a CR, so an LF right after it ends nothing more.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl FrameParser {
    /// Feeds `bytes`; answers the frames they complete.
    pub fn push(&mut self, bytes: &[u8]) -> io::Result<Vec<Frame>> {
        let mut frames = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line =
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    if let Some(frame) = self.line_ended(&line) {
                        frames.push(frame);
                    }
                }
                _ => {
                    if self.line.len() >= MAX_LINE {
                        return Err(io::Error::other("an event line is too long"));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(frames)
    }

    fn line_ended(&mut self, l: &str) -> Option<Frame> {
        if l.is_empty() {
            // A blank line ends a frame; a frame without data is not dispatched.
            let event = self.event.take();
            return self.data.take().map(|data| Frame {
                event: event.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if l.starts_with(':') {
            return None;
        }
        let (field, value) = match l.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (l, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// Serves one connection with `answer` (after reading the request head); returns the
    /// endpoint and a handle giving back the request head.
    fn serve_once(answer: &'static [u8]) -> (Endpoint, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let addr = listener.local_addr().expect("bound address");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("one connection");
            let mut reader = BufReader::new(s.try_clone().expect("clone the socket"));
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("a request line");
                if line.trim_end().is_empty() {
                    break;
                }
                head.push_str(&line);
            }
            s.write_all(answer).expect("write the answer");
            head
        });
        (Endpoint::from_addr(addr), server)
    }

    /// `GET /healthz` without a token.
    fn get_healthz(endpoint: &Endpoint) -> io::Result<Response> {
        send(
            endpoint,
            Request {
                method: "GET",
                path: "/healthz",
                token: None,
                body: None,
            },
            Duration::from_secs(5),
        )
    }

    #[test]
    fn reads_a_chunked_answer_and_sends_the_token() {
        let (endpoint, server) = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n",
        );
        let token = AdminToken::new("tok-0123456789abcdef");
        let r = send(
            &endpoint,
            Request {
                method: "GET",
                path: "/v1/strategy",
                token: Some(&token),
                body: None,
            },
            Duration::from_secs(5),
        )
        .expect("an answer");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"{\"a\": 1}");
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        let head = server
            .join()
            .expect("the server thread")
            .to_ascii_lowercase();
        assert!(head.starts_with("get /v1/strategy http/1.1\r\n"), "{head}");
        assert!(
            head.contains("authorization: bearer tok-0123456789abcdef\r\n"),
            "{head}"
        );
    }

    #[test]
    fn reads_event_frames() {
        let (endpoint, _server) = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\nevent: stats\ndata: {\"a\": 1}\n\n\r\n15\r\n: keep-alive\ndata: x\n\r\n9\r\ndata: y\n\n\r\n0\r\n\r\n",
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut events = open_events(
                &endpoint,
                "/v1/stream",
                None,
                Duration::from_secs(5),
                Duration::from_secs(5),
            )
            .await
            .expect("the stream opens");
            let first = events
                .next_frame()
                .await
                .expect("a frame")
                .expect("not the end");
            assert_eq!(first.event, "stats");
            assert_eq!(first.data, "{\"a\": 1}");
            let second = events
                .next_frame()
                .await
                .expect("a frame")
                .expect("not the end");
            assert_eq!(second.event, "message");
            assert_eq!(second.data, "x\ny");
            assert_eq!(events.next_frame().await.expect("a clean end"), None);
        });
    }

    #[test]
    fn frames_do_not_depend_on_how_the_bytes_are_cut() {
        let stream = b"event: stats\r\ndata: {\"a\": 1}\r\n\r\n: comment\ndata: x\ndata: y\n\nevent: lost\n\ndata\n\n";
        let expected = vec![
            Frame {
                event: "stats".into(),
                data: "{\"a\": 1}".into(),
            },
            Frame {
                event: "message".into(),
                data: "x\ny".into(),
            },
            Frame {
                event: "message".into(),
                data: "".into(),
            },
        ];
        for cut in 0..=stream.len() {
            let mut parser = FrameParser::default();
            let mut frames = parser.push(&stream[..cut]).expect("frames");
            frames.extend(parser.push(&stream[cut..]).expect("frames"));
            assert_eq!(frames, expected, "cut at {cut}");
        }
        let mut parser = FrameParser::default();
        let long = vec![b'x'; MAX_LINE + 1];
        assert!(parser.push(&long).is_err());
    }

    #[test]
    fn a_body_cut_short_is_an_error() {
        let (endpoint, _server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345");
        let r = get_healthz(&endpoint);
        assert!(r.is_err(), "{r:?}");
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let endpoint = Endpoint::from_addr(listener.local_addr().expect("bound address"));
        drop(listener);
        let r = get_healthz(&endpoint);
        let e = r.expect_err("nothing listens");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        // The cause is in the message, not only reqwest's "error sending request".
        assert!(e.to_string().contains("refused"), "{e}");
    }
}
