"""Reading a `Pulumi.<stack>.yaml` strictly: what YAML and Pulumi would accept silently, refused with its line.

- The file is UTF-8 (Pulumi reads it so): another encoding is one error naming the line of the first bad byte.
- A duplicate key, at any depth, is one error naming both lines: PyYAML (and Pulumi) keep the last one, so a
  reviewer reading the first would approve a value that is not deployed.
- The line of every `config:` key is kept, so a bad key's error names it (`from_config_map(lines=...)`).
- Provider keys are checked against the provider's own config schema: the keys pulumi-aws's SDK reads
  (`pulumi_aws/config/vars.py`, generated from the provider schema of the installed version). A misspelled
  `aws:regoin` would otherwise be ignored by the provider, and the stack deployed to its default region.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml


class StackYamlError(ValueError):
    """The file is not a stack file Pulumi would read as written; `line` is 1-based (0: the whole file)."""

    def __init__(self, line: int, message: str):
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[arg-type]
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise StackYamlError(line, f"a key must be a plain value, not {type(key).__name__} {key!r}")
        if key in seen:
            raise StackYamlError(line, f"duplicate key {key!r} (first at line {seen[key]}); YAML keeps only the last")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise StackYamlError(line, f"byte 0x{data[error.start]:02x} is not UTF-8; save the file as UTF-8") from None


def _config_lines(root: yaml.Node) -> dict[str, int]:
    """Line of each key of the top-level `config:` mapping."""
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key_node, value_node in root.value:
        if key_node.value == "config" and isinstance(value_node, yaml.MappingNode):
            return {str(k.value): k.start_mark.line + 1 for k, _v in value_node.value}
    return {}


def read(path: Path) -> tuple[Any, dict[str, int]]:
    """(the parsed document, line of each `config:` key). Raises StackYamlError."""
    text = _decode(path.read_bytes())
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise StackYamlError(mark.line + 1 if mark else 0, "not valid YAML") from None
    return document, _config_lines(root) if root is not None else {}


# The namespaces a stack file of this project may hold: its own, the providers its program configures from the
# stack (their keys checked below), and Pulumi's own (`pulumi:tags`, `pulumi:autonaming`, ...: Pulumi checks them).
PROVIDER_SDKS = {"aws": "pulumi_aws"}
PULUMI_NAMESPACE = "pulumi"
_CONFIG_READ = re.compile(r"""__config__\.get(?:_\w+)?\(['"]([A-Za-z0-9]+)['"]""")


@cache
def provider_keys(namespace: str) -> frozenset[str]:
    """The config keys the installed provider SDK reads (e.g. aws: region, allowedAccountIds, defaultTags, ...)."""
    spec = importlib.util.find_spec(PROVIDER_SDKS[namespace])  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{PROVIDER_SDKS[namespace]} is not installed: it is a dependency of this project")
    source = Path(next(iter(spec.submodule_search_locations))) / "config" / "vars.py"
    keys = frozenset(_CONFIG_READ.findall(source.read_text()))
    if "region" not in keys and namespace == "aws":
        raise RuntimeError(f"{source}: no provider config keys found; has pulumi-aws changed its SDK layout?")
    return keys
