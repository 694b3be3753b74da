"""``syncstream report``: a self-contained HTML page with PNG plots of what a store collected,
readable offline: rows per day per table, coverage, the population over time, verification
outcomes, backfill progress. ``facts`` gathers the numbers, ``plots`` draws each figure (one
function per figure), ``page`` writes the HTML."""
