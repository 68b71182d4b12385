"""The whole project file (`ProjectConfig`) and the checks across its sections."""

from __future__ import annotations

from contextvars import ContextVar

from pydantic import PrivateAttr, model_validator

from ..errors import ProjectError
from .alerting import Alerting, AlertRule
from .base import NAME_RE, Strict, _at, _check_name, _Problems, did_you_mean
from .dashboards import Api, Dashboard
from .delivery import Channel, Report, Schedule
from .marts import Mart
from .runtime import QuerySettings, Warehouse
from .sources import Source
from .vault import Hub, Vault

# the values ${VAR} put into the file being validated (load.py sets it): what is checked from them is not kept
ENV_VALUES: ContextVar[frozenset[str]] = ContextVar("ENV_VALUES", default=frozenset())


class ProjectConfig(Strict):
    name: str = "eventmart"  # the project's name (dashboards' titles, the Airflow DAGs' ids)
    warehouse: Warehouse = Warehouse()  # where the raw tables and marts live (default: warehouse.duckdb here)
    query: QuerySettings = QuerySettings()  # limits on user SQL
    sources: dict[str, Source] = {}  # where events come from, by name (the raw table's name)
    marts: dict[str, Mart] = {}  # time-bucketed aggregates, by name (the table's name)
    dashboards: dict[str, Dashboard] = {}  # what `eventmart serve` shows, at /d/NAME/
    schedules: dict[str, Schedule] = {}  # jobs `eventmart serve` runs on a cron schedule (or Airflow)
    channels: dict[str, Channel] = {}  # where reports and alerts are sent
    reports: dict[str, Report] = {}  # digests of a mart, by name
    alerts: dict[str, AlertRule] = {}  # anomaly rules on marts, by name
    alerting: Alerting = Alerting()  # where alert messages go: routes by label, grouping, mute timings, templates
    vault: Vault = Vault()  # a data vault over the sources
    api: Api = Api()  # the read API's tokens and the secret of embed links

    # the values ${VAR} put into the file: nothing derived from them is kept on disk (memo.py)
    _env_values: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @model_validator(mode="after")
    def _vault(self) -> ProjectConfig:
        """Every vault table names declared sources and columns, and its keys line up with its parent's."""
        v = self.vault
        names = [*v.hubs, *v.links, *v.satellites]
        for n in names:
            _check_name(n)
        taken = set(self.sources) | set(self.marts)
        for n in names:
            if n in taken or names.count(n) > 1:
                raise _at(f"vault.{n}", f"'{n}' is used by another table; vault tables need names of their own")

        def columns(where: str, source: str, cols: list[str]) -> None:
            if source not in self.sources:
                raise _at(f"{where}.source", f"'{source}' is not a declared source{did_you_mean(source, self.sources)}")
            have = self.sources[source].columns
            for c in cols:
                if c not in have:
                    raise _at(where, f"'{c}' is not a column of source {source}{did_you_mean(c, have)}")

        for n, h in v.hubs.items():
            columns(f"vault.hubs.{n}", h.source, list(h.key.values()))
        for n, link in v.links.items():
            if len(link.hubs) < 2:
                raise _at(f"vault.links.{n}.hubs", "a link joins at least two hubs")
            for h, cols in link.hubs.items():
                if h not in v.hubs:
                    raise _at(f"vault.links.{n}.hubs", f"'{h}' is not a declared hub{did_you_mean(h, v.hubs)}")
                if len(cols) != len(v.hubs[h].key):
                    raise _at(f"vault.links.{n}.hubs.{h}", f"hub {h} has {len(v.hubs[h].key)} key column(s); "
                                                            f"give as many columns of {link.source}")
                columns(f"vault.links.{n}.hubs.{h}", link.source, cols)
        for n, sat in v.satellites.items():
            where = f"vault.satellites.{n}"
            parent = v.hubs.get(sat.parent) or v.links.get(sat.parent)
            if parent is None:
                raise _at(f"{where}.parent", f"'{sat.parent}' is not a declared hub or link")
            own = list(parent.key.values()) if isinstance(parent, Hub) else [c for cs in parent.hubs.values()
                                                                                for c in cs]
            if sat.key is None and sat.source != parent.source:
                raise _at(f"{where}.key", f"the satellite reads {sat.source}, its parent {parent.source}: say which "
                                          f"columns of {sat.source} hold the parent's key ({len(own)})")
            if sat.key is not None and len(sat.key) != len(own):
                raise _at(f"{where}.key", f"the parent's key has {len(own)} column(s)")
            columns(where, sat.source, [*sat.attributes, *(sat.key or own)])
            if sat.effective:
                columns(f"{where}.effective", sat.source, [sat.effective])
                if self.sources[sat.source].columns[sat.effective].type not in ("timestamp", "date"):
                    raise _at(f"{where}.effective", f"'{sat.effective}' is not a timestamp column")
        return self

    def _alerting(self, bad: _Problems) -> None:
        a = self.alerting
        for i, r in enumerate(a.routes):
            for c in r.channels:
                if c not in self.channels:
                    bad.add(f"alerting.routes.{i}.channels", f"'{c}' is not a declared channel"
                                                             f"{did_you_mean(c, self.channels)}")
            for m in r.mute:
                if m not in a.mute_timings:
                    bad.add(f"alerting.routes.{i}.mute", f"'{m}' is not one of alerting.mute_timings"
                                                         f"{did_you_mean(m, a.mute_timings)}")
            if r.template and r.template not in a.templates:
                bad.add(f"alerting.routes.{i}.template", f"'{r.template}' is not one of alerting.templates"
                                                         f"{did_you_mean(r.template, a.templates)}")
        for n, rule in self.alerts.items():
            if rule.template and rule.template not in a.templates:
                bad.add(f"alerts.{n}.template", f"'{rule.template}' is not one of alerting.templates"
                                                f"{did_you_mean(rule.template, a.templates)}")

    @model_validator(mode="after")
    def _refs(self) -> ProjectConfig:
        with _Problems() as bad:
            for section, names in (("sources", self.sources), ("marts", self.marts), ("reports", self.reports),
                                   ("alerts", self.alerts), ("schedules", self.schedules)):
                for n in names:
                    if not NAME_RE.match(n):
                        bad.add(f"{section}.{n}", f"'{n}' is not a valid name; use letters, digits and _ (not "
                                                  "starting with a digit)")
            clash = set(self.sources) & set(self.marts)
            if clash:
                bad.add(None, f"names used by both a source and a mart: {', '.join(sorted(clash))}")
            for n, m in self.marts.items():
                if m.from_ and m.from_ not in self.sources:
                    bad.add(f"marts.{n}.from", f"'{m.from_}' is not a declared source{did_you_mean(m.from_, self.sources)}")
                for src, key in (m.joins or {}).items():
                    if not m.from_ or m.sql is None:
                        bad.add(f"marts.{n}.joins", "joins are for SQL marts with `from` (the source that sets the time)")
                    elif src not in self.sources:
                        bad.add(f"marts.{n}.joins", f"'{src}' is not a declared source")
                    else:
                        for s_ in (src, m.from_):
                            if s_ in self.sources and key not in self.sources[s_].columns:
                                bad.add(f"marts.{n}.joins.{src}", f"'{key}' is not a column of source {s_}")
            # reports and alert rules point at a mart, channels and a dashboard the same way
            for section, items in (("reports", self.reports), ("alerts", self.alerts)):
                for n, item in items.items():
                    if item.mart and item.mart not in self.marts:
                        bad.add(f"{section}.{n}.mart", f"'{item.mart}' is not a declared mart"
                                                       f"{did_you_mean(item.mart, self.marts)}")
                    for c in item.channels:
                        if c not in self.channels:
                            bad.add(f"{section}.{n}.channels", f"'{c}' is not a declared channel")
                    if item.dashboard and item.dashboard not in self.dashboards:
                        bad.add(f"{section}.{n}.dashboard", f"'{item.dashboard}' is not a declared dashboard")
            self._alerting(bad)
            for j, job in self.schedules.items():
                for r in job.alerts or []:
                    if r not in self.alerts:
                        bad.add(f"schedules.{j}.alerts", f"'{r}' is not a declared alert rule")
                if job.report and job.report not in self.reports:
                    bad.add(f"schedules.{j}.report", f"'{job.report}' is not a declared report")
                for src in job.sources or []:
                    if src not in self.sources:
                        bad.add(f"schedules.{j}.sources", f"'{src}' is not a declared source")
                for m in job.marts or []:
                    if m not in self.marts:
                        bad.add(f"schedules.{j}.marts", f"'{m}' is not a declared mart")
            for t, tok in self.api.tokens.items():
                for kind, names, have in (("dashboards", tok.dashboards, self.dashboards), ("marts", tok.marts,
                                                                                           self.marts)):
                    for n in names:
                        if n != "*" and n not in have:
                            bad.add(f"api.tokens.{t}.{kind}", f"'{n}' is not a declared {kind[:-1]}"
                                                              f"{did_you_mean(n, have)}")
            for d, dash in self.dashboards.items():
                for c, chart in dash.charts.items():
                    if chart.mart not in self.marts:
                        bad.add(f"dashboards.{d}.charts.{c}.mart", f"'{chart.mart}' is not a declared mart"
                                                                   f"{did_you_mean(chart.mart, self.marts)}")
            self._expressions(bad)
        return self

    def _expressions(self, bad: _Problems) -> None:
        """Measures, dimension expressions and the measure expressions of charts, reports and alert rules on
        declarative marts: checked when the file loads, so every command stops at a bad one with its line
        (SQL marts' columns are known only to the warehouse: `eventmart check` and `serve` check those)."""
        from .. import memo

        # what these checks read, and nothing else (no warehouse, no channel: no secret goes into the key)
        material = {"marts": {n: m.model_dump(mode="json") for n, m in self.marts.items()},
                    "sources": {n: list(s.columns) for n, s in self.sources.items()},
                    "charts": {d: {c: ch.model_dump(mode="json") for c, ch in dash.charts.items()}
                               for d, dash in self.dashboards.items()},
                    "reports": {r: [rep.mart, {k: mv.value for k, mv in rep.metrics.items()}]
                                for r, rep in self.reports.items()},
                    "alerts": {a: [rule.mart, rule.measure] for a, rule in self.alerts.items()}}
        # a value from the environment (it may be a secret) keeps even its hash off the disk
        keep = not any(v in repr(material) for v in ENV_VALUES.get())
        if keep and memo.get("checked", material):
            return
        before = len(bad.found)
        self._check_expressions(bad)
        if keep and len(bad.found) == before:
            memo.put("checked", material, True)

    def _check_expressions(self, bad: _Problems) -> None:
        from ..expressions import check_expression, measure_sql, parse_metric, shape_from_config

        def attempt(fn, *args) -> bool:
            try:
                fn(*args)
                return True
            except ProjectError as e:
                key, _, msg = str(e).partition(": ")
                bad.add(key, msg)
                return False

        good: set[str] = set()  # marts whose own columns check out: what charts on them can be checked against
        for n, m in self.marts.items():
            if m.sql is not None:
                good.add(n)
                continue
            if m.from_ not in self.sources:
                continue
            allowed = set(self.sources[m.from_].columns) | {"_time"}
            ok = True
            for d in m.dimensions:
                if d.expr:
                    ok &= attempt(check_expression, d.expr, allowed, f"marts.{n}.dimensions.{d.name}")
                elif d.name != m.time_column and d.name not in allowed:
                    ok = False
                    bad.add(f"marts.{n}.dimensions", f"'{d.name}' is not a column of source {m.from_}"
                                                     f"{did_you_mean(d.name, allowed)}; give an expression "
                                                     f"({d.name}: <expr>) or use one of its columns")
            for k, text in m.measures.items():
                ok &= attempt(measure_sql, text, allowed, "duckdb", f"marts.{n}.measures.{k}")
            if ok:
                good.add(n)
        uses = [(f"dashboards.{d}.charts.{c}.measure", ch.mart,
                 f"{ch.agg}({ch.measure})" if ch.agg else ch.measure)
                for d, dash in self.dashboards.items() for c, ch in dash.charts.items() if ch.type != "scatter"]
        uses += [(f"dashboards.{d}.charts.{c}.{k}", ch.mart, text)
                 for d, dash in self.dashboards.items() for c, ch in dash.charts.items()
                 for k, text in ([("x", ch.x), ("y", ch.y)] if ch.type == "scatter" else
                                 [(f"measures.{m}", t) for m, t in (ch.measures or {}).items()])]
        uses += [(f"reports.{r}.metrics.{k}.value", rep.mart, mv.value)
                 for r, rep in self.reports.items() for k, mv in rep.metrics.items()]
        uses += [(f"alerts.{a}.measure", rule.mart, rule.measure) for a, rule in self.alerts.items() if rule.mart]
        for where, mart, text in uses:
            if mart in good and self.marts[mart].sql is None:
                attempt(lambda t, w, m=mart: parse_metric(shape_from_config(self, m), t, w), text, where)
