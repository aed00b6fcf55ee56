"""Layer 4, dataset-scale runs: every weld × checkpoint into one resumable Parquet table."""
