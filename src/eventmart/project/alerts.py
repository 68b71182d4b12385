"""The facade's commands about what goes out: reports and alert rules (check, backtest, evaluate, tune, silence,
history, state)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import did_you_mean
from ..errors import UserError
from ..timeutil import parse_time
from ..warehouse import QueryResult
from .core import _locked, _time

if TYPE_CHECKING:
    pass


class AlertCommands:
    """Mixed into Project (project/__init__.py): ``self`` is the project."""

    # --- reports --------------------------------------------------------------------------------
    @_locked
    def report(self, name: str, day: date | str | None = None, dry_run: bool = False,
               out: str | Path | None = None, trigger: str = "report"):
        """Build report ``name`` for ``day`` (default: the newest day of its mart) and send it."""
        from ..reports import send_report

        if name not in self.config.reports:
            known = ", ".join(self.config.reports) or "none declared"
            raise UserError(f"unknown report '{name}'{did_you_mean(name, self.config.reports)} "
                            f"(reports: {known}); check eventmart.yml")
        if isinstance(day, str):
            day = parse_time(day, "--date").date()
        if out is not None:
            out = Path(out) if Path(out).is_absolute() else Path.cwd() / out
        return send_report(self, name, day, dry_run, out, trigger)

    # --- alerts ---------------------------------------------------------------------------------
    def _rule(self, name: str):
        if name not in self.config.alerts:
            known = ", ".join(self.config.alerts) or "none declared"
            raise UserError(f"unknown alert rule '{name}'{did_you_mean(name, self.config.alerts)} "
                            f"(alerts: {known}); check eventmart.yml")
        return self.config.alerts[name]

    @_locked
    def alerts_check(self, names: list[str] | None = None, now: datetime | str | None = None) -> list:
        """Evaluate rules now (or as of ``now``): judge new complete buckets, move state, notify."""
        from ..alerts.engine import evaluate_many

        names = names or list(self.config.alerts)
        for n in names:
            self._rule(n)
        return evaluate_many(self, names, _time(now, "--now"))

    @_locked
    def alerts_backtest(self, name: str, start: datetime | str, end: datetime | str):
        """Replay a rule over history: (verdicts per bucket, incidents). Same detectors as live."""
        from ..alerts.engine import backtest

        self._rule(name)
        s, e = _time(start, "--start"), _time(end, "--end")
        if e <= s:
            raise UserError(f"--end {e} must be after --start {s}")
        return backtest(self, name, s, e)

    @_locked
    def alerts_test(self, name: str, start: datetime | str | None = None, end: datetime | str | None = None,
                    days: int = 7):
        """Replay a rule before switching it on: its would-be firings, where each would go, a chart (nothing sent)."""
        from ..alerts.rehearse import rehearse

        self._rule(name)
        s, e = _time(start, "--start"), _time(end, "--end")
        if s is not None and e is not None and e <= s:
            raise UserError(f"--end {e} must be after --start {s}")
        return rehearse(self, name, s, e, days)

    @_locked
    def alerts_evaluate(self, names: list[str] | None, labels: str, start: datetime | str, end: datetime | str,
                        tolerance: int = 2) -> list:
        """Backtest rules over [start, end) and score them against the labelled incidents in ``labels`` (CSV)."""
        from ..alerts.evaluate import evaluate_rule

        names = names or list(self.config.alerts)
        for n in names:
            self._rule(n)
        s, e = _time(start, "--start"), _time(end, "--end")
        if e <= s:
            raise UserError(f"--end {e} must be after --start {s}")
        lab = self._labels(labels)
        return [evaluate_rule(self, n, s, e, lab, tolerance) for n in names]

    def _labels(self, labels: str) -> list:
        """Labelled incidents from a CSV path, or from a warehouse table given as ``table:NAME``."""
        from ..alerts.evaluate import labels_from_rows, read_labels

        if not labels.startswith("table:"):
            return read_labels(labels)
        name = labels[len("table:"):].strip()
        wh = self.warehouse_for_reading()
        if name not in set(wh.table_names()):
            raise UserError(f"--labels {labels}: no table {name!r} in the warehouse; load one with columns "
                            "start, end[, series] (or give a CSV path)")
        import sqlglot

        # the name is a known table; quoted by sqlglot for the engine's dialect, never pasted raw
        ident = sqlglot.exp.to_table(name, dialect=wh.dialect).sql(dialect=wh.dialect, identify=True)
        res = self.query(f"SELECT * FROM {ident}")
        if "start" not in res.columns:
            raise UserError(f"--labels {labels}: the table needs columns start, end[, series]; it has "
                            f"{', '.join(res.columns)}")
        return labels_from_rows([dict(zip(res.columns, r, strict=True)) for r in res.rows], f"table {name}, row")

    @_locked
    def alerts_tune(self, name: str, start: datetime | str, end: datetime | str, budget: float = 2.0,
                    labels: str | None = None):
        """Choose the rule's parameters on the earlier part of [start, end) within ``budget`` alerts per week per
        series (or by F1 with labels), and report the later part."""
        from ..alerts.evaluate import tune

        self._rule(name)
        s, e = _time(start, "--start"), _time(end, "--end")
        if e <= s:
            raise UserError(f"--end {e} must be after --start {s}")
        return tune(self, name, s, e, budget, self._labels(labels) if labels else None)

    @_locked
    def alerts_silence(self, name: str, duration: str) -> datetime:
        from ..alerts.engine import silence
        from ..timeutil import parse_duration

        self._rule(name)
        try:
            seconds = parse_duration(duration)
        except ValueError as e:
            raise UserError(f"--for {duration}: {e}") from None
        return silence(self, name, seconds)

    @_locked
    def alerts_silences(self) -> QueryResult:
        """Silences in force: rule, until, set at."""
        from ..alerts.engine import silences

        return QueryResult(["rule", "silenced_until", "set_at"], silences(self))

    @_locked
    def alerts_unsilence(self, name: str) -> int:
        """Lift a rule's silence now; how many silences were in force."""
        from ..alerts.engine import unsilence

        self._rule(name)
        return unsilence(self, name)

    @_locked
    def alerts_history(self, name: str | None = None, limit: int = 50) -> QueryResult:
        from ..alerts.engine import EVENTS, ensure_tables

        wh = self.warehouse
        with wh.transaction():
            ensure_tables(wh)
        where, params = ("WHERE rule = {{ r }}", {"r": name}) if name else ("", {})
        return wh.fetch(f"SELECT sent_at, rule, series, event, bucket, value, lower, upper, channel, status, detail "
                        f"FROM {EVENTS} {where} ORDER BY sent_at DESC, rule, series LIMIT {int(limit)}", params)

    @_locked
    def alerts_state(self) -> QueryResult:
        from ..alerts.engine import STATE, ensure_tables

        wh = self.warehouse
        with wh.transaction():
            ensure_tables(wh)
        res = wh.fetch(f"SELECT rule, series, state, since, consecutive, last_bucket, value, lower, upper "
                       f"FROM {STATE} ORDER BY rule, series")
        from ..alerts.engine import silences

        quiet = {r[0]: r[1] for r in silences(self)}
        res.columns.append("silenced_until")
        res.rows = [(*r, quiet.get(r[0])) for r in res.rows]
        return res
