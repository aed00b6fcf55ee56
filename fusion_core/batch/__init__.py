"""Layer 4, dataset-scale runs: every weld × checkpoint into one resumable Parquet table.

`plan`: the welds of a folder or zip, read and prepared in worker processes; `store`: the
results on disk (columns, chunks, `read_results`, `read_maps`); `engines`, on top of both:
the model side, the local and Ray engines, `run_batch` and the `batch` subcommand.
"""
