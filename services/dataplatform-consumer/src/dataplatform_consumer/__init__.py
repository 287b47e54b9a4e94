"""dataplatform-consumer: sends every successful payment to the external data platform."""
