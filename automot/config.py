"""The one typed-config mechanism: YAML <-> dataclasses with type checks and dotted field paths.

Every config of the project (model, agent, training, BEV encoder, refiner) is a tree of dataclasses. This
module turns parsed YAML into that tree, collecting *every* problem before raising one ``ConfigError`` whose
lines each start with the full dotted path of the offending field (``runtime.sync_every: expected int, got
'2' (str)``), suggests the closest known name for a typo (did you mean ...), and writes configs back
atomically so that ``load_yaml(save_yaml(cfg)) == cfg``.

Supported field types: dataclasses, ``int``, ``float`` (ints accepted), ``str``, ``bool``, ``Any``,
``Literal[...]``, ``X | None`` and other unions, ``list[X]``, ``tuple[X, ...]`` / fixed tuples, ``dict[str, X]``
and bare ``list`` / ``dict``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from automot.errors import ConfigError
from automot.fsio import atomic_write_text

__all__ = [
    "ConfigError",
    "from_dict",
    "to_dict",
    "load_yaml",
    "save_yaml",
    "write_atomic",
    "read_yaml_mapping",
    "raise_problems",
    "apply_overrides",
    "type_name",
    "describe_value",
]

T = TypeVar("T")
_MISSING = object()


def raise_problems(source: str, problems: list[str]) -> None:
    """Raise one ConfigError listing ``problems`` (no-op when empty). ``source`` names the file or object."""
    if not problems:
        return
    head = f"{source}: " if source else ""
    if len(problems) == 1:
        err = ConfigError(head + problems[0])
    else:
        err = ConfigError(f"{head}{len(problems)} problems: " + "; ".join(problems))
    err.source, err.problems = source, list(problems)
    raise err


def from_dict(cls: type[T], data: Any, source: str = "", path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; raise ConfigError listing every problem by dotted path.

    ``path`` prefixes every field path (for a section loaded on its own); ``None`` data means all defaults.
    """
    problems: list[str] = []
    obj = _build(cls, data, path, problems)
    raise_problems(source, problems)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain YAML-safe view of a config dataclass (tuples become lists).

    Only ``init`` fields are config values: an ``init=False`` field is bookkeeping (e.g. which fields a file set)
    and is neither written here nor read by ``from_dict``.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def read_yaml_mapping(path: str | os.PathLike, what: str = "config") -> dict:
    """Read a YAML file that must hold a mapping (an empty file is ``{}``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found" if not path.exists() else f"{path}: not a file")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} file ({exc.__class__.__name__}: {exc})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {describe_value(data)}")
    return data


def apply_overrides(data: Mapping, overrides: list[str], option: str = "--set") -> dict:
    """A deep copy of ``data`` with each ``KEY=VALUE`` of ``overrides`` applied in order.

    ``KEY`` is a dotted path into the mapping (``runtime.latency_ticks``); missing sections are created, so an
    unknown name reaches the typed validation (which names it). ``VALUE`` is parsed as a YAML scalar or flow value
    (``3``, ``null``, ``true``, ``[256, 128]``, ``pipelined``). Raises ConfigError naming the override when it is
    malformed (no ``=``, an empty key part, invalid YAML, a key below a value that is not a section); validate the
    result with ``from_dict`` as for a file.
    """
    import copy

    out = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p.strip() for p in parts):
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE with a dotted KEY, e.g. runtime.latency_ticks=3")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{option} {key}: value {text!r} is not valid YAML ({problem})") from None
        node: Any = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"{option} {key}: {where} is {describe_value(child)}, not a section")
            node = child
        node[parts[-1]] = value
    return out


def load_yaml(cls: type[T], path: str | os.PathLike, what: str = "config") -> T:
    """Read ``path`` and build ``cls`` from it; every error names the file and the field."""
    return from_dict(cls, read_yaml_mapping(path, what), source=str(path))


def save_yaml(obj: Any, path: str | os.PathLike) -> Path:
    """Write a config (dataclass or mapping) as YAML through a temporary file and an atomic rename."""
    return write_atomic(path, yaml.safe_dump(to_dict(obj), sort_keys=False))


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``: a reader sees the
    old file or the whole new one, never a half-written config (``automot.fsio.atomic_write_text``)."""
    return atomic_write_text(path, text)


# ---------------------------------------------------------------------------------------------------------------
# dict -> dataclass
# ---------------------------------------------------------------------------------------------------------------


def type_name(tp: Any) -> str:
    """Human wording of a field type, as used in the messages."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__} section)"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin is list or tp is list:
        return f"a list of {type_name(args[0])}" if args else "a list"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {type_name(args[0])}"
        return "a list [" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict or tp is dict:
        return "a mapping"
    if tp is float:
        return "a number"
    return getattr(tp, "__name__", str(tp))


def describe_value(value: Any) -> str:
    """``repr`` (cut at 60 characters) and type of a bad value, as messages show it: ``'2' (str)``."""
    text = repr(value)
    return f"{text[:60] + '...' if len(text) > 60 else text} ({type(value).__name__})"


def _convert(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = f"{path}: expected {type_name(tp)}, got {describe_value(value)}"
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, problems)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            problems.append(bad)
            return _MISSING
        nested: list[str] | None = None
        for option in (a for a in args if a is not type(None)):
            sub: list[str] = []
            result = _convert(value, option, path, sub)
            if not sub:
                return result
            if nested is None and not any(p.startswith(f"{path}: ") for p in sub):
                nested = sub  # the value has this option's shape; its own items/fields are wrong: name those
        problems.extend(nested if nested is not None else [bad])
        return _MISSING
    if origin is Literal:
        # `type(value) is type(a)` keeps True from matching 1 and 1 from matching 1.0.
        if any(value == a and type(value) is type(a) for a in args):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is list or tp is dict:
        if isinstance(value, tp):
            return value
    elif origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            homogeneous = origin is list or (len(args) == 2 and args[1] is Ellipsis)
            if homogeneous or len(value) == len(args):
                item_types = [args[0] if args else Any] * len(value) if homogeneous else list(args)
                items = [_convert(v, t, f"{path}[{i}]", problems) for i, (v, t) in enumerate(zip(value, item_types))]
                return items if origin is list else tuple(items)
    elif origin is dict:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return {k: _convert(v, args[1], f"{path}.{k}", problems) for k, v in value.items()}
    else:
        raise TypeError(f"unsupported config type {tp!r} at {path}")
    problems.append(bad)
    return _MISSING


def _build(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, collecting problems instead of stopping at the first."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append(f"{path or '<root>'}: expected {type_name(cls)}, got {describe_value(data)}")
        return _MISSING
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"
            problems.append(f"{where}: unknown field{hint}")
            continue
        converted = _convert(value, hints[key], where, problems)
        if converted is not _MISSING:
            kwargs[key] = converted
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if required:
        for name in required:
            problems.append(f"{path + '.' if path else ''}{name}: required field missing")
        return _MISSING
    return cls(**kwargs)
