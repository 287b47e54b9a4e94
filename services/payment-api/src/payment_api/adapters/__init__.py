"""Adapters at the edge: database tables and queries, Redis queue, Kafka outbox relay."""
