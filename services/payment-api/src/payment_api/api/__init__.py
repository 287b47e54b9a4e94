"""HTTP API: FastAPI app factory, routes, RFC 9457 problem responses."""
