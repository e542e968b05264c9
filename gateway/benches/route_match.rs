//! How `RouteTable::lookup` scales with the size of the table: 1, 100 and 10,000 routes shaped
//! like a real API (`/api/v{n}/svc{i}/items/{id}`, collection routes, per-service prefixes)
//! under one catch-all. Two paths per size: one served by a route generated last (deep in the
//! set) and one that only the catch-all answers. The linear reference scan is measured beside it
//! for contrast.
//!
//! Quick run: `cargo bench -p gateway --bench route_match -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gateway::config::compiled::{CompiledRoute, RouteAction};
use gateway::routing::pattern::RoutePattern;
use gateway::routing::table::{RouteQuery, RouteTable, lookup_reference};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

const SIZES: [usize; 3] = [1, 100, 10_000];

fn route(index: usize, pattern: &str, methods: &[Method], priority: i32) -> Arc<CompiledRoute> {
    Arc::new(CompiledRoute {
        name: Arc::from(format!("route-{index}")),
        declaration_index: index,
        priority,
        pattern: RoutePattern::parse(pattern).expect("bench patterns are valid"),
        template: Arc::from(pattern),
        methods: methods.to_vec(),
        host: None,
        headers: vec![],
        query: vec![],
        action: RouteAction::Respond {
            status: StatusCode::NOT_FOUND,
            detail: Arc::from("bench"),
        },
        rewrite: None,
        max_body_bytes: 1 << 20,
        max_concurrent_requests: None,
        websocket: false,
        grpc: false,
        forward_client_cert: false,
        deprecation: None,
    })
}

/// `total` routes: service routes in groups of four, then the catch-all `/*`.
fn routes(total: usize) -> Vec<Arc<CompiledRoute>> {
    let mut out = Vec::with_capacity(total);
    let mut i = 0;
    while out.len() + 1 < total {
        let service = i / 4;
        let version = service % 3 + 1;
        let base = format!("/api/v{version}/svc{service}");
        let (pattern, methods) = match i % 4 {
            0 => (
                format!("{base}/items/{{id}}"),
                vec![Method::GET, Method::PUT],
            ),
            1 => (format!("{base}/items"), vec![Method::GET, Method::POST]),
            2 => (format!("{base}/items/{{id}}/history"), vec![Method::GET]),
            _ => (format!("{base}/*"), vec![]),
        };
        out.push(route(out.len(), &pattern, &methods, 100));
        i += 1;
    }
    out.push(route(out.len(), "/*", &[], 0));
    out
}

/// A path that the last-generated `{id}` route serves (only the catch-all when there is none).
fn deep_path(routes: &[Arc<CompiledRoute>]) -> String {
    routes
        .iter()
        .rev()
        .find_map(|r| r.template.strip_suffix("/items/{id}"))
        .map_or_else(
            || "/api/v1/svc0/items/8675309".to_string(),
            |base| format!("{base}/items/8675309"),
        )
}

/// A typical GET: a host, a couple of headers and a query string the routes do not look at.
fn request<'a>(method: &'a Method, headers: &'a HeaderMap, path: &'a str) -> RouteQuery<'a> {
    RouteQuery {
        method,
        host: Some("api.example.com"),
        path,
        headers,
        query: Some("page=2"),
    }
}

fn bench_lookup(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(header::USER_AGENT, HeaderValue::from_static("bench/1.0"));
    let get = Method::GET;
    let miss = "/api/v2/unknown-service/items/42";

    let mut group = c.benchmark_group("route_lookup");
    for size in SIZES {
        let routes = routes(size);
        let deep = deep_path(&routes);
        let table = RouteTable::new(routes);

        let served = table.lookup(&request(&get, &headers, &deep));
        let expected = if size == 1 { "/*" } else { "/items/{id}" };
        assert!(
            served.is_some_and(|r| r.template.ends_with(expected)),
            "{deep} served by {:?}",
            served.map(|r| &r.template)
        );
        let caught = table.lookup(&request(&get, &headers, miss));
        assert_eq!(caught.map(|r| r.template.as_ref()), Some("/*"));

        group.bench_function(BenchmarkId::new("trie/deep", size), |b| {
            b.iter(|| {
                let q = request(&get, &headers, black_box(&deep));
                table.lookup(&q).map(|r| r.declaration_index)
            })
        });
        group.bench_function(BenchmarkId::new("trie/catch_all", size), |b| {
            b.iter(|| {
                let q = request(&get, &headers, black_box(miss));
                table.lookup(&q).map(|r| r.declaration_index)
            })
        });
        group.bench_function(BenchmarkId::new("linear/deep", size), |b| {
            b.iter(|| {
                let q = request(&get, &headers, black_box(&deep));
                lookup_reference(table.routes(), &q).map(|r| r.declaration_index)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_lookup);
criterion_main!(benches);
