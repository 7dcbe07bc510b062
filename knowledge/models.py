"""ORM models of the knowledge base."""
