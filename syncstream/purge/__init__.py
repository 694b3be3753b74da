"""Purges: an account leaves the study (withdrawal, or a deleted account) and everything
collected of it, or because of it, leaves the cache, the state and the Parquet output."""
