//! Our HTTP/1.1 client exchange against a scripted upstream on a real loopback socket: framing
//! by length, chunks and close, interim answers, `HEAD`, and when a connection goes home.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Connection, ConnectionHome, Http1Body, SendError, UpstreamIo};

impl UpstreamIo for TcpStream {
    fn sending(&mut self, _method: &Method) {}

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

#[derive(Default)]
struct Home {
    back: Mutex<Vec<Connection>>,
}

impl ConnectionHome for Home {
    fn take_back(&self, connection: Connection) {
        self.back.lock().push(connection);
    }
}

impl Home {
    fn count(&self) -> usize {
        self.back.lock().len()
    }

    fn take(&self) -> Connection {
        self.back.lock().pop().expect("a connection came home")
    }
}

/// One answer: its pieces, each written and flushed apart so the client reads them apart.
type Answer = Vec<&'static [u8]>;

/// An upstream that reads a request head, writes the next answer, and after the last answer
/// closes (or, with `linger`, waits for the client to close). Returns what heads it read.
async fn upstream(answers: Vec<Answer>, linger: bool) -> (TcpStream, JoinHandle<Vec<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut heads = Vec::new();
        for answer in answers {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if socket.read(&mut byte).await.expect("read") == 0 {
                    return heads;
                }
                head.push(byte[0]);
            }
            heads.push(head);
            for piece in answer {
                socket.write_all(piece).await.expect("write");
                socket.flush().await.expect("flush");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if linger {
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
        }
        heads
    });
    let client = TcpStream::connect(address).await.expect("connect");
    (client, server)
}

fn get(method: Method, path: &str, fields: &[(&str, &str)]) -> http::request::Parts {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in fields {
        request = request.header(*name, *value);
    }
    request.body(()).expect("request").into_parts().0
}

/// One exchange with a fresh upstream that gives `answer` (then closes, or with `linger` waits
/// for the client to): the response head, or why there is none.
async fn exchange(
    answer: Answer,
    linger: bool,
    mut head: http::request::Parts,
    home: &Arc<Home>,
) -> Result<http::Response<Http1Body>, SendError> {
    let (client, _server) = upstream(vec![answer], linger).await;
    Connection::new(Box::new(client))
        .send(&mut head, home.clone())
        .await
}

async fn body_of(body: Http1Body) -> (Bytes, Option<http::HeaderMap>) {
    let collected = body.collect().await.expect("the body reads whole");
    let trailers = collected.trailers().cloned();
    (collected.to_bytes(), trailers)
}

#[tokio::test]
async fn a_length_framed_body_whole_with_its_head_sends_the_connection_home_at_once() {
    let first: Answer = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello"];
    let second: Answer = vec![b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"];
    let (client, server) = upstream(vec![first, second], true).await;
    let home = Arc::new(Home::default());
    let response = Connection::new(Box::new(client))
        .send(
            &mut get(Method::GET, "/a?b=c", &[("host", "x")]),
            home.clone(),
        )
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-a"], "1");
    assert_eq!(home.count(), 1, "home before the body is even read");
    assert_eq!(body_of(response.into_body()).await.0, "hello");

    let again = home
        .take()
        .send(&mut get(Method::GET, "/next", &[]), home.clone())
        .await
        .expect("a second response on the same connection");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert!(body_of(again.into_body()).await.0.is_empty());
    assert_eq!(home.count(), 1);
    drop(home);
    let heads = server.await.expect("server");
    assert_eq!(heads[0], b"GET /a?b=c HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(heads[1], b"GET /next HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn a_length_framed_body_in_pieces_goes_home_after_its_last_byte() {
    let answer: Answer = vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhel",
        b"lo wo",
        b"rld",
    ];
    let home = Arc::new(Home::default());
    let response = exchange(answer, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    assert_eq!(home.count(), 0);
    assert_eq!(body_of(response.into_body()).await.0, "hello world");
    assert_eq!(home.count(), 1);
}

#[tokio::test]
async fn a_chunked_body_split_across_reads_is_decoded_with_its_trailers() {
    let answer: Answer = vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
        b"lo\r\n6;name=value\r\n world\r",
        b"\n0\r\nx-sum: 7\r\n",
        b"\r\n",
    ];
    let home = Arc::new(Home::default());
    let response = exchange(answer, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    let (bytes, trailers) = body_of(response.into_body()).await;
    assert_eq!(bytes, "hello world");
    assert_eq!(trailers.expect("trailers")["x-sum"], "7");
    assert_eq!(home.count(), 1);
}

#[tokio::test]
async fn a_chunked_body_without_trailers_ends_with_its_last_chunk() {
    let answer: Answer =
        vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"];
    let home = Arc::new(Home::default());
    let response = exchange(answer, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    let (bytes, trailers) = body_of(response.into_body()).await;
    assert_eq!(bytes, "abc");
    assert!(trailers.is_none());
    assert_eq!(home.count(), 1);
}

#[tokio::test]
async fn a_body_framed_by_the_close_is_read_to_the_end_and_never_reused() {
    let answer: Answer = vec![b"HTTP/1.1 200 OK\r\n\r\nabc", b"def"];
    let home = Arc::new(Home::default());
    let response = exchange(answer, false, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    assert_eq!(body_of(response.into_body()).await.0, "abcdef");
    assert_eq!(home.count(), 0);
}

#[tokio::test]
async fn interim_answers_are_passed_over_for_the_final_one() {
    let answer: Answer = vec![
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nx-final: yes\r\n\r\n",
    ];
    let home = Arc::new(Home::default());
    let response = exchange(answer, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["x-final"], "yes");
    assert!(!response.headers().contains_key("link"));
    assert_eq!(home.count(), 1);
}

#[tokio::test]
async fn the_response_fills_the_requests_emptied_map_with_its_own_fields_only() {
    let answer: Answer = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-answer: 1\r\n\r\n"];
    let (client, _server) = upstream(vec![answer], true).await;
    let home = Arc::new(Home::default());
    let fields: Vec<(String, String)> = (0..40)
        .map(|i| (format!("x-asked-{i}"), i.to_string()))
        .collect();
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut head = get(Method::GET, "/", &borrowed);
    let response = Connection::new(Box::new(client))
        .send(&mut head, home.clone())
        .await
        .expect("a response");
    assert!(
        head.headers.is_empty(),
        "the request's map went to the response"
    );
    let names: Vec<&str> = response.headers().keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["content-length", "x-answer"]);
    assert!(response.headers().capacity() >= 40, "the map kept its room");
}

#[tokio::test]
async fn fields_about_this_connection_stay_with_the_client_and_others_go_on() {
    let answer: Answer = vec![
        b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\ncontent-length: 0\r\n\r\n",
    ];
    let home = Arc::new(Home::default());
    let response = exchange(answer, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    let names: Vec<&str> = response.headers().keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["content-length"]);
    drop(response);
    assert_eq!(home.count(), 1, "keep-alive: the connection went home");

    // A `Connection` that names another field goes on, so the proxy removes that field too;
    // its `close` still keeps the connection out of the pool.
    let naming: Answer = vec![
        b"HTTP/1.1 200 OK\r\nconnection: close, x-hop\r\nx-hop: 1\r\ncontent-length: 0\r\n\r\n",
    ];
    let home = Arc::new(Home::default());
    let response = exchange(naming, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    assert_eq!(response.headers()["connection"], "close, x-hop");
    assert_eq!(response.headers()["x-hop"], "1");
    drop(response);
    assert_eq!(home.count(), 0, "the upstream said close");

    let old: Answer =
        vec![b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"];
    let home = Arc::new(Home::default());
    let response = exchange(old, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    assert!(response.headers().get("connection").is_none());
    drop(response);
    assert_eq!(home.count(), 1, "HTTP/1.0 with keep-alive is reused");
}

#[tokio::test]
async fn a_head_request_has_no_body_whatever_its_length_says() {
    let answer: Answer = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"];
    let home = Arc::new(Home::default());
    let response = exchange(answer, true, get(Method::HEAD, "/", &[]), &home)
        .await
        .expect("a response");
    assert_eq!(response.headers()["content-length"], "100");
    let body = response.into_body();
    assert!(http_body::Body::is_end_stream(&body));
    assert!(body_of(body).await.0.is_empty());
    assert_eq!(home.count(), 1);
}

#[tokio::test]
async fn connection_close_on_either_side_keeps_the_connection_out_of_the_pool() {
    let closing: Answer =
        vec![b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"];
    let home = Arc::new(Home::default());
    let response = exchange(closing, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    assert_eq!(body_of(response.into_body()).await.0, "ok");
    assert_eq!(home.count(), 0, "the upstream said close");

    let plain: Answer = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"];
    let closing_request = get(Method::GET, "/", &[("connection", "close")]);
    let response = exchange(plain, true, closing_request, &home)
        .await
        .expect("a response");
    assert_eq!(body_of(response.into_body()).await.0, "ok");
    assert_eq!(home.count(), 0, "the request said close");

    let old: Answer = vec![b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"];
    let response = exchange(old, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    assert_eq!(response.version(), http::Version::HTTP_10);
    assert_eq!(body_of(response.into_body()).await.0, "ok");
    assert_eq!(home.count(), 0, "HTTP/1.0 without keep-alive");
}

#[tokio::test]
async fn the_request_head_drops_transfer_encoding_and_keeps_the_rest_in_order() {
    let answer: Answer = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"];
    let (client, server) = upstream(vec![answer], false).await;
    let home = Arc::new(Home::default());
    let mut head = get(
        Method::DELETE,
        "/items/7",
        &[
            ("host", "api.example"),
            ("transfer-encoding", "chunked"),
            ("x-b", "2"),
            ("x-a", "1"),
        ],
    );
    let response = Connection::new(Box::new(client))
        .send(&mut head, home.clone())
        .await
        .expect("a response");
    drop(response);
    drop(home);
    let heads = server.await.expect("server");
    assert_eq!(
        heads[0],
        b"DELETE /items/7 HTTP/1.1\r\nhost: api.example\r\nx-b: 2\r\nx-a: 1\r\n\r\n"
    );
}

#[tokio::test]
async fn a_head_arriving_a_byte_at_a_time_parses() {
    let bytes: &'static [u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-y: z\r\n\r\nabc";
    let answer: Answer = (0..bytes.len()).map(|i| &bytes[i..i + 1]).collect();
    let home = Arc::new(Home::default());
    let response = exchange(answer, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    assert_eq!(response.headers()["x-y"], "z");
    assert_eq!(body_of(response.into_body()).await.0, "abc");
    assert_eq!(home.count(), 1);
}

#[tokio::test]
async fn a_close_before_the_head_fails_the_exchange_and_one_mid_body_fails_the_body() {
    let home = Arc::new(Home::default());
    let failed = exchange(vec![], false, get(Method::GET, "/", &[]), &home).await;
    assert!(
        matches!(&failed, Err(SendError::Failed(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{:?}",
        failed.map(|r| r.status())
    );

    let short: Answer = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"];
    let response = exchange(short, false, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a head");
    let error = response
        .into_body()
        .collect()
        .await
        .expect_err("the body cannot end whole");
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(home.count(), 0);
}

#[tokio::test]
async fn a_malformed_head_or_chunk_size_is_an_error_not_a_guess() {
    let home = Arc::new(Home::default());
    let failed = exchange(
        vec![b"HTTP/1.1 2x0 OK\r\n\r\n"],
        true,
        get(Method::GET, "/", &[]),
        &home,
    )
    .await;
    assert!(
        matches!(&failed, Err(SendError::Failed(e)) if e.kind() == std::io::ErrorKind::InvalidData),
        "{:?}",
        failed.map(|r| r.status())
    );

    let bad_chunk: Answer = vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"];
    let response = exchange(bad_chunk, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a head");
    let error = response.into_body().collect().await.expect_err("refused");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(home.count(), 0);
}

#[tokio::test]
async fn an_idle_connection_is_reusable_until_the_upstream_closes_it() {
    let answer: Answer = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"];
    // The upstream closes once its one answer is written.
    let (client, server) = upstream(vec![answer], false).await;
    let home = Arc::new(Home::default());
    let response = Connection::new(Box::new(client))
        .send(&mut get(Method::GET, "/", &[]), home.clone())
        .await
        .expect("a response");
    drop(response);
    let mut connection = home.take();
    server.await.expect("server");
    let mut closed = false;
    for _ in 0..200 {
        if !connection.is_reusable() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(closed, "the upstream's close is seen without a request");

    let answer: Answer = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"];
    let response = exchange(answer, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    drop(response);
    let mut open = home.take();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(open.is_reusable(), "an open, quiet connection is reusable");
}

#[tokio::test]
async fn a_body_dropped_part_way_closes_its_connection() {
    let answer: Answer = vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"];
    let home = Arc::new(Home::default());
    let response = exchange(answer, true, get(Method::GET, "/", &[]), &home)
        .await
        .expect("a response");
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    assert_eq!(first.into_data().expect("data"), "abc");
    drop(body);
    assert_eq!(home.count(), 0);
}

/// The names a connection remembers from one response never stand in for another's: each
/// response on a kept connection has exactly the fields it was sent, whether its names repeat
/// the last response's, differ part way, or speak of the connection where a field stood before.
#[tokio::test]
async fn each_response_on_a_kept_connection_has_the_fields_it_was_sent() {
    let answers: Vec<Answer> = vec![
        vec![b"HTTP/1.1 200 OK\r\nServer: up\r\nX-One: 1\r\nContent-Length: 0\r\n\r\n"],
        vec![b"HTTP/1.1 200 OK\r\nServer: up\r\nX-One: 2\r\nContent-Length: 0\r\n\r\n"],
        vec![b"HTTP/1.1 200 OK\r\nServer: up\r\nX-Two: 3\r\nX-One: 4\r\nContent-Length: 0\r\n\r\n"],
        vec![
            b"HTTP/1.1 200 OK\r\nServer: up\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
        ],
        vec![b"HTTP/1.1 200 OK\r\nserver: up\r\nx-two: 5\r\ncontent-length: 0\r\n\r\n"],
    ];
    let expected: [&[(&str, &str)]; 5] = [
        &[("server", "up"), ("x-one", "1"), ("content-length", "0")],
        &[("server", "up"), ("x-one", "2"), ("content-length", "0")],
        &[
            ("server", "up"),
            ("x-two", "3"),
            ("x-one", "4"),
            ("content-length", "0"),
        ],
        &[("server", "up"), ("content-length", "0")],
        &[("server", "up"), ("x-two", "5"), ("content-length", "0")],
    ];
    let (client, _server) = upstream(answers, true).await;
    let home = Arc::new(Home::default());
    let mut connection = Connection::new(Box::new(client));
    for (i, fields) in expected.iter().enumerate() {
        let response = connection
            .send(&mut get(Method::GET, "/", &[]), home.clone())
            .await
            .unwrap_or_else(|_| panic!("response {i}"));
        let got: Vec<(&str, &str)> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().expect("text")))
            .collect();
        assert_eq!(&got, fields, "response {i}");
        drop(response);
        connection = home.take();
    }
}
