"""A music library into beat maps: many files at once with a cache and kept
versions (``batch``), and a folder kept up to date as files change (``watch``)."""
