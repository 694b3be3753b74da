"""Benchmarks: syncstream side by side with the seed's own path and with the physical floor."""
