//! Response diffs against recorded responses, with noise learned from repeated baseline runs.
