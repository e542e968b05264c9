//! What the strict HTTP/1.1 guard adds per request: the head parser on a browser-like head
//! beside httparse (the parser hyper runs on the same bytes afterwards), the walk over a
//! connection's pipelined messages, and the chunked validator over a 64 KiB body.
//!
//! Quick run: `cargo bench -p gateway --bench wire -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::wire::chunked::ChunkedBody;
use gateway::wire::{HeadLimits, MessageStream, parse_request_head};

const LIMITS: HeadLimits = HeadLimits {
    max_uri_bytes: 8192,
    max_header_bytes: 16384,
    max_headers: 100,
};

const HEAD: &[u8] = b"GET /api/v1/users/12345?fields=name,email&expand=teams HTTP/1.1\r\n\
Host: api.example.test\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl\r\n\
X-Request-Id: 7f9c2a4e-1b3d-4c5e-9f8a-0b1c2d3e4f50\r\n\
Connection: keep-alive\r\n\r\n";

fn head(c: &mut Criterion) {
    let mut group = c.benchmark_group("head");
    group.throughput(Throughput::Bytes(HEAD.len() as u64));
    group.bench_function("strict", |b| {
        b.iter(|| parse_request_head(black_box(HEAD), &LIMITS).map(|h| h.len))
    });
    group.bench_function("httparse", |b| {
        b.iter(|| {
            let mut fields = [httparse::EMPTY_HEADER; 100];
            let mut request = httparse::Request::new(&mut fields);
            request.parse(black_box(HEAD)).map(|s| s.is_complete())
        })
    });
    group.finish();
}

fn stream(c: &mut Criterion) {
    let mut pipelined = Vec::new();
    for _ in 0..16 {
        pipelined.extend_from_slice(HEAD);
    }
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(16));
    group.bench_function("16 pipelined heads", |b| {
        b.iter(|| MessageStream::new(LIMITS).feed(black_box(&pipelined)))
    });
    group.finish();
}

fn chunked(c: &mut Criterion) {
    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(b"1000\r\n");
        body.extend(std::iter::repeat_n(b'x', 4096));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut group = c.benchmark_group("chunked");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("64 KiB in 4 KiB chunks", |b| {
        b.iter(|| ChunkedBody::new().feed(black_box(&body)))
    });
    group.finish();
}

criterion_group!(benches, head, stream, chunked);
criterion_main!(benches);
