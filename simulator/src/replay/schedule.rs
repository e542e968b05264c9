//! When each exchange is sent: pacing (as recorded, `--speed`, `--rate`, `--max-wait`, `--loop`)
//! and `--shard K/N` partitions by client.
