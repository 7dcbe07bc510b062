"""Import every package's ORM models so the metadata is complete (Alembic, tests)."""

import agent.models
import booking_tools.models
import knowledge.models

__all__ = ["agent", "booking_tools", "knowledge"]
