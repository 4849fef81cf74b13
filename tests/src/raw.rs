//! Raw HTTP/1.1 over std TCP, for the fuzzer only: arbitrary bytes on a fresh connection
//! and a lenient reader of whatever comes back. Well-formed requests go through
//! [`crate::http::Client`] (the service's own, over reqwest).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use crate::http::{Response, IO_TIMEOUT};

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
