"""Phase 2: the cache -> pyarrow Tables -> Parquet datasets."""
