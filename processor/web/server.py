"""The console's HTTP server inside `rosterdrop serve`: uvicorn on a thread of the daemon.

The socket is bound here, in the daemon's own thread, so a port in use fails the start with one line;
uvicorn then serves it on its own thread and event loop. uvicorn installs signal handlers only on the
main thread, which stays the daemon's: SIGTERM reaches the daemon, which calls stop() (should_exit).
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from processor.context import Context, UserError

log = logging.getLogger("rosterdrop.web")


class WebServer:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.host = ctx.config.web.host
        self.port = ctx.config.web.port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from processor.web.app import create_app

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise UserError(f"cannot listen on {self.host}:{self.port} for the web console: {exc.strerror or exc}; "
                            "set [web] port (or ROSTERDROP_WEB__PORT), or [web] enabled = false") from None
        sock.listen(128)
        self.port = sock.getsockname()[1]
        # access_log off: request lines carry signed tokens (/hold/<token>), which are never logged.
        config = uvicorn.Config(create_app(self.ctx), log_config=None, access_log=False, lifespan="off",
                                server_header=False, timeout_graceful_shutdown=3)
        self._server = uvicorn.Server(config)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="web",
                                        daemon=True)
        self._thread.start()
        log.info("web console on http://%s:%d (links use %s)", self.host, self.port, self.ctx.config.web.base_url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
