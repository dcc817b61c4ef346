"""Task registry, offline suites and the Parquet image tables every stage reads."""
