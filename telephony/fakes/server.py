"""Run an ASGI app with uvicorn on 127.0.0.1 (a free port) in a background thread.

Provider SDKs (twilio, ringcentral) are synchronous `requests` clients, so their fakes
must be real HTTP servers; this is the one place that starts and stops them.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp

STARTUP_TIMEOUT = 10.0


@dataclass(slots=True)
class RecordedRequest:
    """One HTTP request a fake received, kept for assertions."""

    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, list[str]] = field(default_factory=dict)
    json: Any = None
    status: int = 0


class LocalServer:
    """Serves `app` on `http://127.0.0.1:<free port>` from a daemon thread.

    Use as a context manager, or call `start()` / `stop()`; `base_url` has no trailing slash.
    """

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1") -> None:
        self._app = app
        self._host = host
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("server is not running; call start() first")
        return f"http://{self._host}:{self._port}"

    def start(self) -> Self:
        """Bind a free port, start serving, and wait until the server accepts connections."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-provider", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"local server on port {self._port} did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT)
        self._server = self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServedFake:
    """Mixin for a fake provider with an ASGI `app`: lets it run itself on a local port."""

    app: ASGIApp
    _local_server: LocalServer | None = None

    @property
    def base_url(self) -> str:
        if self._local_server is None:
            raise RuntimeError("fake is not running; call start() or use it as a context manager")
        return self._local_server.base_url

    def start(self) -> Self:
        if self._local_server is None:
            self._local_server = LocalServer(self.app).start()
        return self

    def stop(self) -> None:
        if self._local_server is not None:
            self._local_server.stop()
            self._local_server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
