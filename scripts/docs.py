"""The references generated from the code: the CLI reference (Typer's own docs generator, from the app itself), the
project-file reference and its JSON Schema (from the pydantic models of eventmart.config, their fields' comments as
descriptions).

    python scripts/docs.py           # write them
    python scripts/docs.py --check   # fail (exit 1) when a written one is stale: `make test` runs this
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import subprocess
import sys
import tempfile
import tokenize
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI_MD = ROOT / "docs" / "reference" / "cli.md"
CONFIG_MD = ROOT / "docs" / "reference" / "project-file.md"
SCHEMA = ROOT / "src" / "eventmart" / "config" / "eventmart.schema.json"


# --- the fields' comments, from the source ------------------------------------------------------------------


def field_comments() -> dict[str, dict[str, str]]:
    """class name -> field name -> its comment (on its line, else the comment lines right above it)."""
    out: dict[str, dict[str, str]] = {}
    for f in sorted((ROOT / "src" / "eventmart" / "config").glob("*.py")):
        text = f.read_text(encoding="utf-8")
        comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(text).readline) if tok.type == tokenize.COMMENT}
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ClassDef):
                continue
            fields = out.setdefault(node.name, {})
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    said = comments.get(item.lineno) if lines[item.lineno - 1].split("#")[0].strip() else None
                    if not said:
                        above, k = [], item.lineno - 1
                        while k >= 1 and lines[k - 1].strip().startswith("#"):
                            above.insert(0, comments.get(k, ""))
                            k -= 1
                        said = " ".join(above)
                    fields[item.target.id] = said or ""
    return out


# --- the JSON Schema ------------------------------------------------------------------------------------------


def schema() -> dict:
    """ProjectConfig's JSON Schema with what the loader also accepts (the short forms: `ts: int?`, a dimension as a
    name or `name: expr`, a filter as a name) and the comments as descriptions, for editors (yaml-language-server)."""
    from eventmart.config import ProjectConfig

    s = ProjectConfig.model_json_schema(by_alias=True)
    s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    s["title"] = "eventmart.yml"
    notes = field_comments()
    import eventmart.config as cfg

    for name, model in s["$defs"].items():
        cls = getattr(cfg, name, None)
        if cls is not None and cls.__doc__ and "description" not in model:
            model["description"] = " ".join(cls.__doc__.split())
        for key, prop in model.get("properties", {}).items():
            field = _field_name(cls, key) if cls else key
            said = notes.get(name, {}).get(field)
            if said:
                prop["description"] = said
    for key, prop in s["properties"].items():
        said = notes.get("ProjectConfig", {}).get(key)
        if said:
            prop["description"] = said
    types = "string|int|float|bool|timestamp|date|decimal\\(\\s*\\d+\\s*,\\s*\\d+\\s*\\)"
    column = {"anyOf": [{"type": "string", "pattern": f"^({types})\\??$",
                         "description": "a type; with ? the value may be empty (e.g. string?)"},
                        {"$ref": "#/$defs/Column"}]}
    s["$defs"]["Source"]["properties"]["columns"]["additionalProperties"] = column
    s["$defs"]["Mart"]["properties"]["dimensions"]["items"] = {
        "anyOf": [{"type": "string", "description": "a column of the source"},
                  {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": {"type": "string"},
                   "description": "name: a SQL expression over the source's columns"},
                  {"$ref": "#/$defs/Dimension"}]}
    s["$defs"]["Dashboard"]["properties"]["filters"]["items"] = {
        "anyOf": [{"type": "string", "description": "`time`, or a dimension of the dashboard's marts"},
                  {"$ref": "#/$defs/Filter"}]}
    hub_key = s["$defs"]["Hub"]["properties"]["key"]
    s["$defs"]["Hub"]["properties"]["key"] = {**{k: v for k, v in hub_key.items() if k != "type" and
                                                 k != "additionalProperties"},
                                              "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                                                        {"type": "object", "additionalProperties": {"type": "string"}}]}
    s["$defs"]["Link"]["properties"]["hubs"]["additionalProperties"] = {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    return s


def _field_name(cls: type, alias: str) -> str:
    for name, f in getattr(cls, "model_fields", {}).items():
        if (f.alias or name) == alias:
            return name
    return alias


# --- the project-file reference -------------------------------------------------------------------------------


SECTIONS = [("ProjectConfig", "The file"), ("Warehouse", "warehouse:"), ("QuerySettings", "query:"),
            ("Source", "sources.NAME"), ("Column", "sources.NAME.columns.NAME"), ("TimeSpec", "sources.NAME.time"),
            ("TimeRange", "sources.NAME.time.valid"), ("CsvOptions", "sources.NAME.csv"), ("S3Spec", "sources.NAME.s3"),
            ("KafkaSpec", "sources.NAME.kafka"), ("Mart", "marts.NAME"), ("Dimension", "marts.NAME.dimensions[]"),
            ("Dashboard", "dashboards.NAME"), ("Filter", "dashboards.NAME.filters[]"),
            ("Chart", "dashboards.NAME.charts.NAME"), ("Channel", "channels.NAME"), ("Report", "reports.NAME"),
            ("Metric", "reports.NAME.metrics.NAME"), ("ReportChart", "reports.NAME.charts[]"),
            ("AlertRule", "alerts.NAME"), ("Alerting", "alerting:"), ("Route", "alerting.routes[]"),
            ("MuteInterval", "alerting.mute_timings.NAME[]"), ("Template", "alerting.templates.NAME"),
            ("Schedule", "schedules.NAME"), ("Vault", "vault:"),
            ("Hub", "vault.hubs.NAME"), ("Link", "vault.links.NAME"), ("Satellite", "vault.satellites.NAME")]


def _type(annotation: object) -> str:
    text = str(annotation).replace("typing.", "").replace("eventmart.config.", "")
    for mod in ("base.", "sources.", "marts.", "dashboards.", "delivery.", "alerting.", "runtime.", "vault.", "project."):
        text = text.replace(mod, "")
    text = text.replace("<class '", "").replace("'>", "").replace("NoneType", "none")
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    return text.replace("|", "\\|")


def _default(field: object) -> str:
    from pydantic_core import PydanticUndefined

    d = field.default  # type: ignore[attr-defined]
    if d is PydanticUndefined:
        return "**required**"
    if d is None or d == {} or d == []:
        return ""
    if hasattr(d, "model_dump"):
        return ""
    return f"`{json.dumps(d, default=str)}`"


def project_file_reference() -> str:
    import eventmart.config as cfg

    notes = field_comments()
    out = ["# Project-file reference", "",
           "Generated from eventmart's configuration models (`python scripts/docs.py`); the [guide](../guide/project-file.md)",
           "walks through the same file with examples. Every key is checked when the file loads: an unknown key, a wrong",
           "type or a bad reference is named with its file, line and key path. Editors validate and complete",
           "`eventmart.yml` with the JSON Schema `eventmart init` writes beside it (`eventmart.schema.json`;",
           "`eventmart schema` prints it).", ""]
    for name, where in SECTIONS:
        cls = getattr(cfg, name)
        out += [f"## `{where}`", ""]
        if cls.__doc__:
            out += [_md(" ".join(cls.__doc__.split())), ""]
        out += ["| key | type | default | what it is |", "|---|---|---|---|"]
        for fname, f in cls.model_fields.items():
            key = f.alias or fname
            said = _md(notes.get(name, {}).get(fname, "")).replace("|", "\\|")
            out.append(f"| `{key}` | {_type(f.annotation)} | {_default(f)} | {said} |")
        out.append("")
    return "\n".join(out)


def _md(text: str) -> str:
    """Plain text into Markdown: `<source>` is a name to fill in, not an HTML tag to swallow."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


# --- the CLI reference ----------------------------------------------------------------------------------------


def cli_reference() -> str:
    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "cli.md"
        subprocess.run([sys.executable, "-m", "typer", "eventmart.cli", "utils", "docs", "--name", "eventmart",
                        "--title", "CLI reference", "--output", str(target)], check=True, capture_output=True)
        text = target.read_text(encoding="utf-8")
    return text.replace("<", "&lt;").replace(">", "&gt;") if "```" not in text else _escape_outside_code(text)


def _escape_outside_code(text: str) -> str:
    out, code = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            code = not code
        out.append(line if code else line.replace("<", "&lt;").replace(">", "&gt;"))
    return "".join(out)


def main() -> int:
    check = "--check" in sys.argv
    wanted = {CLI_MD: cli_reference(), CONFIG_MD: project_file_reference(),
              SCHEMA: json.dumps(schema(), indent=1, ensure_ascii=False) + "\n"}
    stale = []
    for path, text in wanted.items():
        have = path.read_text(encoding="utf-8") if path.exists() else ""
        if have == text:
            continue
        if check:
            stale.append(path)
            sys.stdout.writelines(list(difflib.unified_diff(have.splitlines(True), text.splitlines(True),
                                                            str(path), "generated", n=1))[:40])
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"stale: {', '.join(str(p.relative_to(ROOT)) for p in stale)}; run `python scripts/docs.py` and commit "
              "them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
