//! The simulator's one integration test binary: the canonical scenarios against the real
//! gateway, and the runner's own behaviour on bad and failing scenarios.

mod integration {
    mod canonical;
    mod cli_help;
    mod compare;
    mod grpc_fakes;
    mod grpc_tonic;
    mod import;
    mod issuer_token;
    mod loadgen;
    mod replay;
    mod replay_ci;
    mod replay_diff;
    mod replay_identity;
    mod replay_lab;
    mod replay_responses;
    mod replay_virtual;
    mod run_checks;
    mod run_reports;
    mod runner;
    mod tui;
    mod tui_policies;
    mod util;
}
