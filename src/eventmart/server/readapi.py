"""The read API: every mart and every dashboard chart as JSON or CSV over HTTP, and signed embed links.

``GET /api/v1/marts/<mart>`` answers measures (by name) per time bucket and dimension, with filters, a range,
a grain and paging; ``…/leaderboard/<dimension>`` and ``…/events`` are the explore page's leaderboards and drill;
``/api/v1/dashboards/<d>/charts/<c>`` is exactly what that chart shows (and its CSV holds) for the same URL state.
Every request carries ``Authorization: Bearer <token>``; a token (``api.tokens``) reads the dashboards and marts
it names, until it expires. No SQL comes in: measures and dimensions are names, values are bound parameters.
``/api/v1/openapi.json`` describes it all for this project.

Embed links (``eventmart embed``) carry a signed, expiring token for one dashboard: opening one sets a cookie
scoped to that dashboard's path, which lets its page and its callbacks through basic auth until it expires.
"""

from __future__ import annotations

import csv
import hmac
import io
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import flask

from .. import values
from ..dashboards.explore import DRILL_MAX, ExploreError, Explorer
from ..dashboards.query import EmptyRange, State
from ..errors import UserError
from ..timeutil import COMPARISONS, parse_time
from ..warehouse import QueryResult

if TYPE_CHECKING:
    from ..config import ApiToken, ProjectConfig
    from ..workspace import Workspace

PREFIX = "/api/v1"
MAX_LIMIT = 10_000
RESERVED = {"from", "to", "grain", "measures", "measure", "group", "limit", "offset", "format", "compare", "search",
            "sort"}
EMBED_COOKIE = "eventmart_embed"
EMBED_SALT = "eventmart-embed"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# --- tokens ---------------------------------------------------------------------------------------------


def authorise(cfg: ProjectConfig, header: str | None, now: datetime | None = None) -> tuple[str, ApiToken]:
    """The token a request's ``Authorization: Bearer …`` carries, or ApiError 401."""
    if not cfg.api.tokens:
        raise ApiError(403, "the read API has no tokens: add api.tokens to eventmart.yml (a token: ${VAR} each)")
    got = (header or "").removeprefix("Bearer ").strip() if (header or "").startswith("Bearer ") else ""
    if not got:
        raise ApiError(401, "send the token as 'Authorization: Bearer <token>'")
    for name, tok in cfg.api.tokens.items():
        if hmac.compare_digest(got.encode(), tok.token.encode()):
            if tok.expires and (now or datetime.now(UTC).replace(tzinfo=None)) >= _naive(tok.expires):
                raise ApiError(401, f"token {name} expired at {_naive(tok.expires):%Y-%m-%d %H:%M} UTC")
            return name, tok
    raise ApiError(401, "unknown token")


def _naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def may_read_mart(cfg: ProjectConfig, tok: ApiToken, mart: str) -> bool:
    if "*" in tok.marts or mart in tok.marts:
        return True
    dashes = cfg.dashboards if "*" in tok.dashboards else {d: cfg.dashboards[d] for d in tok.dashboards}
    return any(c.mart == mart for d in dashes.values() for c in d.charts.values())


def may_read_dashboard(tok: ApiToken, dashboard: str) -> bool:
    return "*" in tok.dashboards or dashboard in tok.dashboards


# --- embed links -----------------------------------------------------------------------------------------


def _serializer(secret: str):
    from itsdangerous import URLSafeSerializer  # Flask's own signing library

    return URLSafeSerializer(secret, salt=EMBED_SALT)


def embed_token(cfg: ProjectConfig, dashboard: str, ttl: timedelta) -> str:
    if not cfg.api.embed_secret:
        raise UserError("embed links need api.embed_secret in eventmart.yml (embed_secret: ${VAR}, 16+ characters)")
    if dashboard not in cfg.dashboards:
        raise UserError(f"there is no dashboard {dashboard!r}; dashboards: {', '.join(cfg.dashboards) or 'none'}")
    return _serializer(cfg.api.embed_secret).dumps({"d": dashboard, "exp": int(time.time() + ttl.total_seconds())})


def embed_claim(cfg: ProjectConfig, token: str | None) -> str | None:
    """The dashboard a valid, unexpired embed token opens (None: none)."""
    if not token or not cfg.api.embed_secret:
        return None
    from itsdangerous import BadSignature

    try:
        claim = _serializer(cfg.api.embed_secret).loads(token)
    except BadSignature:
        return None
    if not isinstance(claim, dict) or int(claim.get("exp", 0)) <= time.time():
        return None
    return claim.get("d") if claim.get("d") in cfg.dashboards else None


# --- answers -----------------------------------------------------------------------------------------------


def _answer(res: QueryResult, fmt: str, name: str, next_offset: int | None = None,
            extra: dict | None = None) -> flask.Response:
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(res.columns)
        w.writerows([values.text(v) for v in r] for r in res.rows)
        return flask.Response(out.getvalue(), mimetype="text/csv",
                              headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    body = {"columns": res.columns, "rows": [list(r) for r in res.rows], "next_offset": next_offset, **(extra or {})}
    return flask.Response(values.json_value(body), mimetype="application/json")


def _window(args, span: tuple[datetime, datetime] | None) -> tuple[datetime, datetime]:
    try:
        start = parse_time(args["from"], "from") if args.get("from") else None
        end = parse_time(args["to"], "to") if args.get("to") else None
    except (UserError, ValueError) as e:
        raise ApiError(400, str(e)) from None
    if span is None and (start is None or end is None):
        raise ApiError(404, "the mart holds no rows yet: run it (eventmart backfill), or give from and to")
    start, end = start or span[0], end or span[1]
    if start >= end:
        raise ApiError(400, "'from' must be before 'to'")
    return start, end


def _int(args, key: str, default: int, hi: int) -> int:
    try:
        v = int(args.get(key, default))
    except ValueError:
        raise ApiError(400, f"{key} must be a whole number") from None
    if not 0 <= v <= hi:
        raise ApiError(400, f"{key} must be between 0 and {hi}")
    return v


def _list(args, key: str) -> list[str]:
    return [x.strip() for v in args.getlist(key) for x in v.split(",") if x.strip()]


def _filters(args, ex: Explorer) -> dict[str, list[str]]:
    unknown = [k for k in args if k not in RESERVED and k not in ex.dimensions]
    if unknown:
        raise ApiError(400, f"unknown parameter(s) {', '.join(sorted(unknown))}: filters are dimensions of mart "
                            f"{ex.mart} ({', '.join(ex.dimensions) or 'none'})")
    return {d: args.getlist(d) for d in ex.dimensions if args.getlist(d)}


# --- the routes -----------------------------------------------------------------------------------------


def register(server: flask.Flask, project: Workspace) -> None:
    cfg = project.config
    explorers: dict[str, Explorer] = {}

    def explorer(mart: str, tok: ApiToken) -> Explorer:
        if mart not in cfg.marts:
            raise ApiError(404, f"there is no mart {mart!r}")
        if not may_read_mart(cfg, tok, mart):
            raise ApiError(403, f"this token may not read mart {mart}")
        if mart not in explorers:
            explorers[mart] = Explorer(cfg, project.warehouse, mart)
        return explorers[mart]

    def guarded(view):
        def run(*a, **kw):
            try:
                _, tok = authorise(cfg, flask.request.headers.get("Authorization"))
                return view(tok, *a, **kw)
            except ApiError as e:
                return flask.Response(values.json_value({"error": str(e)}), e.status, mimetype="application/json")
            except (ExploreError, UserError) as e:
                return flask.Response(values.json_value({"error": str(e)}), 400, mimetype="application/json")
        run.__name__ = f"api_{view.__name__}"
        return run

    def fmt() -> str:
        f = flask.request.args.get("format", "json")
        if f not in ("json", "csv"):
            raise ApiError(400, "format is json or csv")
        return f

    def asked(mart: str, tok: ApiToken, limit: int, most: int) -> tuple:
        """What a mart's route is asked: (explorer, format, filters, range, limit, offset), each checked."""
        ex = explorer(mart, tok)
        args = flask.request.args
        return (ex, fmt(), _filters(args, ex), _window(args, ex.span()), _int(args, "limit", limit, most),
                _int(args, "offset", 0, 10**9))

    @server.get(f"{PREFIX}/marts")
    @guarded
    def marts(tok):
        out = []
        for m in cfg.marts:
            if may_read_mart(cfg, tok, m):
                ex = explorer(m, tok)
                out.append({"mart": m, "dimensions": ex.dimensions, "measures": ex.measures,
                            "grains": list(ex.grains)})
        return flask.Response(values.json_value({"marts": out}), mimetype="application/json")

    @server.get(f"{PREFIX}/marts/<mart>")
    @guarded
    def mart_rows(tok, mart):
        ex, f, flt, window, limit, offset = asked(mart, tok, 1000, MAX_LIMIT)
        args = flask.request.args
        grain = ex.grain(args["grain"]) if args.get("grain") else None
        measures = _list(args, "measures") or ex.measures
        res = ex.run(measures, window, flt, _list(args, "group"), grain, limit + 1, offset)
        more = len(res.rows) > limit
        return _answer(QueryResult(res.columns, res.rows[:limit]), f, mart, offset + limit if more else None,
                       {"from": window[0], "to": window[1]} if f == "json" else None)

    @server.get(f"{PREFIX}/marts/<mart>/leaderboard/<dim>")
    @guarded
    def leaderboard(tok, mart, dim):
        ex, f, flt, window, limit, offset = asked(mart, tok, 25, MAX_LIMIT)
        args = flask.request.args
        compare = args.get("compare")
        if compare and compare not in COMPARISONS:
            raise ApiError(400, f"compare is one of {', '.join(COMPARISONS)}")
        b = ex.leaderboard(dim, args.get("measure") or ex.measures[0], window, flt, compare, args.get("search"),
                           args.get("sort", "value"), limit, offset)
        return _answer(b.table(), f, f"{mart}-{dim}", offset + limit if offset + limit < b.count else None,
                       {"total": b.total, "compare_total": b.total_previous, "count": b.count,
                        "truncated": b.truncated})

    @server.get(f"{PREFIX}/marts/<mart>/events")
    @guarded
    def events(tok, mart):
        ex, f, flt, window, limit, offset = asked(mart, tok, 100, DRILL_MAX)
        d = ex.drill(window, flt, limit, offset)
        return _answer(QueryResult(d.columns, d.rows), f, f"{mart}-events",
                       offset + limit if offset + limit < d.total else None, {"total": d.total})

    @server.get(f"{PREFIX}/dashboards/<dash>/charts/<chart>")
    @guarded
    def chart_rows(tok, dash, chart):
        apps = server.config.get("eventmart_apps", {})
        if dash not in apps or chart not in cfg.dashboards[dash].charts:
            raise ApiError(404, f"there is no chart {dash}/{chart}")
        if not may_read_dashboard(tok, dash):
            raise ApiError(403, f"this token may not read dashboard {dash}")
        app = apps[dash]
        st = State.from_query(flask.request.query_string.decode(), app.dims)
        try:
            window = app.q.window(st)
        except EmptyRange as e:
            raise ApiError(404, str(e)) from None
        if window is None:
            raise ApiError(404, "no data yet: run the marts")
        grain = None
        if flask.request.args.get("grain"):
            grains = app.q.series_grains(chart)
            if flask.request.args["grain"] not in grains:
                raise ApiError(400, f"chart {chart} is drawn per " + (", ".join(grains) or "nothing: it is not a time "
                                                                                          "series"))
            grain = grains[flask.request.args["grain"]]
        args = flask.request.args
        limit, offset = _int(args, "limit", MAX_LIMIT, MAX_LIMIT), _int(args, "offset", 0, 10**9)
        res = app.result(chart, st, window, grain)
        more = len(res.rows) > offset + limit
        return _answer(QueryResult(res.columns, res.rows[offset: offset + limit]), fmt(), chart,
                       offset + limit if more else None)

    @server.get(f"{PREFIX}/openapi.json")
    @guarded
    def openapi(_tok):  # it names every mart, measure and dimension: for token holders
        from .openapi import document

        return flask.jsonify(document(cfg))

    @server.get("/embed/<dash>/")
    def embed(dash):
        token = flask.request.args.get("t")
        if embed_claim(cfg, token) != dash:
            return flask.Response("this embed link is not valid for this dashboard, or it has expired", 403)
        rest = [(k, v) for k, v in flask.request.args.items(multi=True) if k != "t"]
        resp = flask.redirect(f"/d/{dash}/" + ("?" + urllib.parse.urlencode(rest) if rest else ""))
        secure = flask.request.is_secure
        # an iframe on another site sends the cookie only when it is SameSite=None, which browsers allow on https
        resp.set_cookie(EMBED_COOKIE, token, path=f"/d/{dash}/", httponly=True, secure=secure,
                        samesite="None" if secure else "Lax")
        return resp


def embedded(cfg: ProjectConfig, path: str, cookie: str | None) -> bool:
    """Whether a request under /d/<dashboard>/ carries a valid embed cookie for that dashboard."""
    dash = embed_claim(cfg, cookie)
    return dash is not None and path.startswith(f"/d/{dash}/")


def public(path: str) -> bool:
    """The API answers with its own tokens; basic auth does not guard it (nor the embed entry, signed itself)."""
    return path.startswith(PREFIX + "/") or path.startswith("/embed/")


__all__ = ["authorise", "embed_token", "embedded", "public", "register"]
