"""Curator pages, one module per page group: sources and chunks, the vector index, search, and
the Ask page with its answers."""
