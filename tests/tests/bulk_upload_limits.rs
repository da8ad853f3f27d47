//! NDJSON bulk uploads are read as a stream with bounded memory, and a server runs only so many at once: over HTTP
//! (chunked request bodies written by hand, so the test decides when each piece arrives) against a real server on
//! the embedded pipeline and a real Postgres.

use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{ALL_ROLES, TestDatabase, TestServer, embedded_pipeline, seeded};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const BULK_UPLOAD: &str = "/FHIR/R5/Observation/$bulk-upload";
const SYSTEM: &str = "https://example.org/test-uuid";

struct Fixture {
    server: TestServer,
    ingest: jhe_ingest::Ingestor,
    slots: Arc<Semaphore>,
    stop: tokio_util::sync::CancellationToken,
    _tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
    peter: i64,
    carex: i64,
    token: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A server on the embedded pipeline that runs at most `slots` bulk uploads at once.
async fn fixture(slots: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut plane = jhe_api::pipeline::start(&embedded_pipeline(dir.path()), db.pool.clone(), ALL_ROLES, stop.clone())
        .await
        .unwrap();
    let ingest = plane.ingest.take().unwrap();
    let query = plane.query.take();
    let slots = Arc::new(Semaphore::new(slots));
    let server = TestServer::start_configured(db, |state| {
        state.ingest = Some(ingest.clone());
        state.query = query;
        state.bulk_uploads = Arc::clone(&slots);
    })
    .await
    .unwrap();
    let user = server.id_of("users", "email", seeded::PETER).await;
    let peter = server.id_of("patients", "user_id::text", &user.to_string()).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let token = server.token(seeded::PETER).await;
    Fixture { server, ingest, slots, stop, _tasks: plane.tasks, _dir: dir, peter, carex, token }
}

impl Fixture {
    /// One NDJSON line: a valid heart-rate Observation with identifier `uuid`, padded with spaces to `width` bytes.
    fn line(&self, uuid: &str, minute: u32, width: usize) -> Vec<u8> {
        let point = omh::heart_rate(uuid, minute % 1440, 60.0 + f64::from(minute % 40));
        let mut line =
            omh::observation(self.peter, self.carex, HEART_RATE, &point, Some(uuid)).to_string().into_bytes();
        line.resize(width.max(line.len()), b' ');
        line.push(b'\n');
        line
    }

    async fn identifiers_like(&self, prefix: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM observation_identifiers WHERE system = $1 AND value LIKE $2")
            .bind(SYSTEM)
            .bind(format!("{prefix}%"))
            .fetch_one(&self.server.db.pool)
            .await
            .unwrap()
    }

    /// Waits until the processor published `rows` rows, then checks that no more came.
    async fn assert_published_exactly(&self, rows: i64) {
        let published = self.server.wait_for_published_rows(rows, Duration::from_secs(120)).await;
        assert_eq!(published, rows, "published rows");
        let consumed: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM log_positions")
            .fetch_one(&self.server.db.pool)
            .await
            .unwrap();
        assert_eq!(consumed, rows, "records in the log");
    }
}

/// A bulk upload over one connection with a chunked body, written piece by piece.
struct ChunkedUpload {
    stream: TcpStream,
    sent: usize,
}

impl ChunkedUpload {
    async fn start(addr: SocketAddr, token: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {BULK_UPLOAD} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/fhir+ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        Self { stream, sent: 0 }
    }

    async fn send(&mut self, piece: &[u8]) {
        if piece.is_empty() {
            return;
        }
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        self.stream.write_all(&chunk).await.unwrap();
        self.sent += piece.len();
    }

    /// Reads an answer that comes before the body ended (a refusal).
    async fn answer_before_the_end(mut self) -> Answer {
        read_answer(&mut self.stream).await
    }

    /// Ends the body and reads the answer.
    async fn finish(mut self) -> Answer {
        self.stream.write_all(b"0\r\n\r\n").await.unwrap();
        read_answer(&mut self.stream).await
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body (or a body up to the connection's end).
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut piece = [0u8; 8192];
        let read = stream.read(&mut piece).await.unwrap();
        assert!(read > 0, "the connection closed before the answer's head");
        buffer.extend_from_slice(&piece[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok()).unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut body = buffer[head_end + 4..].to_vec();
    let length = headers.iter().find(|(key, _)| key.eq_ignore_ascii_case("content-length"));
    match length.and_then(|(_, value)| value.parse::<usize>().ok()) {
        Some(length) => {
            while body.len() < length {
                let mut piece = vec![0u8; length - body.len()];
                let read = stream.read(&mut piece).await.unwrap();
                assert!(read > 0, "the connection closed inside the answer's body");
                body.extend_from_slice(&piece[..read]);
            }
        }
        None => {
            stream.read_to_end(&mut body).await.unwrap();
        }
    }
    Answer { status, headers, body: serde_json::from_slice(&body).unwrap_or(Value::Null) }
}

#[tokio::test]
async fn a_large_upload_is_read_line_by_line_in_bounded_memory_and_every_line_answered() {
    let f = fixture(4).await;
    let mut upload = ChunkedUpload::start(f.server.addr, &f.token).await;
    // ~44 MiB of NDJSON, made as it is sent, in pieces of an odd size so that lines straddle pieces
    const LINES: usize = 11_000;
    const WIDTH: usize = 4_000;
    const PIECE: usize = 100_003;
    let (broken, blank, overlong, crlf) = (2, 5, 3_000, 7);
    let mut pending = Vec::new();
    let mut valid = 0;
    for number in 1..=LINES {
        match number {
            n if n == broken => pending.extend_from_slice(b"{broken\n"),
            n if n == blank => pending.extend_from_slice(b"   \n"),
            n if n == overlong => {
                // longer than any Observation may be: answered as too large, never held whole
                pending.extend_from_slice(b"{\"resourceType\": \"Observation\", \"note\": \"");
                pending.resize(pending.len() + 3 * 1024 * 1024, b'x');
                pending.extend_from_slice(b"\"}\n");
            }
            n => {
                let mut line = f.line(&format!("big-{n}"), n as u32, WIDTH);
                if n == crlf {
                    line.insert(line.len() - 1, b'\r');
                }
                pending.extend_from_slice(&line);
                valid += 1;
            }
        }
        while pending.len() >= PIECE {
            let rest = pending.split_off(PIECE);
            upload.send(&pending).await;
            pending = rest;
        }
    }
    upload.send(&pending).await;
    let sent = upload.sent;
    let answer = upload.finish().await;

    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let body = &answer.body;
    assert_eq!(body["received"], LINES - 1, "every non-blank line is answered");
    assert_eq!(body["accepted"], valid);
    assert_eq!(body["rejected"], 2);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!((errors[0]["line"].as_u64(), errors[0]["status"].as_u64()), (Some(broken as u64), Some(400)));
    assert_eq!((errors[1]["line"].as_u64(), errors[1]["status"].as_u64()), (Some(overlong as u64), Some(400)));
    let too_large = errors[1]["diagnostics"].as_str().unwrap();
    assert!(too_large.contains(&format!("at most {} bytes", jhe_schemas::fhir::MAX_OBSERVATION_BYTES)), "{too_large}");
    let ids = body["ids"].as_array().unwrap();
    assert_eq!(ids.len(), LINES - 1);
    // ids follow the non-blank lines: line 2 is index 1; the blank line 5 has none, so line n > 5 is index n - 2
    assert!(ids[broken - 1].is_null());
    assert!(ids[overlong - 2].is_null());
    assert_eq!(ids.iter().filter(|id| id.is_string()).count(), valid);

    // the bound: the server held at most one batch and one line of the body at a time, a fraction of what was sent
    let peak = f.ingest.bulk_peak_held_bytes();
    assert!(peak > 0, "the upload was measured");
    assert!(peak <= jhe_ingest::MAX_HELD_BYTES, "held {peak} bytes at once, bound {}", jhe_ingest::MAX_HELD_BYTES);
    assert!(sent >= 4 * jhe_ingest::MAX_HELD_BYTES, "the body ({sent} bytes) is several times the bound");

    // every acknowledged line is stored exactly once, nothing else
    assert_eq!(f.identifiers_like("big-").await, valid as i64);
    f.assert_published_exactly(valid as i64).await;
}

#[tokio::test]
async fn a_body_declared_larger_than_the_limit_is_refused_before_it_is_read() {
    let f = fixture(4).await;
    let mut stream = TcpStream::connect(f.server.addr).await.unwrap();
    let head = format!(
        "POST {BULK_UPLOAD} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/fhir+ndjson\r\n\
         Content-Length: {}\r\n\r\n",
        f.server.addr,
        f.token,
        jhe_ingest::MAX_NDJSON_BYTES + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&f.line("declared-1", 1, 0)).await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["resourceType"], "OperationOutcome");
    assert_eq!(f.identifiers_like("declared-").await, 0);
}

#[tokio::test]
async fn bulk_uploads_beyond_the_limit_answer_429_and_store_nothing() {
    const SLOTS: usize = 2;
    const EXTRA: usize = 3;
    const LINES: usize = 300;
    let f = fixture(SLOTS).await;

    // the allowed uploads start and keep their connections open, each having sent part of its body
    let mut running = Vec::new();
    for upload in 0..SLOTS {
        let mut body = ChunkedUpload::start(f.server.addr, &f.token).await;
        for line in 0..LINES / 2 {
            body.send(&f.line(&format!("ok-{upload}-{line}"), line as u32, 0)).await;
        }
        running.push(body);
    }
    let started = Instant::now();
    while f.slots.available_permits() > 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "the allowed uploads never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // more uploads while those run: refused with Retry-After right away, before any of their body is read
    for upload in 0..EXTRA {
        let mut body = ChunkedUpload::start(f.server.addr, &f.token).await;
        for line in 0..20 {
            body.send(&f.line(&format!("extra-{upload}-{line}"), line as u32, 0)).await;
        }
        let answer = body.answer_before_the_end().await;
        assert_eq!(answer.status, 429, "{:?}", answer.body);
        assert_eq!(answer.body["resourceType"], "OperationOutcome");
        let wait: u64 = answer.header("retry-after").expect("a Retry-After header").parse().unwrap();
        assert!(wait >= 1);
    }

    // the allowed ones finish and every line of theirs is acknowledged
    let mut accepted = 0;
    for (upload, mut body) in running.into_iter().enumerate() {
        for line in LINES / 2..LINES {
            body.send(&f.line(&format!("ok-{upload}-{line}"), line as u32, 0)).await;
        }
        let answer = body.finish().await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body["accepted"], LINES, "{:?}", answer.body["errors"]);
        accepted += LINES;
    }
    assert_eq!(f.slots.available_permits(), SLOTS, "every slot is given back");

    // nothing of the refused uploads is stored: no identifier claimed, nothing in the log or the files
    assert_eq!(f.identifiers_like("extra-").await, 0);
    assert_eq!(f.identifiers_like("ok-").await, accepted as i64);
    f.assert_published_exactly(accepted as i64).await;

    // with the slots free again, an upload goes through
    let mut body = ChunkedUpload::start(f.server.addr, &f.token).await;
    body.send(&f.line("after-0", 1, 0)).await;
    let answer = body.finish().await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 1);
}

#[tokio::test]
async fn an_upload_over_the_line_limit_keeps_what_was_stored_and_says_where_it_stopped() {
    let f = fixture(4).await;
    let limit = jhe_ingest::MAX_NDJSON_LINES;
    let send = |first: Option<Vec<u8>>| {
        let f = &f;
        async move {
            let mut upload = ChunkedUpload::start(f.server.addr, &f.token).await;
            let mut body = first.unwrap_or_else(|| b"{}\n".to_vec());
            body.extend(b"{}\n".repeat(limit - 1));
            body.extend(f.line("cap-over-1", 2, 0));
            body.extend(f.line("cap-over-2", 3, 0));
            for piece in body.chunks(65_521) {
                upload.send(piece).await;
            }
            upload.finish().await
        }
    };

    // nothing stored before the limit: the whole upload is refused, as a body read whole was
    let answer = send(None).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let refusal = answer.body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(refusal.contains(&format!("at most {limit} observations")), "{refusal}");

    // a stored line before the limit: answered, and the line over the limit says it and the rest were not stored
    let answer = send(Some(f.line("cap-in-1", 1, 0))).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["received"], limit + 1);
    assert_eq!(answer.body["accepted"], 1);
    assert_eq!(answer.body["ids"].as_array().unwrap().len(), limit + 1);
    let errors = answer.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), jhe_ingest::MAX_REPORTED_LINE_ERRORS + 1, "the first errors and the stop");
    let stop = errors.last().unwrap();
    assert_eq!(stop["line"], limit + 1);
    assert_eq!(stop["status"], 400);
    assert!(stop["diagnostics"].as_str().unwrap().contains("not stored"), "{stop}");
    assert_eq!(f.identifiers_like("cap-in-").await, 1);
    assert_eq!(f.identifiers_like("cap-over-").await, 0);
    f.assert_published_exactly(1).await;
}
