//! Limits that protect the gateway itself: requests in flight per listener and per route
//! (`max_concurrent_requests`) and client connections per listener (`max_connections`). Past a
//! limit the newcomer is refused at once — there is no queue, so an overload costs the gateway a
//! refusal, never memory or a growing wait.
//!
//! Each count is its metric's gauge: one number, so the metric can never disagree with what the
//! limit admitted. The gauges live in the gateway's metric families, keyed by listener or route
//! name, which outlive every config: a reload that keeps a name keeps its count, so the requests
//! still running under the old config are counted against the new limit.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One count under a limit: a listener's or a route's requests in flight, a listener's open
/// connections. Cheap to clone (the clones share the count).
#[derive(Clone, Debug, Default)]
pub struct Gate {
    in_flight: Gauge,
    refused: Counter,
}

impl Gate {
    /// One more in flight, if that stays within `max`; else the refusal is counted and `None`.
    ///
    /// Counted first and given back when over: two arrivals racing for the last place can both
    /// be refused, never both admitted.
    pub fn try_enter(&self, max: u32) -> Option<Permit> {
        let before = self.in_flight.inc();
        if before >= i64::from(max) {
            self.in_flight.dec();
            self.refused.inc();
            return None;
        }
        Some(Permit(self.in_flight.clone()))
    }

    /// One more in flight, whatever the count (what has no limit is still counted).
    pub fn enter(&self) -> Permit {
        self.in_flight.inc();
        Permit(self.in_flight.clone())
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }
}

/// A place under a [`Gate`], given back when dropped.
#[derive(Debug)]
pub struct Permit(Gauge);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The places one request holds: its listener's and its route's, each taken only where a limit
/// is set. They ride with the request's record and are given back when its response body ends.
#[derive(Debug, Default)]
pub struct Admitted {
    pub listener: Option<Permit>,
    pub route: Option<Permit>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// The gauges and refusal counters, by listener name and route name (the limit is per route, and
/// two routes may share a path template). Both come from the config: labels stay bounded.
pub struct ConcurrencyMetrics {
    listener_requests: Family<ListenerLabels, Gauge>,
    listener_refused: Family<ListenerLabels, Counter>,
    route_requests: Family<RouteLabels, Gauge>,
    route_refused: Family<RouteLabels, Counter>,
    connections: Family<ListenerLabels, Gauge>,
    connections_refused: Family<ListenerLabels, Counter>,
    /// Not a limit, but counted beside the open connections it is a part of.
    connections_parked: Family<ListenerLabels, Gauge>,
}

impl ConcurrencyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            listener_requests: Family::default(),
            listener_refused: Family::default(),
            route_requests: Family::default(),
            route_refused: Family::default(),
            connections: Family::default(),
            connections_refused: Family::default(),
            connections_parked: Family::default(),
        };
        registry.register(
            "listener_requests_in_flight",
            "Requests in flight on each listener with limits.max_concurrent_requests",
            m.listener_requests.clone(),
        );
        registry.register(
            "listener_requests_overloaded",
            "Requests refused with 503 overloaded by the listener's limits.max_concurrent_requests",
            m.listener_refused.clone(),
        );
        registry.register(
            "route_requests_in_flight",
            "Requests in flight on each route with max_concurrent_requests",
            m.route_requests.clone(),
        );
        registry.register(
            "route_requests_overloaded",
            "Requests refused with 503 overloaded by the route's max_concurrent_requests",
            m.route_refused.clone(),
        );
        registry.register(
            "listener_connections",
            "Client connections open on each listener",
            m.connections.clone(),
        );
        registry.register(
            "listener_connections_refused",
            "Client connections closed at accept by limits.max_connections",
            m.connections_refused.clone(),
        );
        registry.register(
            "listener_connections_parked",
            "Idle HTTP/1.1 client connections parked on each listener: the socket kept, the HTTP \
             connection's buffers and state freed until the client's next bytes",
            m.connections_parked.clone(),
        );
        m
    }

    /// The requests in flight on listener `name`.
    pub fn listener(&self, name: &str) -> Gate {
        let labels = ListenerLabels {
            listener: name.to_string(),
        };
        Gate {
            in_flight: self.listener_requests.get_or_create(&labels).clone(),
            refused: self.listener_refused.get_or_create(&labels).clone(),
        }
    }

    /// The requests in flight on route `name`.
    pub fn route(&self, name: &str) -> Gate {
        let labels = RouteLabels {
            route: name.to_string(),
        };
        Gate {
            in_flight: self.route_requests.get_or_create(&labels).clone(),
            refused: self.route_refused.get_or_create(&labels).clone(),
        }
    }

    /// The connections open on listener `name`.
    pub fn connections(&self, name: &str) -> Gate {
        let labels = ListenerLabels {
            listener: name.to_string(),
        };
        Gate {
            in_flight: self.connections.get_or_create(&labels).clone(),
            refused: self.connections_refused.get_or_create(&labels).clone(),
        }
    }

    /// The connections parked on listener `name` (a part of those open).
    pub fn parked(&self, name: &str) -> Gauge {
        let labels = ListenerLabels {
            listener: name.to_string(),
        };
        self.connections_parked.get_or_create(&labels).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_admits_up_to_its_limit_and_refuses_the_next_until_a_place_frees() {
        let gate = Gate::default();
        let a = gate.try_enter(2).expect("first");
        let _b = gate.try_enter(2).expect("second");
        assert!(gate.try_enter(2).is_none(), "the third is refused");
        assert_eq!(gate.in_flight(), 2, "a refusal leaves the count as it was");
        assert_eq!(gate.refused.get(), 1);
        drop(a);
        assert_eq!(gate.in_flight(), 1);
        assert!(gate.try_enter(2).is_some(), "a freed place is taken again");
        // A lower limit after a reload: what is in flight counts against it.
        assert!(gate.try_enter(1).is_none());
    }

    #[test]
    fn clones_share_one_count() {
        let gate = Gate::default();
        let other = gate.clone();
        let _held = gate.enter();
        assert_eq!(other.in_flight(), 1);
        assert!(other.try_enter(1).is_none());
    }
}
