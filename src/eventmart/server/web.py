"""The web app `eventmart serve` answers with: every dashboard, the Runs page and the Alerts page on one Flask
server, the report folders, basic auth and the Host allow-list."""

from __future__ import annotations

import base64
import hmac
import ipaddress
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import flask

from ..dashboards.app import DashboardApp

if TYPE_CHECKING:
    from ..workspace import Workspace

AUTH_USER, AUTH_PASSWORD = "EVENTMART_DASH_USER", "EVENTMART_DASH_PASSWORD"


def check_auth_env() -> tuple[str | None, str | None]:
    """(user, password) of basic auth. Half a configuration must not silently mean "no authentication"; `serve`
    checks it before anything opens."""
    from ..errors import UserError

    user, password = os.environ.get(AUTH_USER), os.environ.get(AUTH_PASSWORD)
    if bool(user) != bool(password):
        missing = AUTH_PASSWORD if user else AUTH_USER
        raise UserError(f"{AUTH_USER} and {AUTH_PASSWORD} go together: {missing} is not set; set both (basic auth) "
                        "or neither")
    return user, password


def create_server(project: Workspace, host: str = "127.0.0.1") -> flask.Flask:
    """The Flask server with every dashboard, the Runs page and the Alerts page mounted; checks every dashboard
    first."""
    from .runs_page import RunsApp

    user, password = check_auth_env()
    server = flask.Flask("eventmart")
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eventmart-query")
    apps = {n: DashboardApp(n, d, project, server, pool) for n, d in project.config.dashboards.items()}
    server.config["eventmart_apps"] = apps
    server.config["eventmart_runs"] = RunsApp(project, server)
    if project.config.marts:
        from ..dashboards.explore_page import ExploreApp

        server.config["eventmart_explore"] = ExploreApp(project, server, pool)
    if project.config.alerts:
        from ..alerts.page import AlertsApp

        server.config["eventmart_alerts"] = AlertsApp(project, server)
    first = next(iter(apps.values())).base if apps else "/runs/"

    from dash.exceptions import DependencyException

    @server.errorhandler(DependencyException)
    def unknown_asset(_e):  # a script that is not one of Dash's (a typo, or ../ probing): no 500, no asset list logged
        return "not found\n", 404, {"Content-Type": "text/plain"}

    @server.route("/")
    def index():
        return flask.redirect(first + (("?" + flask.request.query_string.decode()) if flask.request.query_string else ""))

    # report folders (HTML + PNG) of the file channels: what a Slack image block links to
    folders = [c.path for c in project.config.channels.values() if c.type == "file"] or ["reports"]
    report_root = (project.dir / folders[0]).resolve()

    @server.route("/reports/<path:sub>")
    def reports(sub: str):
        target = (report_root / sub).resolve()  # a symlink pointing out of the folder is not followed
        if not target.is_relative_to(report_root) or not target.is_file():
            flask.abort(404)
        return flask.send_file(target)

    from . import metrics, readapi

    readapi.register(server, project)
    server.config["eventmart_metrics"] = metrics.Metrics()
    metrics.register(server, project, server.config["eventmart_metrics"])

    @server.route("/healthz")
    def healthz():
        return {"ok": True, "dashboards": list(apps)}

    allowed = allowed_hosts(host)
    if allowed is not None:
        @server.before_request
        def host_header():
            # DNS rebinding: a page elsewhere that resolves its own name to 127.0.0.1 must not reach the server
            name = flask.request.host.rsplit(":", 1)[0] if not flask.request.host.startswith("[") else \
                flask.request.host.split("]")[0] + "]"
            if name.lower() not in allowed:
                return flask.Response("unknown Host header; set EVENTMART_ALLOWED_HOSTS to serve under this name",
                                      400)
            return None

    if user and password:
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

        def explore_links() -> bool:
            """Inside an embed link (its cookie let the viewer in, not a password) the explore page is out of
            reach: the dashboard offers no links to it."""
            got = flask.request.headers.get("Authorization", "")
            return hmac.compare_digest(got.encode(), expected.encode())

        for a in apps.values():
            a.explore_links = explore_links

        @server.before_request
        def basic_auth():
            path = flask.request.path
            if path in server.config.get("eventmart_public", ()) or readapi.public(path):
                return None  # the local API and the read API check their own tokens; embed links are signed
            if readapi.embedded(project.config, path, flask.request.cookies.get(readapi.EMBED_COOKIE)):
                return None
            got = flask.request.headers.get("Authorization", "")
            if not hmac.compare_digest(got.encode(), expected.encode()):
                return flask.Response("authentication required", 401,
                                      {"WWW-Authenticate": 'Basic realm="eventmart"'})
            return None

    return server


def allowed_hosts(host: str) -> set[str] | None:
    """Host names requests may use (None: any). On loopback: the loopback names and EVENTMART_ALLOWED_HOSTS."""
    extra = {h.strip().lower() for h in os.environ.get("EVENTMART_ALLOWED_HOSTS", "").split(",") if h.strip()}
    if is_loopback(host) or extra:
        return {"127.0.0.1", "localhost", "[::1]", "::1", host.lower()} | extra
    return None


def auth_configured() -> bool:
    return bool(os.environ.get(AUTH_USER) and os.environ.get(AUTH_PASSWORD))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


