"""Measure expressions, parsed and checked with sqlglot alone: a mart's declared measures (``count()``,
``sum(x)``, …) and the expressions charts, reports and alert rules read marts with (``users``, ``avg(users)``,
``sum(likes) / sum(views)``). No warehouse here: the project file's checks use it as it loads; the measure layer
(measures.py) turns parsed expressions into queries.

Every mart column that is a measure has a roll-up rule: ``count``, ``count_if`` and ``sum`` add up (``sum``),
``min``/``max`` roll up by themselves, ``count_distinct`` and ``avg`` do not roll up at all (``none``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ProjectError

if TYPE_CHECKING:  # imported where used: a command whose expressions are cached (memo.py) never loads sqlglot
    from sqlglot import exp

_AGGS = {"count", "count_distinct", "approx_count_distinct", "sum", "min", "max", "avg", "count_if"}

ROLLUP = {"count": "sum", "count_if": "sum", "sum": "sum", "min": "min", "max": "max",
          "count_distinct": "none", "approx_count_distinct": "none", "avg": "none"}

# distinct counts whose mergeable state a mart can keep (`keep_states`, where the engine has states)
STATEFUL = ("count_distinct", "approx_count_distinct")

STATE_SUFFIX = "__state"


def check_expression(text: str, allowed: set[str], where: str, what: str = "the source's columns") -> exp.Expression:
    """Parse ``text`` (DuckDB syntax) and check it reads only ``allowed`` columns and is not a query."""
    import sqlglot
    from sqlglot import exp

    try:
        node = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.ParseError as e:
        raise ProjectError(f"{where}: cannot parse '{text}' ({str(e).splitlines()[0]}); fix the expression") from None
    if any(isinstance(n, (exp.Select, exp.Subquery, exp.Command, exp.Table)) for n in node.walk()):
        raise ProjectError(f"{where}: '{text}' must be an expression over {what}, not a query")
    unknown = sorted({c.name for c in node.find_all(exp.Column)} - allowed)
    if unknown:
        raise ProjectError(f"{where}: unknown column(s) {', '.join(unknown)} in '{text}'; "
                           f"{what} are {', '.join(sorted(allowed))}")
    # rendered quoted on every engine: a column named like a keyword (`user`) is PostgreSQL's CURRENT_USER and
    # ClickHouse's too when bare; the names were matched exactly above, as the tables were created
    for c in node.find_all(exp.Column):
        if isinstance(c.this, exp.Identifier):
            c.this.set("quoted", True)
    return node


def measure_parts(text: str, allowed: set[str], where: str) -> tuple[str, list[exp.Expression]]:
    from sqlglot import exp

    node = check_expression(text, allowed, where)
    if isinstance(node, exp.Anonymous):
        name, args = node.name.lower(), node.expressions
    elif isinstance(node, exp.Count):
        inner = node.this
        if isinstance(inner, exp.Distinct):
            name, args = "count_distinct", inner.expressions
        else:
            name, args = "count", ([] if inner is None or isinstance(inner, exp.Star) else [inner])
    elif isinstance(node, exp.CountIf):
        name, args = "count_if", [node.this]
    elif isinstance(node, exp.ApproxDistinct):
        name, args = "approx_count_distinct", [node.this]
    elif isinstance(node, (exp.Sum, exp.Min, exp.Max, exp.Avg)):
        name, args = node.key, [node.this]
    else:
        name, args = "", []
    if name not in _AGGS:
        raise ProjectError(
            f"{where}: '{text}' is not a measure; use count(), count_distinct(col), approx_count_distinct(col), "
            "sum(col), min(col), max(col), avg(col) or count_if(condition)")
    if name != "count" and len(args) != 1:
        raise ProjectError(f"{where}: {name} takes exactly one argument, got '{text}'")
    return name, args


def measure_kind(text: str) -> str:
    """count, count_distinct, sum, min, max, avg or count_if (the text was checked when the mart compiled)."""
    import sqlglot
    from sqlglot import exp

    try:
        node = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.ParseError:
        return ""
    if isinstance(node, exp.Count):
        return "count_distinct" if isinstance(node.this, exp.Distinct) else "count"
    if isinstance(node, exp.CountIf):
        return "count_if"
    if isinstance(node, exp.ApproxDistinct):
        return "approx_count_distinct"
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    return node.key if isinstance(node, (exp.Sum, exp.Min, exp.Max, exp.Avg)) else ""


def measure_sql(text: str, allowed: set[str], dialect: str, where: str, when: str | None = None,
                sum_sql: Callable[[str, exp.Expression], str] | None = None) -> str:
    """SQL for a declarative measure (``count()``, ``count_distinct(x)``, ``approx_count_distinct(x)``,
    ``sum/min/max/avg(x)``, ``count_if(cond)``) over source rows, counting only rows where ``when`` (rendered
    SQL) holds. ``sum_sql``: the engine's sum of an expression that cannot overflow (Warehouse.sum_sql)."""
    from sqlglot import exp

    name, args = measure_parts(text, allowed, where)
    r = [a.sql(dialect=dialect) for a in args]
    filt = f" FILTER (WHERE {when})" if when else ""
    if name == "sum" and sum_sql is not None:
        return sum_sql(r[0], args[0]) + filt
    if name == "count":
        return (f"COUNT({r[0]})" if r else "COUNT(*)") + filt
    if name == "count_distinct":
        return f"COUNT(DISTINCT {r[0]}){filt}"
    if name == "approx_count_distinct":  # the engine's own sketch (DuckDB HyperLogLog, ClickHouse uniq)
        return exp.ApproxDistinct(this=args[0]).sql(dialect=dialect) + filt
    if name == "count_if":
        return f"COUNT(*) FILTER (WHERE ({r[0]}){f' AND ({when})' if when else ''})"
    return f"{name.upper()}({r[0]}){filt}"


@dataclass
class MartShape:
    """A mart as the measure layer sees it: time column and grain, dimensions, measures and their roll-ups."""

    name: str
    time_column: str
    grain: int
    timezone: str | None
    dimensions: list[str]
    rollups: dict[str, str]  # measure column -> sum | min | max | none
    source: str | None = None  # declarative marts: the source that can answer what the rows cannot
    measure_text: dict[str, str] = field(default_factory=dict)  # declarative: column -> measure text
    dim_expr: dict[str, str | None] = field(default_factory=dict)  # declarative: dim -> source expression
    states: dict[str, str] = field(default_factory=dict)  # `keep_states`: column -> its kind (count_distinct, …)
    approximate: set[str] = field(default_factory=set)  # columns that are estimates (approx_count_distinct)

    @property
    def columns(self) -> list[str]:
        return [self.time_column, *self.dimensions, *self.rollups]


def shape_from_config(cfg: Any, name: str) -> MartShape:
    """A declarative mart's shape: the project file (a ProjectConfig) says it all."""
    m = cfg.marts[name]
    dims = [d.name for d in m.dimensions if d.name != m.time_column]
    kinds = {k: measure_kind(v) for k, v in m.measures.items()}
    return MartShape(name, m.time_column, m.grain_seconds, m.timezone, dims,
                     {k: ROLLUP[kind] for k, kind in kinds.items()}, m.from_, dict(m.measures),
                     {d.name: d.expr for d in m.dimensions if d.name != m.time_column},
                     {k: kind for k, kind in kinds.items() if kind in STATEFUL} if m.keep_states else {},
                     {k for k, kind in kinds.items() if kind == "approx_count_distinct"})


@dataclass
class Ref:
    """One reading of a measure column: by name (``agg`` None) or inside an aggregate, maybe filtered."""

    column: str
    cond: exp.Expression | None = None  # `filter (where …)` over dimensions
    col: str = ""  # its column in the inner query


@dataclass
class Metric:
    text: str
    mart: str
    node: exp.Expression  # the expression, measure readings replaced by inner columns
    refs: list[Ref]
    over_buckets: bool  # aggregates over the mart's buckets (else: measures by name)
    counts: bool  # a plain count or sum: an empty bucket is 0, not missing


def parse_metric(shape: MartShape, text: str, where: str) -> Metric:
    """Parse and check a measure expression against a mart; errors name ``where`` and say why."""
    from sqlglot import exp

    # aggregates a measure expression may apply over a mart's buckets
    outer = (exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Count, exp.Median)
    allowed = set(shape.columns)
    node = check_expression(text, allowed, where, f"mart {shape.name}'s columns")
    node = node.copy()
    refs: list[Ref] = []
    inside_agg = outside_agg = False

    def ref(column: str, cond: exp.Expression | None) -> exp.Column:
        refs.append(Ref(column, cond, f"r{len(refs)}"))
        return exp.column(refs[-1].col, quoted=True)

    def walk(n: exp.Expression) -> exp.Expression:
        nonlocal inside_agg, outside_agg
        cond = None
        agg = n
        if isinstance(n, exp.Filter):
            agg, cond = n.this, n.expression.this
            bad = sorted({c.name for c in cond.find_all(exp.Column)} - set(shape.dimensions))
            if bad:
                raise ProjectError(f"{where}: filter (where …) may only test dimensions of mart {shape.name} "
                                   f"({', '.join(shape.dimensions) or 'none'}); not {', '.join(bad)}")
        if isinstance(agg, exp.AggFunc):
            inside_agg = True
            if not isinstance(agg, outer):
                raise ProjectError(f"{where}: {agg.key}() is not available in a measure expression; use sum, avg, "
                                   "min, max, median or count over measure columns")
            arg = agg.this
            if isinstance(agg, exp.Count) and (arg is None or isinstance(arg, exp.Star)):
                if cond is not None:
                    raise ProjectError(f"{where}: count(*) counts the mart's buckets; it takes no filter")
                return exp.Count(this=exp.Star())
            if isinstance(agg, exp.Count) and isinstance(arg, exp.Distinct):
                cols = arg.expressions
                if len(cols) == 1 and isinstance(cols[0], exp.Column) and cols[0].name == shape.time_column:
                    if cond is not None:
                        raise ProjectError(f"{where}: count(distinct {shape.time_column}) takes no filter")
                    return exp.Count(this=exp.Distinct(expressions=[exp.column("__b", quoted=True)]))
                raise ProjectError(f"{where}: count(distinct …) may only count the time column "
                                   f"{shape.time_column} (buckets); for distinct users declare a count_distinct "
                                   "measure in the mart and read it by name")
            if not (isinstance(arg, exp.Column) and arg.name in shape.rollups):
                raise ProjectError(f"{where}: {agg.key}() must be applied to one measure column of mart "
                                   f"{shape.name} ({', '.join(shape.rollups)}), e.g. {agg.key}({next(iter(shape.rollups), 'x')})")
            out = agg.__class__(this=ref(arg.name, cond))
            return out
        if isinstance(n, exp.Column):
            if n.name in shape.rollups:
                outside_agg = True
                return ref(n.name, None)
            raise ProjectError(f"{where}: '{n.name}' is not a measure of mart {shape.name}; measures: "
                               f"{', '.join(shape.rollups)} (dimensions are grouped by the chart, not measured)")
        for k, v in list(n.args.items()):
            if isinstance(v, exp.Expression):
                n.set(k, walk(v))
            elif isinstance(v, list):
                n.set(k, [walk(x) if isinstance(x, exp.Expression) else x for x in v])
        return n

    node = walk(node)
    if inside_agg and outside_agg:
        raise ProjectError(f"{where}: '{text}' mixes measures by name with aggregates over buckets; write either "
                           "e.g. `users / views` or `avg(users) / avg(views)`")
    if not inside_agg and not outside_agg and not refs:
        raise ProjectError(f"{where}: '{text}' reads no measure of mart {shape.name}")
    # division: never integer division, never an error on zero (an empty denominator is no value)
    for d in list(node.find_all(exp.Div)):
        d.set("expression", exp.func("NULLIF", d.expression, exp.Literal.number(0)))
        d.set("this", exp.cast(d.this, "DOUBLE"))
    single = len(refs) == 1 and (node is not None)
    counts = single and shape.rollups.get(refs[0].column) == "sum" and (
        isinstance(node, exp.Column) or isinstance(node, exp.Sum) and refs[0].cond is None)
    return Metric(text, shape.name, node, refs, inside_agg, bool(counts))
