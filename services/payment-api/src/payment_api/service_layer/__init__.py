"""Use cases: each runs in one unit of work (one database transaction)."""
