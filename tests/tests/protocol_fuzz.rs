//! Malformed frontend messages over a raw socket: each message type with a
//! broken field gets a FATAL ErrorResponse with SQLSTATE 08P01 and only that
//! connection closes; a structure-aware fuzzer (a valid message stream with
//! one field mutated, plus random frames) runs a bounded number of cases while
//! a sentinel connection keeps answering, and the server log never shows a
//! panic.

use std::time::{Duration, Instant};

use cohortdb_tests::{simple_rows, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message: type byte and body.
type Frame = (u8, Vec<u8>);

fn startup_message() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (k, v) in [("user", "admin"), ("database", "cohortdb")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// A typed frontend message: type byte, length word, body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![kind];
    msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(body);
    msg
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn parse_body(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.extend_from_slice(&(types.len() as u16).to_be_bytes());
    for t in types {
        b.extend_from_slice(&t.to_be_bytes());
    }
    b
}

fn bind_body(stmt: &str, formats: &[i16], values: &[Option<&[u8]>], results: &[i16]) -> Vec<u8> {
    let mut b = cstr("");
    b.extend(cstr(stmt));
    b.extend_from_slice(&(formats.len() as u16).to_be_bytes());
    for f in formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        match v {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&(results.len() as u16).to_be_bytes());
    for r in results {
        b.extend_from_slice(&r.to_be_bytes());
    }
    b
}

fn execute_body(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    b
}

/// Reads backend frames until the server closes the socket (or `limit`
/// passes); returns them and whether the close was seen.
async fn read_until_close(sock: &mut TcpStream, limit: Duration) -> (Vec<Frame>, bool) {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut closed = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, sock.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    (frames(&buf), closed)
}

/// Reads frames until ReadyForQuery ('Z') arrives.
async fn read_until_ready(sock: &mut TcpStream) -> Vec<Frame> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let parsed = frames(&buf);
        if parsed.iter().any(|(k, _)| *k == b'Z') {
            return parsed;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk))
            .await
            .expect("server answers within 10 s")
            .expect("read");
        assert!(n > 0, "server closed before ReadyForQuery: {parsed:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn frames(mut buf: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while buf.len() >= 5 {
        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf.len() < 1 + len || len < 4 {
            break;
        }
        out.push((buf[0], buf[5..1 + len].to_vec()));
        buf = &buf[1 + len..];
    }
    out
}

/// The SQLSTATE of an ErrorResponse body.
fn sqlstate(body: &[u8]) -> Option<String> {
    let mut fields = body.split(|b| *b == 0);
    for f in fields.by_ref() {
        if f.first() == Some(&b'C') {
            return Some(String::from_utf8_lossy(&f[1..]).into_owned());
        }
    }
    None
}

/// Connects and completes startup (trust authentication).
async fn ready_connection(port: u16) -> TcpStream {
    let mut sock = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    sock.write_all(&startup_message()).await.expect("startup");
    read_until_ready(&mut sock).await;
    sock
}

/// Sends `bytes` after startup (or instead of it when `with_startup` is
/// false) and expects a FATAL 08P01 ErrorResponse and the close.
async fn expect_protocol_violation(port: u16, case: &str, with_startup: bool, bytes: &[u8]) {
    let mut sock = if with_startup {
        ready_connection(port).await
    } else {
        TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect")
    };
    sock.write_all(bytes).await.expect("write");
    let (frames, closed) = read_until_close(&mut sock, Duration::from_secs(10)).await;
    let errors: Vec<_> = frames
        .iter()
        .filter(|(k, _)| *k == b'E')
        .filter_map(|(_, b)| sqlstate(b))
        .collect();
    assert!(
        errors.iter().any(|c| c == "08P01"),
        "{case}: expected an 08P01 ErrorResponse, got {errors:?} ({} frames)",
        frames.len()
    );
    assert!(closed, "{case}: the server should close the connection");
}

async fn sentinel_answers(c: &tokio_postgres::Client, server: &TestServer) {
    let t = Instant::now();
    let rows = tokio::time::timeout(Duration::from_secs(5), simple_rows(c, "SELECT 1"))
        .await
        .unwrap_or_else(|_| panic!("sentinel SELECT 1 hung\n{}", server.log_tail(40)));
    assert_eq!(rows[0][0].as_deref(), Some("1"));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "sentinel took {:?}",
        t.elapsed()
    );
}

fn assert_no_panic(server: &TestServer) {
    let log = server.log_contents();
    assert!(
        !log.contains("panicked"),
        "the server log shows a panic:\n{}",
        server.log_tail(60)
    );
}

#[tokio::test]
async fn each_malformed_message_type_is_08p01_and_closes_only_its_connection() {
    let server = TestServer::start();
    let port = server.port();
    let sentinel = server.client().await;

    let mut parse_short_types = cstr("");
    parse_short_types.extend(cstr("SELECT $1"));
    parse_short_types.extend_from_slice(&5u16.to_be_bytes()); // 5 types, none follow
    let mut bind_negative = cstr("");
    bind_negative.extend(cstr(""));
    bind_negative.extend_from_slice(&0u16.to_be_bytes());
    bind_negative.extend_from_slice(&1u16.to_be_bytes());
    bind_negative.extend_from_slice(&(-7i32).to_be_bytes());
    let mut bind_long_value = cstr("");
    bind_long_value.extend(cstr(""));
    bind_long_value.extend_from_slice(&0u16.to_be_bytes());
    bind_long_value.extend_from_slice(&1u16.to_be_bytes());
    bind_long_value.extend_from_slice(&1000i32.to_be_bytes());
    bind_long_value.extend_from_slice(b"abc");
    let parse_ok = message(b'P', &parse_body("", "SELECT $1::int", &[0]));

    let cases: Vec<(&str, bool, Vec<u8>)> = vec![
        // Parse
        (
            "Parse: parameter type count past the end",
            true,
            message(b'P', &parse_short_types),
        ),
        (
            "Parse: query string without NUL",
            true,
            message(b'P', b"\0SELECT 1"),
        ),
        (
            "Parse: truncated type count",
            true,
            message(b'P', b"\0SELECT 1\0\x01"),
        ),
        // Bind
        (
            "Bind: negative value length",
            true,
            [parse_ok.clone(), message(b'B', &bind_negative)].concat(),
        ),
        (
            "Bind: value length past the end",
            true,
            [parse_ok.clone(), message(b'B', &bind_long_value)].concat(),
        ),
        (
            "Bind: truncated parameter count",
            true,
            message(b'B', b"\0\0\0\0\x00"),
        ),
        (
            "Bind: 3 parameter formats for 1 parameter",
            true,
            [
                parse_ok.clone(),
                message(b'B', &bind_body("", &[0, 0, 0], &[Some(b"1")], &[])),
            ]
            .concat(),
        ),
        // Execute
        (
            "Execute: row limit missing",
            true,
            message(b'E', b"\0\x00\x01"),
        ),
        (
            "Execute: portal name without NUL",
            true,
            message(b'E', b"abc"),
        ),
        // Describe
        ("Describe: empty body", true, message(b'D', b"")),
        ("Describe: unknown target", true, message(b'D', b"X\0")),
        // Close
        ("Close: empty body", true, message(b'C', b"")),
        ("Close: name without NUL", true, message(b'C', b"Sabc")),
        // Query / length words
        ("Query: no NUL", true, message(b'Q', b"SELECT 1")),
        ("Query: length below 4", true, vec![b'Q', 0, 0, 0, 2, 0]),
        (
            "Query: negative length",
            true,
            vec![b'Q', 0xff, 0xff, 0xff, 0xf0, 0],
        ),
        ("unknown message type", true, message(b'!', b"junk")),
        // CopyData / CopyFail inside COPY FROM STDIN
        (
            "CopyFail: message without NUL",
            true,
            [
                message(b'Q', &cstr("COPY contacts (id) FROM STDIN")),
                message(b'f', b"oops"),
            ]
            .concat(),
        ),
        (
            "CopyData: length below 4",
            true,
            [
                message(b'Q', &cstr("COPY contacts (id) FROM STDIN")),
                vec![b'd', 0, 0, 0, 1],
            ]
            .concat(),
        ),
        // startup
        ("startup: length below 8", false, vec![0, 0, 0, 5, 0]),
        ("startup: protocol 9.0", false, {
            let mut m = startup_message();
            m[4] = 0;
            m[5] = 9;
            m
        }),
        (
            "startup: negative length",
            false,
            vec![0xff, 0xff, 0xff, 0x00, 0, 3, 0, 0],
        ),
    ];
    for (case, with_startup, bytes) in &cases {
        expect_protocol_violation(port, case, *with_startup, bytes).await;
        sentinel_answers(&sentinel, &server).await;
    }
    // nothing was applied by the abandoned COPYs
    let rows = simple_rows(&sentinel, "SELECT count(*) FROM contacts").await;
    assert_eq!(rows[0][0].as_deref(), Some("0"));
    assert_no_panic(&server);
}

/// A valid extended-protocol exchange, as separate messages.
fn valid_stream(rng: &mut StdRng) -> Vec<Vec<u8>> {
    match rng.random_range(0..4) {
        0 => vec![message(b'Q', &cstr("SELECT 1, 'a'::text"))],
        1 => vec![
            message(
                b'P',
                &parse_body("s1", "SELECT $1::int + 1, $2::text", &[23, 25]),
            ),
            message(
                b'B',
                &bind_body("s1", &[0, 1], &[Some(b"41"), Some(b"x")], &[1, 0]),
            ),
            message(b'D', b"P\0"),
            message(b'E', &execute_body("", 0)),
            message(b'C', b"Ss1\0"),
            message(b'S', b""),
        ],
        2 => vec![
            message(
                b'P',
                &parse_body("", "SELECT id FROM contacts WHERE id = $1", &[20]),
            ),
            message(b'D', b"S\0"),
            message(
                b'B',
                &bind_body("", &[1], &[Some(&7i64.to_be_bytes())], &[1]),
            ),
            message(b'E', &execute_body("", 1)),
            message(b'H', b""),
            message(b'S', b""),
        ],
        _ => vec![
            message(b'Q', &cstr("COPY contacts (id, name) FROM STDIN")),
            message(b'd', b"100\tfuzz\n"),
            message(b'c', b""),
        ],
    }
}

/// One field-level mutation of one message of the stream.
fn mutate(rng: &mut StdRng, msg: &mut Vec<u8>) {
    let len = msg.len();
    match rng.random_range(0..7) {
        // flip a byte of the body
        0 if len > 5 => {
            let i = rng.random_range(5..len);
            msg[i] ^= 1 << rng.random_range(0..8);
        }
        // overwrite a 16- or 32-bit field of the body with an extreme value
        1 if len > 9 => {
            let i = rng.random_range(5..len - 4);
            let v: [u8; 4] = match rng.random_range(0..4) {
                0 => (-1i32).to_be_bytes(),
                1 => i32::MAX.to_be_bytes(),
                2 => (-2i32).to_be_bytes(),
                _ => 0x7fff_0000i32.to_be_bytes(),
            };
            let width = if rng.random_bool(0.5) { 2 } else { 4 };
            msg[i..i + width].copy_from_slice(&v[..width]);
        }
        // truncate the body, keeping the length word consistent
        2 if len > 5 => {
            let keep = rng.random_range(5..len);
            msg.truncate(keep);
            let l = (keep - 1) as i32;
            msg[1..5].copy_from_slice(&l.to_be_bytes());
        }
        // the length word lies
        3 => {
            let l: i32 = match rng.random_range(0..4) {
                0 => rng.random_range(0..4),
                1 => -rng.random_range(1..1000),
                2 => (len as i32 - 1) - rng.random_range(1..4),
                _ => rng.random_range(4..64),
            };
            msg[1..5].copy_from_slice(&l.to_be_bytes());
        }
        // the type byte changes
        4 => msg[0] = rng.random(),
        // random bytes appended inside the frame
        5 => {
            let extra: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
            msg.extend_from_slice(&extra);
            let l = (msg.len() - 1) as i32;
            msg[1..5].copy_from_slice(&l.to_be_bytes());
        }
        // a random frame instead
        _ => {
            let body: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            *msg = message(rng.random(), &body);
        }
    }
}

#[tokio::test]
async fn structure_aware_fuzzing_never_panics_and_the_sentinel_keeps_answering() {
    let server = TestServer::start();
    let port = server.port();
    let sentinel = server.client().await;
    let cases: usize = std::env::var("COHORTDB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let mut rng = StdRng::seed_from_u64(20261207);
    let mut closed_by_server = 0usize;
    for case in 0..cases {
        let mut stream = valid_stream(&mut rng);
        let target = rng.random_range(0..stream.len());
        mutate(&mut rng, &mut stream[target]);
        let bytes = stream.concat();
        let mut sock = ready_connection(port).await;
        // a write may fail once the server has closed: that is an answer too
        let _ = sock.write_all(&bytes).await;
        // end our side; a frame still waiting for bytes then ends with EOF
        let _ = sock.shutdown().await;
        let (_, closed) = read_until_close(&mut sock, Duration::from_secs(10)).await;
        assert!(
            closed,
            "case {case}: the server neither answered nor closed within 10 s: {bytes:?}"
        );
        closed_by_server += 1;
        if case % 25 == 0 {
            sentinel_answers(&sentinel, &server).await;
        }
    }
    sentinel_answers(&sentinel, &server).await;
    assert_no_panic(&server);
    eprintln!("protocol fuzz: {cases} cases, {closed_by_server} connections ended cleanly");
}
