"""``syncstream init``: a state store and its cache made before any writer runs, with the
study's population, so that a backfill can come first."""
