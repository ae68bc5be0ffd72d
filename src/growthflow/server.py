"""Running an ASGI app with uvicorn in a background thread, on 127.0.0.1 (tests, benchmarks)."""

from __future__ import annotations

import threading

from fastapi import FastAPI


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
