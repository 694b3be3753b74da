"""Phase 2: the cache -> pyarrow Tables -> Delta tables (or plain Parquet datasets)."""
