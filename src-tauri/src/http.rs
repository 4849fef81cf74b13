//! A small blocking HTTP/1.1 client for the panel's two needs: forwarding one REST call
//! (any method, a JSON body, an answer of any content type) and reading the engine's
//! server-sent event stream while it arrives. `attune::service::client::Client` reads
//! whole bodies from a `SocketAddr`; the panel also needs the host it was given for the
//! `Host` header, the answer's content type, and a body it can read frame by frame.
//!
//! One connection per call (`Connection: close`): the panel's calls are few, and a stale
//! keep-alive connection is one failure mode fewer.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::connection::Endpoint;
use crate::token::AdminToken;

/// Largest answer body the panel reads, in bytes.
pub const MAX_BODY: u64 = 64 << 20;

/// Longest line of a head or of the event stream, in bytes.
const MAX_LINE: u64 = 1 << 20;

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

/// Sends `request` and reads the whole answer; `timeout` bounds connecting and each read
/// and write.
pub fn send(endpoint: &Endpoint, request: Request<'_>, timeout: Duration) -> io::Result<Response> {
    let stream = open(endpoint, request, "application/json", timeout)?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader)?;
    let mut body = Vec::new();
    let read = Body::new(reader, head.framing)
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)?;
    if read as u64 > MAX_BODY {
        return Err(io::Error::other(format!(
            "the answer is larger than {MAX_BODY} bytes"
        )));
    }
    Ok(Response {
        status: head.status,
        content_type: head.content_type,
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

/// An open server-sent event stream.
pub struct EventStream {
    lines: BufReader<Body>,
}

/// Opens the event stream at `path`. Answers other than 200 are errors. Returns the stream
/// and a handle on its socket, which another thread may shut down to end a blocked read.
pub fn open_events(
    endpoint: &Endpoint,
    path: &str,
    token: Option<&AdminToken>,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> io::Result<(EventStream, TcpStream)> {
    let request = Request {
        method: "GET",
        path,
        token,
        body: None,
    };
    let stream = open(endpoint, request, "text/event-stream", connect_timeout)?;
    stream.set_read_timeout(Some(read_timeout))?;
    let handle = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader)?;
    if head.status != 200 {
        return Err(io::Error::other(format!(
            "GET {path} answered {}",
            head.status
        )));
    }
    let lines = BufReader::new(Body::new(reader, head.framing));
    Ok((EventStream { lines }, handle))
}

impl EventStream {
    /// The next frame; `None` when the server ended the stream.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let (mut event, mut data): (Option<String>, Option<String>) = (None, None);
        let mut line = String::new();
        loop {
            line.clear();
            let n = (&mut self.lines).take(MAX_LINE).read_line(&mut line)?;
            if n == 0 {
                return Ok(None);
            }
            if !line.ends_with('\n') && n as u64 == MAX_LINE {
                return Err(io::Error::other("an event line is too long"));
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                // A blank line ends a frame; a frame without data is not dispatched.
                match data.take() {
                    Some(data) => {
                        let event = event.take().unwrap_or_else(|| "message".into());
                        return Ok(Some(Frame { event, data }));
                    }
                    None => {
                        event = None;
                        continue;
                    }
                }
            }
            if l.starts_with(':') {
                continue;
            }
            let (field, value) = match l.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (l, ""),
            };
            match field {
                "event" => event = Some(value.to_string()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                _ => {}
            }
        }
    }
}

/// Connects and writes the request.
fn open(
    endpoint: &Endpoint,
    request: Request<'_>,
    accept: &str,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let mut stream = connect(endpoint, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let Request {
        method,
        path,
        token,
        body,
    } = request;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\nUser-Agent: attune-panel/{}\r\nConnection: close\r\n",
        endpoint.authority(),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(t) = token {
        head.push_str("Authorization: Bearer ");
        head.push_str(t.secret());
        head.push_str("\r\n");
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    Ok(stream)
}

fn connect(endpoint: &Endpoint, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in endpoint.resolve()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", endpoint.authority()),
        )
    }))
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    content_type: Option<String>,
    framing: Framing,
}

fn read_line(reader: &mut BufReader<TcpStream>, line: &mut String) -> io::Result<usize> {
    line.clear();
    reader.take(MAX_LINE).read_line(line)
}

fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Head> {
    let mut line = String::new();
    if read_line(reader, &mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection without answering",
        ));
    }
    let status: u16 = line
        .strip_prefix("HTTP/1.")
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {:?}", line.trim_end())))?;
    let (mut length, mut chunked, mut content_type) = (None, false, None);
    loop {
        if read_line(reader, &mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection in the answer's head",
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| io::Error::other(format!("bad Content-Length {value:?}")))?,
                )
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "content-type" => content_type = Some(value.to_string()),
            _ => {}
        }
    }
    let framing = if status / 100 == 1 || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Head {
        status,
        content_type,
        framing,
    })
}

/// An answer's body, as its framing delimits it.
struct Body {
    inner: BufReader<TcpStream>,
    state: BodyState,
}

enum BodyState {
    Length {
        left: u64,
    },
    Chunked {
        /// Bytes left in the current chunk.
        left: u64,
        /// A chunk's data was read, so its closing CRLF comes before the next size.
        after_chunk: bool,
        done: bool,
    },
    UntilClose,
}

impl Body {
    fn new(inner: BufReader<TcpStream>, framing: Framing) -> Body {
        let state = match framing {
            Framing::Length(left) => BodyState::Length { left },
            Framing::Chunked => BodyState::Chunked {
                left: 0,
                after_chunk: false,
                done: false,
            },
            Framing::UntilClose => BodyState::UntilClose,
        };
        Body { inner, state }
    }
}

fn eof_in_body() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection in the middle of the body",
    )
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.state {
            BodyState::Length { left } => {
                if *left == 0 {
                    return Ok(0);
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(eof_in_body());
                }
                *left -= n as u64;
                Ok(n)
            }
            BodyState::Chunked {
                left,
                after_chunk,
                done,
            } => {
                let mut line = String::new();
                while *left == 0 {
                    if *done {
                        return Ok(0);
                    }
                    if *after_chunk {
                        read_line(&mut self.inner, &mut line)?;
                        *after_chunk = false;
                    }
                    if read_line(&mut self.inner, &mut line)? == 0 {
                        return Err(eof_in_body());
                    }
                    let size = line.trim().split(';').next().unwrap_or_default().trim();
                    let size = u64::from_str_radix(size, 16)
                        .map_err(|_| io::Error::other(format!("bad chunk size {size:?}")))?;
                    if size == 0 {
                        // The trailer, up to its blank line.
                        while read_line(&mut self.inner, &mut line)? > 0
                            && !line.trim_end().is_empty()
                        {}
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(eof_in_body());
                }
                *left -= n as u64;
                if *left == 0 {
                    *after_chunk = true;
                }
                Ok(n)
            }
            BodyState::UntilClose => self.inner.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let head = server.join().expect("the server thread");
        assert!(head.starts_with("GET /v1/strategy HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains("Authorization: Bearer tok-0123456789abcdef\r\n"),
            "{head}"
        );
    }

    #[test]
    fn reads_event_frames() {
        let (endpoint, _server) = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\nevent: stats\ndata: {\"a\": 1}\n\n\r\n15\r\n: keep-alive\ndata: x\n\r\n9\r\ndata: y\n\n\r\n0\r\n\r\n",
        );
        let (mut events, _) = open_events(
            &endpoint,
            "/v1/stream",
            None,
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .expect("the stream opens");
        let first = events.next_frame().expect("a frame").expect("not the end");
        assert_eq!(first.event, "stats");
        assert_eq!(first.data, "{\"a\": 1}");
        let second = events.next_frame().expect("a frame").expect("not the end");
        assert_eq!(second.event, "message");
        assert_eq!(second.data, "x\ny");
        assert_eq!(events.next_frame().expect("a clean end"), None);
    }

    #[test]
    fn a_body_cut_short_is_an_error() {
        let (endpoint, _server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345");
        let r = send(
            &endpoint,
            Request {
                method: "GET",
                path: "/healthz",
                token: None,
                body: None,
            },
            Duration::from_secs(5),
        );
        assert_eq!(
            r.expect_err("a short body").kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
