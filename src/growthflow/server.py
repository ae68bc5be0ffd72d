"""Running an ASGI app with uvicorn in a background thread, on 127.0.0.1 (tests, benchmarks)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse


class BackgroundServer:
    """Run an app with uvicorn on 127.0.0.1 in a thread (tests and benchmarks)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.app = app
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            threading.Event().wait(0.01)
        else:
            raise RuntimeError("the server did not start")
        return self

    @property
    def base_url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The IHC endpoint (for servers made by ``ihc_server.create_app``)."""
        return f"{self.base_url}/v1/compute_ihc"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before it is read
    whole (by its Content-Length, or while a chunked body streams in), so a huge body costs
    neither memory nor the other requests' time. ``shape`` makes the answer's JSON from its
    message (an API with its own error shape); a body cut off while streaming is answered by
    the app's own HTTPException handler."""

    def __init__(self, app, max_bytes: int, shape: Callable[[str], dict] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.shape = shape or (lambda message: {"detail": message})

    def _refusal(self) -> str:
        return f"request body larger than {self.max_bytes:,} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(self.shape(self._refusal()), status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._refusal())  # answered by FastAPI
            return message

        return await self.app(scope, limited_receive, send)
