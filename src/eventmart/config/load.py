"""Reading `eventmart.yml`: YAML with line numbers, `.env` and `${VAR}` substitution, and every problem reported
with its file, line and key path — the checks behind a first error run too."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ProjectError
from .base import _SEP, PROJECT_FILE, Strict, did_you_mean
from .project import ENV_VALUES, ProjectConfig

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# libyaml's parser where PyYAML was built with it (the wheels are): the same documents, several times faster
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str) -> yaml.Node | None:
    """The file's node tree, for line numbers: built only when an error needs a line."""
    return yaml.compose(text, Loader=_LOADER)


def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at key path ``loc`` (or of its nearest existing parent)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part) or (part == "from_" and k.value == "from") or (
                    part == "schema_" and k.value == "schema") or (part == "sender" and k.value == "from") or (
                    part == "for_" and k.value == "for"):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _substitute_env(value: Any, path: tuple[Any, ...], text: str, file: str, used: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute_env(v, (*path, k), text, file, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, (*path, i), text, file, used) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                used.add(os.environ[var])
                return os.environ[var]
            if default is not None:
                return default
            line = _node_line(_compose(text), path)
            raise ProjectError(
                f"{file}:{line}: {'.'.join(map(str, path))}: environment variable {var} is not set; "
                f"export {var}=... before running eventmart"
            )

        return _ENV_RE.sub(repl, value)
    return value


def _loc_str(loc: tuple[Any, ...]) -> str:
    return ".".join({"from_": "from", "schema_": "schema", "sender": "from", "for_": "for"}.get(str(p), str(p))
                    for p in loc)


def project_file(path: Path) -> Path:
    """The project file for `-p PATH`: PATH/eventmart.yml, or PATH itself when it is that file."""
    if path.is_file() or path.suffix in (".yml", ".yaml"):
        if path.name != PROJECT_FILE:
            raise ProjectError(f"{path}: a project file is named {PROJECT_FILE}; rename it or pass its folder")
        return path
    return path / PROJECT_FILE


def _known_keys() -> set[str]:
    keys: set[str] = set()
    stack: list[type] = [Strict]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        for name, f in getattr(cls, "model_fields", {}).items():
            keys.add(f.alias or name)
    return keys


@dataclass
class _Error:
    at: tuple[Any, ...]  # where pydantic raised it (a field, or the model whose validator found it)
    loc: tuple[Any, ...]  # the key it is about
    type: str
    msg: str
    expected: str | None = None  # literal errors: the allowed values, as pydantic writes them


def _errors(e: ValidationError) -> list[_Error]:
    out = []
    for err in e.errors():
        at = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        for msg in err["msg"].removeprefix("Value error, ").split(_SEP):
            loc = at
            m = re.match(r"^@([^@]+)@ (.*)$", msg, re.S)
            if m:
                loc = (*at, *(int(p) if p.isdigit() else p for p in m.group(1).split(".")))
                msg = m.group(2)
            if err["type"] == "extra_forbidden":
                msg = f"unknown key '{loc[-1]}'{did_you_mean(loc[-1], _known_keys()) or '; check its spelling'}"
            elif err["type"] == "missing":
                msg = f"missing required key '{loc[-1]}'"
            out.append(_Error(at, loc, err["type"], msg, (err.get("ctx") or {}).get("expected")))
    return out


def _text(e: _Error, root: yaml.Node | None, file: str) -> str:
    key = _loc_str(e.loc)
    return f"{file}:{_node_line(root, e.loc)}: {key + ': ' if key else ''}{e.msg}"

_SECTIONS = ("sources", "marts", "dashboards", "schedules", "channels", "reports", "alerts")

_ALIASES = {"from_": "from", "schema_": "schema", "for_": "for", "sender": "from"}


def _item(loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The top-level item a key belongs to: (sources, events), (vault, hubs, h), (warehouse,)."""
    if len(loc) >= 2 and loc[0] in _SECTIONS:
        return loc[:2]
    if len(loc) >= 3 and loc[0] == "vault":
        return loc[:3]
    if loc and loc[0] in ("warehouse", "vault"):
        return loc[:1]
    return None


def _node(data: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        if isinstance(data, dict) and p in data:
            data = data[p]
        elif isinstance(data, dict) and _ALIASES.get(p) in data:
            data = data[_ALIASES[p]]
        elif isinstance(data, list) and isinstance(p, int) and p < len(data):
            data = data[p]
        else:
            return None
    return data


def _repair(data: dict, e: _Error, hidden: list[tuple], dropped: set[str]) -> bool:
    """Take an error out of the way so that the checks behind it run (pydantic runs a model's own checks only when
    its fields are valid): an unknown key goes, a bad choice becomes a valid one, anything else drops the item it
    is in (a source, a mart, ...). What was hidden or dropped is remembered, so that errors of our making are not
    reported. True when something changed."""
    parent, key = (_node(data, e.at[:-1]), e.at[-1]) if e.at else (None, None)
    if isinstance(parent, dict) and key is not None:
        name = key if key in parent else _ALIASES.get(key, key)
        if e.type == "extra_forbidden" and name in parent:
            del parent[name]
            hidden.append(e.at)
            return True
        if e.type == "literal_error" and name in parent and e.expected:
            choice = re.match(r"'([^']*)'", e.expected)
            if choice and parent[name] != choice.group(1):
                parent[name] = choice.group(1)
                hidden.append(e.at)
                return True
    item = _item(e.at) or _item(e.loc)
    if item is None:
        return False
    holder = _node(data, item[:-1])
    if isinstance(holder, dict) and item[-1] in holder:
        del holder[item[-1]]
        hidden.append(item)
        if len(item) > 1:
            dropped.add(str(item[-1]))
        return True
    return False


def _all_problems(data: dict, first: ValidationError, root: yaml.Node | None, file: str) -> list[str]:
    """Every problem of the file, not only those pydantic reports before a model's own checks can run: errors are
    repaired or their item dropped, and the file validated again, for a few rounds."""
    import copy

    data = copy.deepcopy(data)
    problems: list[str] = []
    hidden: list[tuple] = []
    dropped: set[str] = set()
    err = first
    for _ in range(8):
        errs = _errors(err)
        for e in errs:
            # of our making: about a key we hid or dropped, about what holds such a key (below its item: the
            # `time` of a `time.unit` we replaced), or naming a dropped item
            ours = any(e.at[:len(h)] == h or e.loc[:len(h)] == h or
                       (h[:len(e.loc)] == e.loc and len(e.loc) > len(_item(h) or h)) for h in hidden) or \
                any(f"'{d}'" in e.msg for d in dropped)
            text = _text(e, root, file)
            if not ours and text not in problems:
                problems.append(text)
        if not any([_repair(data, e, hidden, dropped) for e in errs]):
            break
        try:
            ProjectConfig.model_validate(data)
            break
        except ValidationError as again:
            err = again
    return problems


def load_config(directory: Path) -> ProjectConfig:
    path = project_file(directory)
    file = str(path)
    if not path.is_file():
        raise ProjectError(
            f"{file}: no project file here; run eventmart in a project folder, pass -p DIR, "
            "or create one with `eventmart init`"
        )
    env_file = path.parent / ".env"
    if env_file.is_file():  # KEY=value lines beside the project file; what the environment already has wins
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ProjectError(f"{file}{where}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProjectError(f"{file}:1: the project file must be a mapping of keys (name, warehouse, sources, marts)")
    used: set[str] = set()
    data = _substitute_env(data, (), text, file, used)
    env_values = frozenset(v for v in used if v)
    token = ENV_VALUES.set(env_values)
    try:
        config = ProjectConfig.model_validate(data)
        config._env_values = env_values
        return config
    except ValidationError as e:
        problems = _all_problems(data, e, _compose(text), file)
        err = ProjectError(problems[0])
        err.problems = problems  # `eventmart check` lists them all
        raise err from None
    finally:
        ENV_VALUES.reset(token)


def locate(directory: Path, key: str) -> str:
    """``file:line: key`` for errors found after loading (e.g. a dashboard checked against the warehouse)."""
    path = project_file(directory)
    try:
        root = _compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        root = None
    loc = tuple(int(p) if p.isdigit() else p for p in key.split("."))
    return f"{path}:{_node_line(root, loc)}: {key}"
