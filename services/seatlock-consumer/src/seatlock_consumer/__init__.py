"""seatlock-consumer: the temporary seat hold in Redis, from ``reservation.created``."""
