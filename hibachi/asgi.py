"""ASGI entry point for multi-process serving (`uvicorn hibachi.asgi:app --workers N`).

Needs `DATABASE_URL` and `REDIS_URL` set (migrations are run by `hibachi serve`/`migrate`);
`hibachi serve --workers N` sets them (embedded servers included) and
`PROMETHEUS_MULTIPROC_DIR`, so /metrics sums every worker.
"""

from hibachi.app import configure_logging, create_app
from hibachi.settings import Settings

configure_logging()  # a worker process is spawned afresh: the parent's logging set-up is not inherited
app = create_app(Settings())
