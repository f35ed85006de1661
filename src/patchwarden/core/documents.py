"""Plain-data documents (YAML or JSON) parsed safely: no I/O, text in, data out.

Rollout specs, the emergency profile, script package commands and baseline rules that
users hand to the CLI (``cli/documents.py`` reads the file), and YAML feed records
(``feeds/formats``), all go through here. Parsing:

* refuses text over a size bound before parsing anything (``parse_document``);
* refuses YAML anchors and aliases (``&a`` / ``*a``), naming the line: an alias
  repeats a value without writing it out, so a 2 KB file can stand for billions of
  values (the "billion laughs"); plain data never needs them;
* refuses nesting deeper than ``MAX_DEPTH`` (checked on the parser's events, before
  any value is built, so a file of ``[[[[…`` cannot exhaust the stack);
* builds plain data only: strings, whole numbers, finite numbers, booleans, null,
  lists and objects with string keys. YAML tags (``!!python/…``, ``!!binary``,
  ``!!set``), merge keys (``<<``), duplicate keys, NaN and infinity are refused;
  an unquoted date stays the string it is written as.

Every problem is a ``ValidationFailed`` that names the source and the line.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from patchwarden.core.errors import PayloadTooLarge, ValidationFailed

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_DEPTH = 32

# The C parser when PyYAML was built with libyaml: events and construction stay fast
# even at the size limit.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
)
_STRUCTURE_HINT = "write the values out: anchors, aliases and tags are not accepted here"


def parse_document(
    text: str, *, source: str, yaml_syntax: bool, what: str = "a document"
) -> dict[str, Any]:
    """The object ``text`` holds (YAML or JSON, with the rules of the module doc)."""
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(f"{source} is larger than {MAX_DOCUMENT_BYTES // 1024} KiB")
    value = plain_yaml(text, source) if yaml_syntax else _parse_json(text, source)
    if not isinstance(value, dict):
        raise ValidationFailed(f"{source}: {what} must be an object (key: value pairs)")
    return value


# -------------------------------------------------------------------------- YAML


def plain_yaml(text: str, source: str) -> object:
    """The plain data of a YAML text (any size: the caller bounds it), or
    ValidationFailed naming ``source`` and the line."""
    try:
        _check_events(text, source)
        loader = _PlainLoader(text)
        loader.plain_source = source
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = source if mark is None else f"{source}, line {mark.line + 1}"
        problem = exc.problem or exc.context or "invalid YAML"
        raise ValidationFailed(f"{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"{source}: not valid YAML ({exc})") from None


def _check_events(text: str, source: str) -> None:
    """Refuse anchors, aliases and deep nesting from the parser's events (no values
    are built yet, so a hostile file costs only its own size)."""
    depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.AliasEvent):
            raise ValidationFailed(
                f"{source}, line {line}: YAML aliases (*{event.anchor}) are not accepted",
                hint=_STRUCTURE_HINT,
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise ValidationFailed(
                f"{source}, line {line}: YAML anchors (&{anchor}) are not accepted",
                hint=_STRUCTURE_HINT,
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ValidationFailed(
                    f"{source}, line {line}: nested more than {MAX_DEPTH} levels deep"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _refuse_node(loader: Any, node: yaml.Node, problem: str) -> None:
    raise ValidationFailed(f"{loader.plain_source}, line {node.start_mark.line + 1}: {problem}")


class _PlainLoader(_BaseLoader):  # type: ignore[misc]
    """The safe loader, narrowed to plain data (see the module doc)."""

    plain_source = "document"

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node.tag not in _PLAIN_TAGS:
            _refuse_node(self, node, f"the YAML tag {node.tag} is not accepted (plain data only)")
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag != "tag:yaml.org,2002:str":
                merge = key_node.tag.endswith(":merge")
                _refuse_node(
                    self,
                    key_node,
                    "merge keys (<<) are not accepted" if merge else "keys must be text",
                )
            key = self.construct_object(key_node, deep=deep)
            if key in mapping:
                _refuse_node(self, key_node, f"the key {key!r} appears twice")
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = float(super().construct_yaml_float(node))
        if not math.isfinite(value):
            _refuse_node(self, node, "NaN and infinity are not accepted")
        return value

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return int(super().construct_yaml_int(node))
        except ValueError:  # over Python's digit limit for int()
            _refuse_node(self, node, "the number is too long")
            raise  # not reached: _refuse_node raises

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> str:
        # Dates stay text: the models decide what a date field means.
        return str(self.construct_scalar(node))


_PlainLoader.add_constructor("tag:yaml.org,2002:map", _PlainLoader.construct_yaml_map)
_PlainLoader.add_constructor("tag:yaml.org,2002:float", _PlainLoader.construct_yaml_float)
_PlainLoader.add_constructor("tag:yaml.org,2002:int", _PlainLoader.construct_yaml_int)
_PlainLoader.add_constructor("tag:yaml.org,2002:timestamp", _PlainLoader.construct_yaml_timestamp)


# -------------------------------------------------------------------------- JSON


def _parse_json(text: str, source: str) -> object:
    def refuse_constant(name: str) -> object:
        raise ValidationFailed(f"{source}: {name} is not accepted (numbers must be finite)")

    def refuse_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        mapping: dict[str, object] = {}
        for key, item in pairs:
            if key in mapping:
                raise ValidationFailed(f"{source}: the key {key!r} appears twice")
            mapping[key] = item
        return mapping

    try:
        value = json.loads(
            text, parse_constant=refuse_constant, object_pairs_hook=refuse_duplicates
        )
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            f"{source}, line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise ValidationFailed(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # e.g. a number over Python's digit limit
        raise ValidationFailed(f"{source}: not valid JSON ({exc})") from None
    _check_depth(value, source)
    return value


def _check_depth(value: object, source: str) -> None:
    """Refuse values nested deeper than ``MAX_DEPTH`` (walked without recursion)."""
    todo: list[tuple[object, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            if depth + 1 > MAX_DEPTH:
                raise ValidationFailed(f"{source}: nested more than {MAX_DEPTH} levels deep")
            children = item.values() if isinstance(item, dict) else item
            todo.extend((child, depth + 1) for child in children)
