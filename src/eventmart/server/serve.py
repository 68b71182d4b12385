"""One process: dashboards + Runs page (Dash), the scheduler thread, and the local API for other commands."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import api
from .scheduler import Clock, Scheduler
from .web import AUTH_PASSWORD, AUTH_USER, auth_configured, create_server, is_loopback

if TYPE_CHECKING:
    from ..project import Project


def _check_port(host: str, port: int) -> None:
    import errno
    import socket

    from ..errors import UserError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"cannot serve on {host}: {e.strerror}; pass --host with an address of this machine") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is in use (another eventmart serve, or another program); "
                                "pass --port N") from None
            raise UserError(f"cannot serve on {host}:{port}: {e.strerror}; pass --host/--port") from None


class Server:
    """Start with :meth:`start`, stop with :meth:`stop`; :func:`serve` runs one until Ctrl-C."""

    def __init__(self, project: Project, host: str = "127.0.0.1", port: int = 8050,
                 say: Callable[[str], None] = print, clock: Clock | None = None, scheduler: bool = True):
        from werkzeug.serving import make_server

        self.project, self.say = project, say
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        project.prepare()  # dashboards on marts that have no data yet still draw
        self.flask = create_server(project, host)
        if not is_loopback(host) and not auth_configured():
            say(f"warning: serving on {host} without authentication: anyone who can reach this machine sees the "
                f"dashboards; set {AUTH_USER} and {AUTH_PASSWORD}")
        _check_port(host, port)  # Werkzeug would print a paragraph and exit 1
        self.httpd = make_server(host, port, self.flask, threaded=True)
        self.port = self.httpd.server_port
        self.host = host
        token, self.state_file = api.write_state(project.dir, self.port)
        api.register(self.flask, project, token)
        self.scheduler = Scheduler(project, clock, say, self.flask.config["eventmart_metrics"]) \
            if scheduler and project.config.schedules else None
        from .stream import Publisher, Streams

        self.streams = Streams(project, say) if scheduler else None
        self.publisher = Publisher(project, say) if scheduler else None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> None:
        import threading

        if self.scheduler:
            self.scheduler.start()
        if self.streams:
            self.streams.start()
        if self.publisher:
            self.publisher.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="eventmart-http")
        self._thread.start()

    def stop(self) -> None:
        if self.publisher:
            self.publisher.stop()
        if self.streams:
            self.streams.stop()
        if self.scheduler:
            self.scheduler.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.state_file.unlink(missing_ok=True)


def serve(project: Project, host: str = "127.0.0.1", port: int = 8050, say: Callable[[str], None] = print) -> None:
    srv = Server(project, host, port, say)
    what = [f"dashboards {', '.join(project.config.dashboards)}" if project.config.dashboards else "",
            f"{len(project.config.schedules)} scheduled job(s)" if project.config.schedules else "",
            f"Kafka source(s) {', '.join(srv.streams.sources)}" if srv.streams and srv.streams.sources else ""]
    say(f"serving {'; '.join(w for w in what if w) or 'the local API'} at {srv.url}  (runs: {srv.url}runs/; "
        "Ctrl-C stops)")
    srv.start()
    t0 = time.time()
    stop = threading.Event()
    # Ctrl-C, or a service manager's SIGTERM: stop the scheduler between windows and remove server.json
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        say(f"stopping after {time.time() - t0:.0f}s")
        srv.stop()
