"""ranking-consumer: counts sold seats per schedule and ranks the sold-out schedules."""
