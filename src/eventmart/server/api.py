"""The local API: while `eventmart serve` owns an embedded warehouse, other eventmart commands go through it.

DuckDB lets one process write a database file. The server is that process; it writes
``.eventmart/server.json`` (port, token, pid; readable by the owner only) into the project folder.
A CLI command on the same project finds that file, and instead of opening the warehouse it calls the
same `Project` method on the server over loopback, with the token. Values travel as JSON (no pickle):
dataclasses, datetimes and decimals are tagged and rebuilt from a fixed list of types.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import threading
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    import flask

    from ..project import Project

STATE_DIR = ".eventmart"
STATE_FILE = "server.json"
TOKEN_HEADER = "X-Eventmart-Token"
# what another process may ask the server to do: the commands, nothing else
METHODS = ("check", "unloaded", "bad_files", "run_window", "ingest", "ingests", "undo_ingest", "rejects", "replay_rejects", "run", "backfill", "plan_backfill", "status", "query", "reset",
           "runs", "backup", "report", "alerts_check", "alerts_evaluate", "alerts_tune", "alerts_silence", "alerts_silences", "alerts_unsilence",
           "alerts_history", "alerts_state", "alerts_test",
           "alerts_backtest", "vault_load", "vault_status", "vault_reset", "lag")


def _types() -> dict[str, type]:
    from ..alerts.engine import EvalResult, Event, Incident, Series, Verdicts
    from ..alerts.evaluate import Score, Tuning
    from ..alerts.rehearse import Firing, Rehearsal
    from ..backup import BackupResult
    from ..delivery.charts import Chart
    from ..ledger import RunResult
    from ..marts import MartStatus
    from ..reports import Delivery, ReportResult
    from ..sources.log import IngestResult, UndoResult
    from ..vault import LoadResult
    from ..warehouse import QueryResult

    return {t.__name__: t for t in (RunResult, MartStatus, IngestResult, QueryResult, BackupResult,
                                             ReportResult, Delivery, EvalResult, Event, Incident, Series,
                                             Verdicts, Chart, UndoResult, Score, Tuning, LoadResult, Rehearsal,
                                             Firing)}


def encode(v: Any) -> Any:
    import numpy as np

    if isinstance(v, np.ndarray):
        return {"__nd__": [encode(x) for x in v.tolist()], "dtype": str(v.dtype)}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        import base64

        return {"__b64__": base64.b64encode(v).decode()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {"__dc__": type(v).__name__, "f": {f.name: encode(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    if isinstance(v, datetime):
        return {"__dt__": v.isoformat()}
    if isinstance(v, date):
        return {"__d__": v.isoformat()}
    if isinstance(v, Decimal):
        return {"__dec__": str(v)}
    if isinstance(v, Path):
        return {"__path__": str(v)}
    if isinstance(v, tuple):
        return {"__t__": [encode(x) for x in v]}
    if isinstance(v, list):
        return [encode(x) for x in v]
    if isinstance(v, dict):
        return {k: encode(x) for k, x in v.items()}
    return v


def decode(v: Any, types: dict[str, type] | None = None) -> Any:
    types = types or _types()
    if isinstance(v, list):
        return [decode(x, types) for x in v]
    if not isinstance(v, dict):
        return v
    if "__nd__" in v:
        import numpy as np

        return np.array(decode(v["__nd__"], types), dtype=v["dtype"])
    if "__b64__" in v:
        import base64

        return base64.b64decode(v["__b64__"])
    if "__dc__" in v:
        cls = types[v["__dc__"]]  # only the known result types: KeyError otherwise
        return cls(**{k: decode(x, types) for k, x in v["f"].items()})
    if "__dt__" in v:
        return datetime.fromisoformat(v["__dt__"])
    if "__d__" in v:
        return date.fromisoformat(v["__d__"])
    if "__dec__" in v:
        return Decimal(v["__dec__"])
    if "__path__" in v:
        return Path(v["__path__"])
    if "__t__" in v:
        return tuple(decode(x, types) for x in v["__t__"])
    return {k: decode(x, types) for k, x in v.items()}


# --- the server side -------------------------------------------------------------------------------


def state_path(project_dir: Path) -> Path:
    return project_dir / STATE_DIR / STATE_FILE


def write_state(project_dir: Path, port: int) -> tuple[str, Path]:
    token = secrets.token_urlsafe(32)
    path = state_path(project_dir)
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"port": port, "token": token, "pid": os.getpid()}, f)
    os.replace(path.with_suffix(".tmp"), path)
    return token, path


def register(server: flask.Flask, project: Project, token: str) -> None:
    import hmac

    import flask

    @server.post("/_eventmart/api/call")
    def call():
        got = flask.request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(got.encode(), token.encode()):
            return {"ok": False, "error": "bad or missing token"}, 403
        body = flask.request.get_json(silent=True) or {}
        method = body.get("method")
        if method not in METHODS:
            return {"ok": False, "error": f"unknown method {method!r}"}, 400
        args, kwargs = decode(body.get("args", [])), decode(body.get("kwargs", {}))
        if method in READS:
            return _read(lambda cancel: getattr(project, method)(*args, cancel=cancel, **kwargs), method)
        try:
            with project.lock:
                result = getattr(project, method)(*args, **kwargs)
        except UserError as e:
            return {"ok": False, "error": str(e), "exit": e.exit_code}
        except Exception as e:  # a bug: its traceback goes to the server's output, one line to the caller
            return _bug(method, e), 500
        return {"ok": True, "result": encode(result)}

    @server.post("/_eventmart/api/export")
    def export():
        """A whole result streamed as a file's text (``eventmart query --out`` while serve runs): no lock, no cap; a
        client that goes away stops it. The text ends with END, or with ERROR and the reason."""
        got = flask.request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(got.encode(), token.encode()):
            return {"ok": False, "error": "bad or missing token"}, 403
        body = flask.request.get_json(silent=True) or {}
        cancel = threading.Event()

        def stream():
            from ..values import export_lines

            try:
                yield from export_lines(project.export(body.get("sql", ""), cancel), body.get("format", "csv"))
                yield END
            except UserError as e:
                yield ERROR + str(e)
            finally:  # GeneratorExit when the client went away: the read stops
                cancel.set()

        return flask.Response(stream(), mimetype="text/plain")

    # the API is exempt from the dashboards' basic auth: it has its own token
    server.config.setdefault("eventmart_public", set()).update({"/_eventmart/api/call", "/_eventmart/api/export"})


# reads run beside the writers, never under the project's lock; a client that goes away stops them
READS = ("query",)
# how an export's text ends (never a line of CSV or JSON Lines)
END, ERROR = "\x00END\n", "\x00ERROR "
HEARTBEAT = 1.0  # seconds between the blanks a read's answer starts with (a closed connection shows on the next)


def _bug(method: str, e: Exception) -> dict:
    """A bug: its traceback goes to the server's output, one line to the caller."""
    import traceback

    traceback.print_exc()
    return {"ok": False, "error": f"the server failed on {method}: {type(e).__name__}; its output has the traceback",
            "exit": 1}


def _read(run: Any, method: str) -> Any:
    """Run a read in a thread of its own while the answer streams blanks (valid JSON whitespace) every second:
    when the client has gone, writing one fails, and the read is cancelled."""
    import flask

    cancel = threading.Event()
    done = threading.Event()
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["body"] = {"ok": True, "result": encode(run(cancel))}
        except UserError as e:
            out["body"] = {"ok": False, "error": str(e), "exit": e.exit_code}
        except Exception as e:
            out["body"] = _bug(method, e)
        finally:
            done.set()

    threading.Thread(target=work, daemon=True, name=f"eventmart-{method}").start()

    def stream():
        try:
            while not done.wait(HEARTBEAT):
                yield " "
            yield json.dumps(out["body"])
        finally:
            if not done.is_set():  # the client went away (or the server is stopping): stop the read
                cancel.set()

    return flask.Response(stream(), mimetype="application/json")


# --- the client side -------------------------------------------------------------------------------


def running_server(project_dir: Path) -> dict | None:
    """The live server's state file for this project, or None (a stale file is removed)."""
    path = state_path(project_dir)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None
    except (PermissionError, KeyError, ValueError):
        pass
    return state


class RemoteProject:
    """The subset of `Project` the CLI uses, answered by the running server."""

    def __init__(self, project_dir: Path, state: dict, config):
        self.dir, self.config = project_dir, config
        self.url = f"http://127.0.0.1:{state['port']}/_eventmart/api/call"
        self.token = state["token"]

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import httpx

        kwargs.pop("progress", None)  # progress bars stay local
        # connecting is quick or the server is not there; the work itself may take long (a backfill)
        timeout = httpx.Timeout(connect=5, read=float(os.environ.get("EVENTMART_CALL_TIMEOUT", 6 * 3600)), write=60,
                                pool=5)
        try:
            r = httpx.post(self.url, json={"method": method, "args": encode(list(args)), "kwargs": encode(kwargs)},
                           headers={TOKEN_HEADER: self.token}, timeout=timeout)
        except httpx.TimeoutException:
            raise UserError("eventmart serve holds this project but did not answer in time; check that it runs "
                            "(or stop it) and retry") from None
        except httpx.HTTPError as e:
            raise UserError(f"eventmart serve holds this project but does not answer ({type(e).__name__}); stop it "
                            "or retry") from None
        try:
            body = r.json()
        except ValueError:
            raise UserError(f"eventmart serve answered HTTP {r.status_code} without a result; see its output") from None
        if not body.get("ok"):
            err = UserError(body.get("error", "the server refused the call"))
            err.exit_code = int(body.get("exit", 2))
            raise err
        return decode(body["result"])

    def __getattr__(self, name: str) -> Any:
        if name in METHODS:
            return lambda *a, **k: self._call(name, *a, **k)
        raise AttributeError(name)

    def query(self, sql: str, cancel: Any = None) -> Any:
        return self._call("query", sql)

    def export_to(self, sql: str, fmt: str, f: Any) -> None:
        """Write the whole result to the open file ``f`` as the server streams it; raises UserError (and the caller
        drops the file) when the server ends with an error."""
        import httpx

        tail = b""
        with httpx.stream("POST", self.url.replace("/call", "/export"), json={"sql": sql, "format": fmt},
                          headers={TOKEN_HEADER: self.token}, timeout=httpx.Timeout(None, connect=5)) as r:
            if r.status_code != 200:
                raise UserError(f"eventmart serve refused the export (HTTP {r.status_code})")
            for chunk in r.iter_bytes():
                data = tail + chunk  # the last 64 kB stay back: the end marker (or the error) is in them
                f.write(data[:-65536])
                tail = data[-65536:]
        if tail.endswith(END.encode()):
            f.write(tail[:-len(END)])
            return
        at = tail.rfind(ERROR.encode())
        if at >= 0:
            raise UserError(tail[at + len(ERROR):].decode(errors="replace").strip())
        raise UserError("eventmart serve stopped before the export ended; nothing was written")

    def backfill(self, marts=None, *, start=None, end=None, progress=None):
        """Window by window through the server, so a progress bar sees each one finish."""
        if progress is None:
            return self._call("backfill", marts, start=start, end=end)
        plan = self._call("plan_backfill", marts, start=start, end=end)
        results = []
        for i, (mart, s, e) in enumerate(plan, 1):
            results.append(self._call("run_window", mart, s, e))
            progress(results[-1], i, len(plan))
        return results

    def restore(self, path: Any) -> str:
        raise UserError("eventmart serve is running on this project: stop it before `eventmart restore`")

    def close(self) -> None:
        pass

    def __enter__(self) -> RemoteProject:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
