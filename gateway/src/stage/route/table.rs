//! The route table: finds the best route for a request. (Interface stub: the routing helper fills it in.)

use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::config::CompiledRoute;

/// The parts of a request routing looks at. `path` is already normalized.
pub struct RouteQuery<'a> {
    pub method: &'a Method,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<CompiledRoute>>,
}

impl RouteTable {
    pub fn new(routes: Vec<Arc<CompiledRoute>>) -> Self {
        Self { routes }
    }

    pub fn routes(&self) -> &[Arc<CompiledRoute>] {
        &self.routes
    }

    pub fn lookup(&self, query: &RouteQuery<'_>) -> Option<&Arc<CompiledRoute>> {
        self.routes.iter().find(|r| r.pattern.matches(query.path))
    }
}

/// The order in which routes are tried: priority (high first), then specificity (more specific
/// first), then declaration order.
pub fn route_order(a: &CompiledRoute, b: &CompiledRoute) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| a.declaration_index.cmp(&b.declaration_index))
}
