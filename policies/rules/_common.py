"""Helpers shared by the rules: unknown values, property access, IAM-style policy documents.

Unknown values: during ``pulumi preview`` an input that depends on another resource's output is not
known yet. ``pulumi_policy`` hands validations a proxy of the inputs in which such a value is one of
the ``UNKNOWN_*_VALUE`` sentinel strings, and reading it through the proxy raises
``UnknownValueError`` (the engine then skips the whole policy for that resource). The rules instead
read a plain copy (``plain``) in which sentinels become the ``UNKNOWN`` marker, and skip exactly the
checks whose value is unknown: no violation is ever reported on a value that is not known.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import EnforcementLevel, ResourceValidationArgs
from pulumi_policy.proxy import (  # the SDK's own representation of unknowns
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    _DictProxy,
    _ListProxy,
)

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

_SENTINELS = frozenset(
    {
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_OBJECT_VALUE,
        UNKNOWN_STRING_VALUE,
    }
)


class _Unknown:
    """Marker for a value that is not known during preview."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"

    def __bool__(self) -> bool:
        return False


UNKNOWN: Any = _Unknown()


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN or (isinstance(value, str) and value in _SENTINELS)


def plain(value: Any) -> Any:
    """A plain copy of ``value`` (dicts, lists, scalars) with unknown sentinels replaced by UNKNOWN.

    Reads the targets behind ``pulumi_policy``'s unknown-checking proxies, so it never raises
    ``UnknownValueError``.
    """
    if isinstance(value, _DictProxy | _ListProxy):
        value = value["__target"]  # the proxies hand out their raw target under this key
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {str(k): plain(value[k]) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(v) for v in value]
    if isinstance(value, str) and value in _SENTINELS:
        return UNKNOWN
    return value


def dig(value: Any, *path: str | int) -> Any:
    """``value[path[0]][path[1]]...``: None when absent, UNKNOWN as soon as a step is unknown."""
    for key in path:
        if is_unknown(value):
            return UNKNOWN
        if isinstance(key, int):
            if not isinstance(value, list) or not -len(value) <= key < len(value):
                return None
            value = value[key]
        else:
            if isinstance(value, list) and len(value) == 1:
                value = value[0]  # a nested single object recorded as a one-element list
            if not isinstance(value, dict):
                return None
            value = value.get(key)
    return UNKNOWN if is_unknown(value) else value


def first(value: Any) -> Any:
    """Nested single-object inputs may be recorded as an object or a one-element list."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def inputs(args: ResourceValidationArgs, types: Iterable[str]) -> dict[str, Any] | None:
    """The plain inputs of the resource when its type is one of ``types``, else None."""
    if args.resource_type not in types:
        return None
    return plain(args.props)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def is_blank(value: Any) -> bool:
    """True when a known value is missing or empty (None, "", [], {})."""
    if is_unknown(value):
        return False
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


def show(value: Any) -> str:
    """A value as it appears in messages: JSON for known values, <unknown> otherwise."""
    if is_unknown(value):
        return "<unknown>"
    return json.dumps(value, sort_keys=True)


# --- IAM-style policy documents (IAM, S3 bucket policies, KMS key policies) ---------------------


class InvalidDocument(ValueError):
    pass


def parse_document(value: Any) -> dict[str, Any] | None:
    """A policy document from a JSON string or a dict; None when absent, UNKNOWN when unknown.

    Raises InvalidDocument when the string is not a JSON object.
    """
    if is_unknown(value):
        return UNKNOWN
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidDocument(f"is not valid JSON ({exc.msg} at char {exc.pos})") from exc
        if not isinstance(doc, dict):
            raise InvalidDocument("is not a JSON object")
        return doc
    raise InvalidDocument(f"has unsupported type {type(value).__name__}")


def statements(doc: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not doc or is_unknown(doc):
        return []
    return [s for s in as_list(doc.get("Statement")) if isinstance(s, dict)]


def statement_label(stmt: Mapping[str, Any], index: int) -> str:
    sid = stmt.get("Sid")
    return f"'{sid}'" if isinstance(sid, str) and sid else f"#{index}"


def allow_statements(doc: Mapping[str, Any] | None) -> Iterator[tuple[int, str, dict[str, Any]]]:
    for index, stmt in enumerate(statements(doc)):
        if stmt.get("Effect") == "Allow":
            yield index, statement_label(stmt, index), stmt


def principal_is_public(principal: Any) -> bool:
    """Principal "*" or {"AWS": "*"} (also inside a list)."""
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return "*" in as_list(principal.get("AWS"))
    return False
