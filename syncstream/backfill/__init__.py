"""Backfill: a study user's history, read from the repository its PDS holds, routed like live
records into the same cache tree and datasets (``source = backfill``)."""
