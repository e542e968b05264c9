//! Two runs of one recording compared request by request: the config review of `--against`.
