//! The replay report: text, JSON, and merging the reports of `--shard` runs.
