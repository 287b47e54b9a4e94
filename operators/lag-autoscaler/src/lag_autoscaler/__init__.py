"""A kopf operator that scales a consumer Deployment on its Kafka consumer-group lag."""
