"""The output: Delta tables (delta), files through pyarrow.fs (storage, storage_options), and
the commands that keep and cite the tables (compact, snapshot)."""
