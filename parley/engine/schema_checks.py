"""Checks on a JSON schema that values will be validated against during or after a call.

A tool's ``parameters`` and the analysis ``structured_data_schema`` are tenant input, and the values
checked against them are steered by a caller (through the model), on the server's event loop. So each
schema is checked once, when it is saved (or its tool registered), for what would make validating with
it slow or impossible later:

- ``pattern``/``patternProperties``: Python's ``re`` backtracks, so ``^(a+)+$`` takes exponential time
  over an argument such as ``aaaa…!``;
- ``$ref``: only local JSON pointers (``#/...``), each to a schema in the document, none leading back to
  itself (the validator would recurse until it failed), and together expanding the schema to at most
  ``MAX_EXPANDED_SUBSCHEMAS`` (a few references to references copy a schema 2^n times);
- ``$id`` below the top: it would change what a local ``$ref`` inside it points to.

Then the schema must be valid by the draft 2020-12 meta-schema, the dialect ``validator`` uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import jsonschema
from referencing.exceptions import Unresolvable

UNSAFE_KEYWORDS = frozenset({"pattern", "patternProperties", "$dynamicRef", "$recursiveRef"})
"""Regex keywords (see above) and references this check cannot follow."""
NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
"""Keywords whose value maps names to schemas: a property may be called ``pattern`` or ``$ref``."""
MAX_EXPANDED_SUBSCHEMAS = 2000
"""Subschemas once every ``$ref`` is replaced by what it points to: about what 16 kB written out holds."""
MAX_REF_DEPTH = 8
"""References followed through references: the validator recurses once per level, and more per keyword."""

BROKEN_SCHEMA_ERRORS: tuple[type[BaseException], ...] = (
    jsonschema.SchemaError,
    Unresolvable,
    RecursionError,
)
"""What validating with a schema that missed these checks can raise (one stored before they existed)."""


def without_patterns(schema: Any, keep: frozenset[str] = frozenset(), *, names: bool = False) -> Any:
    """``schema`` with its ``pattern`` and ``patternProperties`` keywords left out (but ``pattern``
    values in ``keep``, and properties that are *called* "pattern").

    A tool's parameters may carry patterns: they tell the model the shape of a value ("^[0-9]{5}$"), and
    agents saved before they were checked have them. Enforcing one with Python's backtracking ``re`` is
    what could hang the server, so arguments are validated without them; the tool itself checks its
    values (a webhook's server does anyway)."""
    if isinstance(schema, list):
        return [without_patterns(child, keep) for child in schema]
    if not isinstance(schema, Mapping):
        return schema
    kept: dict[str, Any] = {}
    for key, child in schema.items():
        if names:
            kept[key] = without_patterns(child, keep)
        elif key == "patternProperties" or (
            key == "pattern" and not (isinstance(child, str) and child in keep)
        ):
            continue
        else:
            kept[key] = without_patterns(child, keep, names=key in NAME_MAPS and isinstance(child, Mapping))
    return kept


class UnsupportedSchema(ValueError):
    """A JSON schema Parley will not validate with; the message says what is wrong and where."""


def validator(schema: Mapping[str, Any]) -> jsonschema.Draft202012Validator:
    """The validator every checked schema is used with: draft 2020-12, whatever ``$schema`` says."""
    return jsonschema.Draft202012Validator(schema)


def check_schema(schema: Mapping[str, Any], *, allowed_patterns: frozenset[str] = frozenset()) -> None:
    """Raise ``UnsupportedSchema`` unless ``schema`` is safe and valid to validate with (see above).

    ``allowed_patterns``: regexes Parley's own tools use, known to run in linear time."""
    try:
        _Expansion(schema, allowed_patterns).size(schema, "")
    except RecursionError:
        raise UnsupportedSchema("the schema is nested too deeply") from None
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise UnsupportedSchema(f"not a valid JSON schema: {exc.message}") from None


class _Expansion:
    """One walk of a schema that follows its references, counting subschemas as a validator meets them."""

    def __init__(self, root: Mapping[str, Any], allowed_patterns: frozenset[str]) -> None:
        self.root = root
        self.allowed_patterns = allowed_patterns
        self.sizes: dict[tuple[str, ...], int] = {}
        self.following: list[tuple[str, ...]] = []

    def size(self, node: Any, where: str, *, names: bool = False) -> int:
        """Subschemas in ``node`` (references expanded); ``names``: its keys are names, not keywords."""
        if isinstance(node, list):
            return sum(self.size(child, f"{where}[{i}]") for i, child in enumerate(node))
        if not isinstance(node, Mapping):
            return 0
        total = 1
        for key, child in node.items():
            path = f"{where}.{key}" if where else str(key)
            if names:
                total += self.size(child, path)
                continue
            self._keyword(node, key, child, path)
            if key == "$ref":
                total += self._follow(child, path)
            total += self.size(child, path, names=key in NAME_MAPS and isinstance(child, Mapping))
            if total > MAX_EXPANDED_SUBSCHEMAS:
                raise UnsupportedSchema(
                    f"the schema expands to more than {MAX_EXPANDED_SUBSCHEMAS} subschemas once its "
                    f"$ref values are followed (at {path})"
                )
        return total

    def _keyword(self, node: Mapping[str, Any], key: str, child: Any, where: str) -> None:
        allowed = key == "pattern" and isinstance(child, str) and child in self.allowed_patterns
        if key in UNSAFE_KEYWORDS and not allowed:
            raise UnsupportedSchema(f"{key} is not supported (at {where})")
        if key == "$id" and node is not self.root:
            raise UnsupportedSchema(f"$id is only allowed at the top of the schema (at {where})")

    def _follow(self, ref: Any, where: str) -> int:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UnsupportedSchema(f"only local $ref values (#/...) are allowed (at {where})")
        fragment = unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            raise UnsupportedSchema(f"$ref {ref!r} is not a JSON pointer (#/...) (at {where})")
        pointer = tuple(p.replace("~1", "/").replace("~0", "~") for p in fragment.split("/")[1:])
        if pointer in self.sizes:
            return self.sizes[pointer]
        if pointer in self.following:
            raise UnsupportedSchema(f"$ref {ref!r} leads back to itself (at {where})")
        if len(self.following) >= MAX_REF_DEPTH:
            raise UnsupportedSchema(f"$ref values lead through more than {MAX_REF_DEPTH} others (at {where})")
        target = self._resolve(pointer, ref, where)
        self.following.append(pointer)
        size = self.size(target, ".".join(pointer))
        self.following.pop()
        self.sizes[pointer] = size
        return size

    def _resolve(self, pointer: tuple[str, ...], ref: str, where: str) -> Any:
        node: Any = self.root
        for part in pointer:
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isascii() and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise UnsupportedSchema(f"$ref {ref!r} points to nothing in the schema (at {where})")
        if not isinstance(node, Mapping | bool):
            raise UnsupportedSchema(f"$ref {ref!r} does not point to a schema (at {where})")
        return node
