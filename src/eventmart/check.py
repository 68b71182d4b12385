"""`eventmart check`: everything a project file asks for, tried without writing anything; every problem at once.

The file itself (keys, types, references, measure expressions on declarative marts) is checked when it loads;
here come the parts that need the warehouse or the sources: SQL marts compiled against the real tables,
dashboards, reports and alert rules on them, source files and tables found, the warehouse reachable.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .config import locate
from .errors import ProjectError, UserError

if TYPE_CHECKING:
    from .workspace import Workspace


def check_project(p: Workspace) -> tuple[list[str], list[str]]:
    """(problems, what was checked). Nothing is written to the warehouse."""
    problems: list[str] = []
    done: list[str] = []

    def attempt(what: str, fn: Callable[[], Any]) -> bool:
        try:
            fn()
        except UserError as e:
            located = p.located(e)
            problems.append(str(located) if located is not e or str(e).startswith(("/", what)) else f"{what}: {e}")
            return False
        except Exception as e:  # an engine's own error (a SQL mart's query): the mart is the problem
            text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            problems.append(str(p.located(ProjectError(f"{what}: {text}"))))
            return False
        done.append(what)
        return True

    if not attempt("warehouse", lambda: p.warehouse_for_reading()):
        return problems, done
    wh = p.warehouse
    for name, src in p.config.sources.items():
        attempt(f"sources.{name}", lambda name=name, src=src: _source(p, name, src))
    epoch = {"start": datetime(1970, 1, 1), "end": datetime(1970, 1, 1)}
    runner = p.runner
    for name, mart in p.config.marts.items():
        def compile_mart(name=name, mart=mart) -> None:
            sql, _ = runner.compiled(name)
            tables = [mart.from_] if mart.from_ else []
            if all(wh.table_columns(t) is not None for t in tables):  # not loaded yet: nothing to run against
                wh.fetch(sql if mart.sql is None else f"SELECT * FROM ({sql}) AS s LIMIT 0", epoch)
        attempt(f"marts.{name}.{'sql' if mart.sql else 'measures'}", compile_mart)
    from .dashboards.query import DashboardQueries

    # a SQL mart's columns are what its query returns: known once it is built (or its inputs are loaded); what
    # reads it is checked then, not refused now
    unbuilt = {n for n, m in p.config.marts.items() if m.sql is not None and wh.table_columns(n) is None}
    for name, dash in p.config.dashboards.items():
        if any(c.mart in unbuilt for c in dash.charts.values()):
            done.append(f"dashboards.{name} (its SQL marts are not built yet: checked once they are)")
            continue
        attempt(f"dashboards.{name}", lambda name=name, dash=dash: DashboardQueries(
            name, dash, p.config, wh, lambda key: locate(p.dir, key)).check())
    from .measures import MeasureLayer

    layer = MeasureLayer(p.config, wh)
    for name, rep in p.config.reports.items():
        if rep.mart in unbuilt:
            continue
        for k, m in rep.metrics.items():
            attempt(f"reports.{name}.metrics.{k}.value",
                    lambda rep=rep, k=k, m=m, name=name: layer.check(
                        rep.mart, [layer.metric(rep.mart, m.value, f"reports.{name}.metrics.{k}.value")],
                        86400 if p.config.marts[rep.mart].grain_seconds <= 86400 else None, [],
                        f"reports.{name}.metrics.{k}.value"))
    for name, rule in p.config.alerts.items():
        if rule.mart and rule.mart not in unbuilt:
            attempt(f"alerts.{name}.measure", lambda rule=rule, name=name: _rule(p, layer, name, rule))
    return problems, done


def _rule(p: Workspace, layer: Any, name: str, rule: Any) -> None:
    from .alerts.engine import rule_grain

    where = f"alerts.{name}.measure"
    shape = layer.shape(rule.mart)
    for d in rule.by:
        if d not in shape.dimensions:
            raise ProjectError(f"alerts.{name}.by: '{d}' is not a dimension of mart {rule.mart} "
                               f"({', '.join(shape.dimensions) or 'none'})")
    layer.check(rule.mart, [layer.metric(rule.mart, rule.measure, where)], rule_grain(p, rule), list(rule.by), where)


def _source(p: Workspace, name: str, src: Any) -> None:
    if src.format == "postgres":
        from .sources.database import check_table

        check_table(src, name)
        return
    if src.s3 is not None:
        from .sources.s3 import list_objects

        if not list_objects(src.s3, name):
            raise UserError(f"sources.{name}.s3: no object under s3://{src.s3.bucket}/{src.s3.prefix} matches "
                            f"'{src.s3.glob}'")
        return
    if src.paths:
        from .sources.files import resolve_files

        resolve_files(src, name, None, p.dir)
