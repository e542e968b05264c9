//! The views of the TUI and their Tab order, apart from the state so drawing and key handling
//! name a view the same way. The Changed view exists only beside `replay --against` (see
//! [`super::App::views`]); the other four are always there.

/// The views, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Pipeline,
    Feed,
    Latency,
    Compare,
    /// The requests whose decision changed between two configs (`replay --against --tui`).
    Changed,
}

impl View {
    /// The views every TUI has.
    pub const ALL: [View; 4] = [View::Pipeline, View::Feed, View::Latency, View::Compare];
    /// The views of a replay comparing two configs.
    pub const WITH_CHANGES: [View; 5] = [
        View::Pipeline,
        View::Feed,
        View::Latency,
        View::Compare,
        View::Changed,
    ];

    pub const fn title(self) -> &'static str {
        match self {
            View::Pipeline => "Pipeline",
            View::Feed => "Requests",
            View::Latency => "Latency",
            View::Compare => "Compare",
            View::Changed => "Changed",
        }
    }

    fn index_in(self, views: &[View]) -> usize {
        views.iter().position(|v| *v == self).unwrap_or(0)
    }

    pub(super) fn next_in(self, views: &[View]) -> Self {
        views[(self.index_in(views) + 1) % views.len()]
    }

    pub(super) fn previous_in(self, views: &[View]) -> Self {
        views[(self.index_in(views) + views.len() - 1) % views.len()]
    }
}
