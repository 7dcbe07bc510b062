"""ASGI entry point for multi-process serving (`uvicorn hibachi.asgi:app --workers N`).

Needs `DATABASE_URL` and `REDIS_URL` set (migrations are run by `hibachi serve`/`migrate`).
"""

from hibachi.app import create_app
from hibachi.settings import Settings

app = create_app(Settings())
