//! The views of the TUI and their Tab order, apart from the state so drawing and key handling
//! name a view the same way.

/// The four views, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Pipeline,
    Feed,
    Latency,
    Compare,
}

impl View {
    pub const ALL: [View; 4] = [View::Pipeline, View::Feed, View::Latency, View::Compare];

    pub const fn title(self) -> &'static str {
        match self {
            View::Pipeline => "Pipeline",
            View::Feed => "Requests",
            View::Latency => "Latency",
            View::Compare => "Compare",
        }
    }

    fn index(self) -> usize {
        match self {
            View::Pipeline => 0,
            View::Feed => 1,
            View::Latency => 2,
            View::Compare => 3,
        }
    }

    pub(super) fn next(self) -> Self {
        View::ALL[(self.index() + 1) % 4]
    }

    pub(super) fn previous(self) -> Self {
        View::ALL[(self.index() + 3) % 4]
    }
}
