"""Plain domain rules: no database, Redis or Kafka in here."""
