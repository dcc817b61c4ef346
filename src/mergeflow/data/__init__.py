"""Task registries, offline suites (vision and text) and the Parquet image and text tables every stage reads."""
