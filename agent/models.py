"""ORM models of the conversation engine."""
