"""Regenerate the initial Alembic migration from the ORM models (pre-release only).

Until the first release, the schema lives in one migration. Run this after changing
a model: it diffs the models against an empty throwaway PostgreSQL.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from hibachi.embedded import start_postgres
from hibachi.migrate import MIGRATIONS, alembic_config

TARGET = MIGRATIONS / "versions" / "0001_initial.py"


def main() -> None:
    TARGET.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url, server = start_postgres(Path(tmp))
        try:
            async_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
            cfg = alembic_config(async_url)
            command.revision(cfg, message="initial", autogenerate=True, rev_id="0001")
        finally:
            server.cleanup()
    text = TARGET.read_text()
    text = text.replace(
        "def upgrade() -> None:\n",
        'def upgrade() -> None:\n    op.execute("CREATE EXTENSION IF NOT EXISTS vector")\n',
        1,
    )
    text = re.sub(r"Create Date: .*\n", "", text)
    if "pgvector.sqlalchemy" in text:  # autogenerate renders pgvector types but does not import them
        text = text.replace(
            "import sqlalchemy as sa\n", "import pgvector.sqlalchemy.vector\nimport sqlalchemy as sa\n", 1
        )
    TARGET.write_text(text)
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(TARGET)], check=True)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
