"""compensator: undoes what a failed payment left behind in the database."""
