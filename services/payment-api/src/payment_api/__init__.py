"""Queue, reservation and payment API of the ticketing system."""
