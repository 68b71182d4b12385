"""The project file ``eventmart.yml``: one module per section of it, the cross-section checks, and loading.

Errors name the file, the line and the key path, e.g.
``eventmart.yml:14: marts.dash_visits.grain: '7 minutes' must divide a day evenly``. This package imports nothing
of eventmart's but the ground floor (errors, timeutil) and the measure expressions' parser (expressions.py).
"""

# ruff: noqa: E402  (the imports below run with pydantic's plugin lookup off: see _plugins)
import os as _os
from importlib.resources import files as _files
from pathlib import Path

# pydantic looks for plugins (every installed distribution's entry points) when a model's validator is built, as
# the classes below are: tens of milliseconds on every command, for plugins that have nothing to watch here
_plugins = _os.environ.get("PYDANTIC_DISABLE_PLUGINS")
_os.environ["PYDANTIC_DISABLE_PLUGINS"] = "1"

from .alerting import Alerting, AlertRule, MuteInterval, Route, Template
from .base import (
    NAME_RE,
    PROJECT_FILE,
    RESERVED,
    TYPES,
    Strict,
    check_timezone,
    decimal_spec,
    did_you_mean,
    match_header,
    normal_name,
    parse_size,
)
from .dashboards import CHART_TYPES, Api, ApiToken, Chart, Dashboard, Filter
from .delivery import Channel, Metric, Report, ReportChart, Schedule
from .load import load_config, locate, project_file
from .marts import Dimension, Mart
from .project import ProjectConfig
from .runtime import QuerySettings, Warehouse
from .sources import Column, CsvOptions, KafkaSpec, S3Spec, Source, TimeRange, TimeSpec
from .vault import Hub, Link, Satellite, Vault

if _plugins is None:
    del _os.environ["PYDANTIC_DISABLE_PLUGINS"]
else:
    _os.environ["PYDANTIC_DISABLE_PLUGINS"] = _plugins

SCHEMA_FILE = "eventmart.schema.json"
# the first line of a project file eventmart writes: editors (yaml-language-server) validate and complete it
SCHEMA_LINE = f"# yaml-language-server: $schema={SCHEMA_FILE}"


def json_schema() -> str:
    """The project file's JSON Schema (generated from these models by scripts/docs.py, shipped in the package)."""
    return (_files(__package__) / SCHEMA_FILE).read_text(encoding="utf-8")


def write_schema(directory: Path) -> Path:
    """The schema beside a project file, where its first line points editors."""
    target = directory / SCHEMA_FILE
    target.write_text(json_schema(), encoding="utf-8")
    return target


__all__ = [
    "CHART_TYPES", "NAME_RE", "PROJECT_FILE", "SCHEMA_FILE", "SCHEMA_LINE", "json_schema", "write_schema", "RESERVED", "TYPES", "AlertRule", "Alerting", "Channel", "Chart", "Column",
    "MuteInterval", "Route", "Template",
    "Api", "ApiToken", "CsvOptions", "Dashboard", "Dimension", "Filter", "Hub", "KafkaSpec", "Link", "Mart", "Metric", "ProjectConfig",
    "QuerySettings", "Report", "ReportChart", "S3Spec", "Satellite", "Schedule", "Source", "Strict", "TimeRange",
    "TimeSpec", "Vault", "Warehouse", "check_timezone", "decimal_spec", "did_you_mean", "load_config", "locate",
    "match_header", "normal_name", "parse_size", "project_file",
]
