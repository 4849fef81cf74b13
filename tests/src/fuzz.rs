//! Request generators for the service fuzzer (`tests/service_faults.rs`): proptest
//! strategies for paths, methods, headers, authorisation, framing and bodies (valid ones
//! for each route, broken ones, anything else), and raw bytes that are not HTTP at all.
//! A [`FuzzRequest`] writes itself as the bytes to send.

use std::fmt::Write as _;

use proptest::prelude::*;

/// `--body-limit` of the fuzzed server: small, so that bodies beyond it are cheap.
pub const FUZZ_BODY_LIMIT: usize = 64 << 10;

/// How the body is framed.
#[derive(Debug, Clone)]
pub enum Framing {
    /// A correct `Content-Length`.
    Length,
    /// No length header at all.
    None,
    /// `Transfer-Encoding: chunked`, correctly encoded in chunks of this size.
    Chunked(usize),
    /// A wrong or malformed `Content-Length` value (the request is not valid HTTP).
    BadLength(String),
}

/// The `Authorization` header.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// `Bearer <the admin token>`.
    Admin,
    Raw(String),
}

/// One generated request.
#[derive(Debug, Clone)]
pub struct FuzzRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub auth: Auth,
    pub framing: Framing,
    pub body: Vec<u8>,
    /// Raw bytes in place of a request (protocol garbage), if any.
    pub garbage: Option<Vec<u8>>,
}

impl FuzzRequest {
    /// Whether the request is valid HTTP/1.1, so that the application sees it (protocol
    /// errors are answered by the HTTP layer itself).
    pub fn well_formed(&self) -> bool {
        self.garbage.is_none() && !matches!(self.framing, Framing::BadLength(_))
    }

    /// Whether the server must answer: a well-formed request within the body limit (beyond
    /// it, the server may answer 413 and close before reading the rest, and the client can
    /// then see a reset instead of the answer). A body sent without framing is not the
    /// request's: its bytes are the next request on the connection, protocol garbage the
    /// server closes on, and if they are still arriving (65 KB were, in one failing case)
    /// the close resets the connection before the client reads the first answer.
    pub fn must_be_answered(&self) -> bool {
        self.well_formed()
            && self.body.len() <= FUZZ_BODY_LIMIT
            && (self.body.is_empty() || !matches!(self.framing, Framing::None))
    }

    pub fn bytes(&self, token: &str) -> Vec<u8> {
        if let Some(g) = &self.garbage {
            return g.clone();
        }
        let mut head = format!("{} {} HTTP/1.1\r\nHost: attune\r\n", self.method, self.path);
        for (n, v) in &self.headers {
            let _ = write!(head, "{n}: {v}\r\n");
        }
        match &self.auth {
            Auth::None => {}
            Auth::Admin => {
                let _ = write!(head, "Authorization: Bearer {token}\r\n");
            }
            Auth::Raw(v) => {
                let _ = write!(head, "Authorization: {v}\r\n");
            }
        }
        let mut body = Vec::new();
        match &self.framing {
            Framing::Length => {
                let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
                body.extend_from_slice(&self.body);
            }
            Framing::None => body.extend_from_slice(&self.body),
            Framing::Chunked(size) => {
                head.push_str("Transfer-Encoding: chunked\r\n");
                for chunk in self.body.chunks(*size) {
                    body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    body.extend_from_slice(chunk);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n\r\n");
            }
            Framing::BadLength(v) => {
                let _ = write!(head, "Content-Length: {v}\r\n");
                body.extend_from_slice(&self.body);
            }
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("POST", "/v1/events"),
    ("POST", "/v1/recommend"),
    ("GET", "/v1/users/{id}"),
    ("GET", "/v1/items/{id}"),
    ("POST", "/v1/items"),
    ("GET", "/v1/strategy"),
    ("PUT", "/v1/strategy"),
    ("GET", "/v1/strategy/history"),
    ("POST", "/v1/strategy/rollback"),
    ("GET", "/v1/stats"),
];

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A path segment: plain, percent-encoded unicode, dot segments, very long, broken escapes.
pub fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_-]{1,12}",
        any::<String>().prop_map(|s| percent_encode(&s)),
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
        Just(".".to_string()),
        Just("%00".to_string()),
        Just("%ff%fe".to_string()),
        Just("%".to_string()),
        Just("%zz".to_string()),
        (1usize..3000).prop_map(|n| "a".repeat(n)),
        "[!$&'()*+,;=:@]{1,5}",
    ]
}

/// The route's own path (its `{id}` a random segment), now and then with a suffix, or a
/// path of random segments.
pub fn path(route: usize) -> impl Strategy<Value = String> {
    let own = segment().prop_map(move |id| ROUTES[route].1.replace("{id}", &id));
    let suffix = prop_oneof![
        12 => Just(String::new()),
        1 => Just("/".to_string()),
        1 => Just("//".to_string()),
        1 => segment().prop_map(|s| format!("/{s}")),
        2 => "[a-z=&%0-9]{0,20}".prop_map(|q| format!("?{q}")),
        1 => Just("/../healthz".to_string()),
    ];
    prop_oneof![
        30 => (own, suffix).prop_map(|(r, s)| r + &s),
        3 => proptest::collection::vec(segment(), 0..5).prop_map(|s| format!("/{}", s.join("/"))),
        1 => Just("*".to_string()),
    ]
}

pub fn method() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        12 => Just(None), // the route's own method
        3 => proptest::sample::select(vec![
            "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
        ])
        .prop_map(|m| Some(m.to_string())),
        1 => "[A-Z]{1,10}".prop_map(Some),
    ]
}

/// A JSON value: every type, huge and tiny numbers, unicode, deep nesting.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        (0i64..10).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[a-z0-9]{0,8}".prop_map(Value::from),
        proptest::sample::select(vec![
            "view",
            "click",
            "cart",
            "purchase",
            "rating",
            "skip",
            "impression",
            "item",
        ])
        .prop_map(Value::from),
        (1usize..400).prop_map(|n| Value::from("x".repeat(n))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::vec((field_name(), inner), 0..6)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// The fields the routes read, and a few others.
pub fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(vec![
            "user", "kind", "item", "ts", "value", "dwell_ms", "price", "items", "scores",
            "request_id", "strategy_version", "title", "tags", "attrs", "k", "context",
            "include_tags", "exclude_tags", "exclude_items", "version", "weights", "seq",
            "like", "purchase", "itemknn", "markov", "pop", "candidates", "explore",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// A valid event (of any kind, with its own fields).
pub fn valid_event() -> impl Strategy<Value = String> {
    (
        "[a-z0-9]{1,4}",
        "[a-z0-9]{1,4}",
        0u64..4_000_000_000,
        0usize..7,
        -10.0f64..10.0,
        0u32..100_000,
    )
        .prop_map(|(u, i, ts, kind, value, ms)| {
            let kind = match kind {
                0 => r#""kind": "view""#.to_string(),
                1 => format!(r#""kind": "view", "dwell_ms": {ms}"#),
                2 => r#""kind": "click""#.to_string(),
                3 => r#""kind": "cart""#.to_string(),
                4 => format!(r#""kind": "purchase", "price": {value}"#),
                5 => format!(r#""kind": "rating", "value": {value}"#),
                _ => r#""kind": "skip""#.to_string(),
            };
            format!(r#"{{"user": "fz-{u}", {kind}, "item": "fz-{i}", "ts": {ts}}}"#)
        })
}

/// A valid body for the route (and for a GET, an empty one), that a mutation may break.
pub fn plausible_body(route: usize) -> BoxedStrategy<String> {
    match ROUTES[route].1 {
        "/v1/events" => prop_oneof![
            3 => valid_event(),
            1 => proptest::collection::vec(valid_event(), 1..8).prop_map(|v| format!("[{}]", v.join(","))),
            1 => proptest::collection::vec(valid_event(), 1..8).prop_map(|v| v.join("\n")),
        ]
        .boxed(),
        "/v1/recommend" => (
            "[a-z0-9]{1,4}",
            0usize..1100,
            "[a-z0-9]{1,4}",
            any::<bool>(),
            0usize..3,
        )
            .prop_map(|(u, k, t, log, shape)| match shape {
                0 => format!(r#"{{"user": "fz-{u}"}}"#),
                1 => format!(r#"{{"user": "fz-{u}", "k": {k}}}"#),
                _ => format!(
                    r#"{{"user": "fz-{u}", "k": {k}, "context": {{"include_tags": ["{t}"], "exclude_tags": ["x"], "exclude_items": ["fz-{t}"], "log_impression": {log}}}}}"#
                ),
            })
            .boxed(),
        "/v1/items" => ("[a-z0-9]{1,4}", "[a-z]{1,3}", 1usize..4)
            .prop_map(|(i, t, n)| {
                (0..n)
                    .map(|j| format!(
                        r#"{{"kind": "item", "item": "fz-{i}{j}", "title": "T {j}", "tags": ["{t}"], "attrs": {{"price": "1.00"}}}}"#
                    ))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .boxed(),
        "/v1/strategy" if ROUTES[route].0 == "PUT" => mutated_strategy().boxed(),
        "/v1/strategy/rollback" => (0u64..6).prop_map(|v| format!(r#"{{"version": {v}}}"#)).boxed(),
        _ => Just(String::new()).boxed(),
    }
}

/// The default strategy, as `GET /v1/strategy` shows it: the template that
/// [`mutated_strategy`] breaks.
pub const DEFAULT_STRATEGY: &str = r#"{"name":"default","weights":{"seq":1.0,"like":0.2,"purchase":0.2,"itemknn":0.5,"markov":0.5,"pop":0.2},"min_weights":{"seq":0.0,"like":0.0,"purchase":0.0,"itemknn":0.0,"markov":0.0,"pop":0.0},"max_weights":{"seq":5.0,"like":5.0,"purchase":5.0,"itemknn":5.0,"markov":5.0,"pop":5.0},"pinned":[],"learning":{"adaptive":true,"learning_rate":1.0,"update_every":32},"exploration":{"mode":"none"},"filters":{"exclude_seen":true,"include_tags":[],"exclude_tags":[]},"reward":{"click":1.0,"cart":2.0,"purchase":5.0,"like":1.0,"skip":0.0},"candidates":50,"batching":{"max_batch":16,"max_queue_delay_us":100}}"#;

/// Values at and beyond the bounds the strategy's fields accept.
pub fn edge_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        3 => proptest::sample::select(vec![
            json!(-3.4e38), json!(3.4e38), json!(1e39), json!(-1e39), json!(0), json!(-0.0),
            json!(1e-45), json!(1), json!(10), json!(10.000001), json!(1000), json!(1000.0001),
            json!(-1000), json!(4096), json!(4097), json!(10000), json!(10001), json!(2000),
            json!(u64::MAX), json!(-1), json!(true), json!(""), json!(["seq", "seq"]),
            json!(["nope"]), json!(["a", "b"]),
        ]),
        1 => json_value(),
        1 => (0.0f64..=1.0, 0.0f64..=10.0, any::<bool>()).prop_map(|(e, s, eps)| if eps {
            json!({"mode": "epsilon", "epsilon": e})
        } else {
            json!({"mode": "thompson", "scale": s})
        }),
    ]
}

/// The default strategy with one to four fields (or whole sections) replaced.
pub fn mutated_strategy() -> impl Strategy<Value = String> {
    let template: serde_json::Value =
        serde_json::from_str(DEFAULT_STRATEGY).expect("the template is JSON");
    let mut paths = Vec::new();
    fn walk(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        if let serde_json::Value::Object(m) = v {
            for (k, v) in m {
                walk(v, format!("{at}/{k}"), out);
            }
        }
        out.push(at);
    }
    walk(&template, String::new(), &mut paths);
    proptest::collection::vec((proptest::sample::select(paths), edge_value()), 0..4).prop_map(
        move |edits| {
            let mut s = template.clone();
            for (path, value) in edits {
                // Keep recommendations quick: a long batching delay slows every later case.
                let value = if path.ends_with("max_queue_delay_us")
                    && value.as_f64().is_some_and(|v| v > 2000.0)
                {
                    serde_json::json!(2000)
                } else {
                    value
                };
                if let Some(slot) = s.pointer_mut(&path) {
                    *slot = value;
                }
            }
            s.to_string()
        },
    )
}

/// A body for `route`: its own valid one, broken, or anything else.
pub fn body(route: usize) -> impl Strategy<Value = Vec<u8>> {
    let any_route = (0..ROUTES.len()).prop_flat_map(plausible_body);
    prop_oneof![
        6 => plausible_body(route).prop_map(String::into_bytes),
        // Truncated.
        3 => (plausible_body(route), any::<proptest::sample::Index>())
            .prop_map(|(b, at)| b.as_bytes()[..at.index(b.len() + 1)].to_vec()),
        2 => Just(Vec::new()),
        2 => proptest::collection::vec(any::<u8>(), 0..512),
        3 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => any_route.prop_map(String::into_bytes),
        // Arrays and JSON lines of valid and broken records.
        1 => proptest::collection::vec(
            prop_oneof![plausible_body(route), json_value().prop_map(|v| v.to_string())],
            1..6,
        )
        .prop_map(|v| v.join("\n").into_bytes()),
        // Huge numbers in the fields that take numbers.
        2 => (
            proptest::sample::select(vec!["ts", "k", "value", "version", "dwell_ms", "price"]),
            proptest::sample::select(vec![
                "1e999", "-1e999", "18446744073709551616", "-9223372036854775809", "1e308",
                "-0", "1e-400", "0.0000001", "99999999999999999999999999999",
            ]),
        )
            .prop_map(|(f, n)| format!(
                r#"{{"user": "fz", "kind": "rating", "item": "i1", "ts": 1700000000, "k": 3, "{f}": {n}}}"#
            )
            .into_bytes()),
        // Deeply nested arrays and objects.
        1 => (1usize..400).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        1 => (1usize..400).prop_map(|d| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d)).into_bytes()),
        1 => any::<String>().prop_map(String::into_bytes),
        1 => Just(b"\xef\xbb\xbf{\"user\": \"bom\", \"k\": 1}".to_vec()),
        // Around the fuzzed server's body limit.
        1 => (FUZZ_BODY_LIMIT - 64..FUZZ_BODY_LIMIT + 64).prop_map(|n| {
            let event = r#"{"user": "big", "kind": "click", "item": "b1", "ts": 1700000000}"#;
            let mut b = format!("{event}\n").repeat(n / (event.len() + 1) + 1).into_bytes();
            b.resize(n, b'\n');
            b
        }),
    ]
}

/// Extra headers: odd content types, encodings, expectations, random names and values.
pub fn header() -> impl Strategy<Value = (String, String)> {
    let value = "[ -~]{0,40}";
    prop_oneof![
        proptest::sample::select(vec![
            "application/json",
            "text/plain",
            "application/json; charset=utf-16",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "",
            "*/*",
            "application/jsonl",
        ])
        .prop_map(|v| ("Content-Type".to_string(), v.to_string())),
        proptest::sample::select(vec!["gzip", "br", "deflate", "identity", "zstd"])
            .prop_map(|v| ("Content-Encoding".to_string(), v.to_string())),
        proptest::sample::select(vec!["gzip", "br", "*", "x"])
            .prop_map(|v| ("Accept-Encoding".to_string(), v.to_string())),
        proptest::sample::select(vec!["text/html", "application/xml", "*/*", "x"])
            .prop_map(|v| ("Accept".to_string(), v.to_string())),
        Just(("Expect".to_string(), "100-continue".to_string())),
        proptest::sample::select(vec!["keep-alive", "upgrade", "close, upgrade", "x"])
            .prop_map(|v| ("Connection".to_string(), v.to_string())),
        proptest::sample::select(vec!["websocket", "h2c", "x"])
            .prop_map(|v| ("Upgrade".to_string(), v.to_string())),
        ("[A-Za-z][A-Za-z0-9-]{0,20}", value).prop_map(|(n, v)| (n, v)),
    ]
}

pub fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        3 => Just(Auth::None),
        6 => Just(Auth::Admin),
        1 => Just(Auth::Raw("Bearer ".to_string())),
        1 => Just(Auth::Raw("Bearer not-the-token-at-all".to_string())),
        1 => Just(Auth::Raw("Basic YWRtaW46YWRtaW4=".to_string())),
        1 => "[ -~]{0,60}".prop_map(Auth::Raw),
    ]
}

pub fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        16 => Just(Framing::Length),
        1 => Just(Framing::None),
        2 => (1usize..64).prop_map(Framing::Chunked),
        1 => proptest::sample::select(vec![
            "abc", "-1", "18446744073709551616", "1, 2", "+5", " ", "0x10", "1.5",
        ])
        .prop_map(|v| Framing::BadLength(v.to_string())),
    ]
}

/// Bytes that are not a valid request: random bytes, broken request lines and headers.
pub fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        Just(b"GET /healthz\r\n\r\n".to_vec()),
        Just(b"GET /healthz HTTP/2.0\r\n\r\n".to_vec()),
        Just(b"GET /healthz HTTP/1.1\r\nHost: a\r\nno-colon-here\r\n\r\n".to_vec()),
        Just(b"GET /healthz HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n".to_vec()),
        Just(b"GET /healthz HTTP/1.1\nHost: a\n\n".to_vec()),
        Just(b"GET /h\x00althz HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        Just(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n".to_vec()),
        Just(b"POST /v1/events HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{}{}{}".to_vec()),
        Just(b"POST /v1/events HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()),
        Just(b"POST /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n".to_vec()),
        Just(b"POST /v1/events HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"user\"".to_vec()),
        (1usize..70_000).prop_map(|n| format!("GET /v1/users/{} HTTP/1.1\r\n\r\n", "a".repeat(n)).into_bytes()),
        (1usize..200).prop_map(|n| {
            let mut h = String::from("GET /healthz HTTP/1.1\r\n");
            for i in 0..n {
                let _ = write!(h, "X-{i}: {}\r\n", "v".repeat(200));
            }
            h.push_str("\r\n");
            h.into_bytes()
        }),
        (proptest::collection::vec(any::<u8>(), 1..40)).prop_map(|m| {
            let mut r = m;
            r.extend_from_slice(b" /healthz HTTP/1.1\r\n\r\n");
            r
        }),
    ]
}

pub fn fuzz_request() -> impl Strategy<Value = FuzzRequest> {
    let valid = (0..ROUTES.len())
        .prop_flat_map(|route| {
            (
                Just(route),
                method(),
                path(route),
                proptest::collection::vec(header(), 0..3),
                auth(),
                framing(),
                body(route),
            )
        })
        .prop_map(
            |(route, method, path, headers, auth, framing, body)| FuzzRequest {
                method: method.unwrap_or_else(|| ROUTES[route].0.to_string()),
                path,
                headers,
                auth,
                framing,
                body,
                garbage: None,
            },
        );
    prop_oneof![
        12 => valid,
        1 => garbage().prop_map(|g| FuzzRequest {
            method: String::new(),
            path: String::new(),
            headers: Vec::new(),
            auth: Auth::None,
            framing: Framing::Length,
            body: Vec::new(),
            garbage: Some(g),
        }),
    ]
}
