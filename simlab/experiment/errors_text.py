"""Pydantic validation errors as one ``ScenarioError`` a user can act on: each problem on one
line, naming the field path (``survey.support``), the value, the file of the ``extends`` chain
that set it, and a close match for a misspelt field or type tag.
"""
from __future__ import annotations

import difflib
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ValidationError

from simlab.errors import ScenarioError
from simlab.society import society_class
from simlab.society.base import DynamicsParams


def validate_model(data: dict[str, Any], source: str,
                   chain: list[tuple[str, dict[str, Any]]], model: type[BaseModel]) -> Any:
    """``model.model_validate(data)``; every pydantic error becomes one ``ScenarioError``."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            keys, msg = _describe(e, data, chain, model)
            lines += [(keys, m) for m in msg.splitlines()]
        lines = list(dict.fromkeys(lines))
        if len(lines) == 1:
            raise ScenarioError(f"{origin(lines[0][0], chain, source)}: {lines[0][1]}") from None
        body = "\n".join(f"  - {origin(p, chain, source)}: {m}" for p, m in lines)
        raise ScenarioError(f"{source}: {len(lines)} problems:\n{body}") from None


M = TypeVar("M", bound=BaseModel)


def load_toml_model(path: Path, model: type[M], fields: str) -> M:
    """``path`` read as UTF-8 TOML and validated as ``model`` (a sweep or a map file); every
    problem is one ``ScenarioError`` naming the path: not UTF-8, not TOML, or the first schema
    error (``fields``, e.g. "fields: a, b", follows the message of an unknown field)."""
    try:
        return model.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{path}: not UTF-8 text (offset {err.start}); save it as "
                            "UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}") from None
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        extra = f"; {fields}" if e["type"] == "extra_forbidden" else ""
        raise ScenarioError(f"{path}: {where}: {e['msg']}{extra}") from None


def _describe(e: Mapping[str, Any], data: Any, chain: list[tuple[str, dict[str, Any]]],
              root: type[BaseModel]) -> tuple[tuple[Any, ...], str]:
    """``(key path, message)`` for one pydantic error, tags of tagged unions dropped."""
    keys, parts, models = _walk(e["loc"], data, root)
    path = "".join(parts) or "(scenario)"
    kind, msg, value = e["type"], e["msg"], e.get("input")
    shown = _show(value)
    if kind == "extra_forbidden":
        allowed = sorted(models[-2].model_fields) if len(models) > 1 and models[-2] else []
        close = difflib.get_close_matches(str(keys[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        where = "".join(parts[:-1]) or "the top level"
        return keys, (f"{path} = {shown} is not a known field; {hint}"
                      f"fields of {where}: {', '.join(allowed)}")
    if kind == "missing":
        return keys, f"{path} is required"
    if kind == "union_tag_invalid":
        tag = e["ctx"]["discriminator"].strip("'")
        tags = [t.strip(" '") for t in e["ctx"]["expected_tags"].split(",")]
        close = difflib.get_close_matches(str(e["ctx"]["tag"]), tags, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (*keys, tag), (f"{path}.{tag} = {e['ctx']['tag']!r} is unknown; {hint}"
                              f"choose one of: {', '.join(tags)}")
    if kind == "union_tag_not_found":
        tag = e["ctx"]["discriminator"].strip("'")
        return keys, f"{path} needs a `{tag}` field naming its type"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if not e["loc"]:
        return keys, msg
    return keys, f"{path} = {shown}: {msg}"


def _walk(loc: tuple[Any, ...], data: Any, root: type[BaseModel]
          ) -> tuple[tuple[Any, ...], list[str], list[Any]]:
    """Follow ``loc`` through the input, skipping union tags; also track the model at each step.

    Returns the key path into the raw data, display parts (``survey``, ``.support``,
    ``[0]``), and the pydantic model class at each level (None where not a model).
    """
    keys: list[Any] = []
    parts: list[str] = []
    models: list[Any] = [root]
    node, tp = data, root
    for item in loc:
        union = _tagged_members(tp)
        if union is not None and isinstance(item, str) and item in union:
            tp = union[item]
            models[-1] = tp
            continue
        parent = node
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(item if not parts else f".{item}")
            node = node.get(item) if isinstance(node, dict) else None
        keys.append(item)
        tp = _child_type(tp, item)
        if tp is DynamicsParams and isinstance(parent, dict):
            tp = _params_class(parent.get("family"))
        models.append(tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None)
    return tuple(keys), parts, models


def _params_class(family: Any) -> type[DynamicsParams]:
    try:
        return society_class(str(family)).Params
    except ValueError:
        return DynamicsParams


def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _tagged_members(tp: Any) -> dict[str, type[BaseModel]] | None:
    """tag value -> model class for a discriminated union type, else None."""
    tp = _strip(tp)
    if typing.get_origin(tp) not in (Union, types.UnionType):
        return None
    out = {}
    for member in typing.get_args(tp):
        member = _strip(member)
        if not (isinstance(member, type) and issubclass(member, BaseModel)):
            continue
        for name in ("kind", "family"):
            f = member.model_fields.get(name)
            if f is not None and typing.get_origin(f.annotation) is Literal:
                out.update({str(v): member for v in typing.get_args(f.annotation)})
    return out or None


def _child_type(tp: Any, item: Any) -> Any:
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        f = tp.model_fields.get(item) if isinstance(item, str) else None
        return f.annotation if f is not None else None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _child_type(non_none[0], item) if len(non_none) == 1 else None
    if origin in (list, tuple) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def origin(keys: tuple[Any, ...], chain: list[tuple[str, dict[str, Any]]], source: str) -> str:
    """The most derived file in the ``extends`` chain that sets the field at ``keys``."""
    for i in range(len(keys), 0, -1):
        for file, raw in chain:
            node: Any = raw
            for k in keys[:i]:
                if (isinstance(node, dict) and k in node
                        or isinstance(node, list) and isinstance(k, int) and k < len(node)):
                    node = node[k]
                else:
                    break
            else:
                return file
    return source


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["origin", "validate_model"]
