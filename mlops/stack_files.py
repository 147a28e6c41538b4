"""Writing one setting into a `Pulumi.<stack>.yaml` the way a reviewer would: that line only.

Comments, quoting and layout of every other line stay byte-identical (ruamel round-trip, then the
one rendered line spliced into the original); a change that would reformat another line is refused,
and the file is re-read through the settings loader before it is replaced atomically. Used by
`mlops release promote|rollback` (the pin) and `mlops bootstrap` (state bucket, secrets key).
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from io import StringIO
from pathlib import Path

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from mlops.settings import SettingsError, declared_keys, from_config_map, load_stack_file


class StackFileError(ValueError):
    """The stack file cannot take the change; the message names the file, the key or the line."""


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) for ruamel from the file's own layout; Pulumi's is (2, 4, 2)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    mapping = 2
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        if indent and not line.lstrip().startswith("- "):
            mapping = indent
            break
    offset = 2
    for before, line in zip(lines, lines[1:], strict=False):
        if line.lstrip().startswith("- ") and before.rstrip().endswith(":"):
            offset = (len(line) - len(line.lstrip(" "))) - (len(before) - len(before.lstrip(" ")))
            break
    return mapping, offset + 2, max(offset, 0)


def _insert_position(config: CommentedMap, key: str) -> int:
    """After the last present key that StackSettings declares before `key`; else at the end."""
    order = [declared.key for declared in declared_keys()]
    before = set(order[: order.index(key)])
    position = len(config)
    for index, present in enumerate(config):
        if present in before:
            position = index + 1
    return position


def write_setting(stack_file: Path, key: str, value: str) -> tuple[str, str]:
    """Set `key` (a namespaced setting) to `value` in a stack file: `write_settings` with one key."""
    return write_settings(stack_file, {key: value})


def write_settings(stack_file: Path, values: dict[str, str]) -> tuple[str, str]:
    """Set each key (a namespaced setting) to its value in a stack file, changing only those lines (or adding
    them where the settings declare them), comments and layout kept, in one write: the file is valid before and
    after, never in between (a pin and its image change together). Returns (old text, new text)."""
    path = Path(stack_file)
    attributes = {k.key: k.attribute for k in declared_keys()}
    for key in values:
        if key not in attributes:
            raise StackFileError(f"{key} is not a setting of this project (see Pulumi.yaml)")
    try:
        settings = load_stack_file(path)  # the file exists and is valid before we touch it
    except SettingsError as error:
        raise StackFileError(str(error)) from None
    old_text = path.read_text()
    mapping, sequence, offset = _guess_indent(old_text)
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=mapping, sequence=sequence, offset=offset)
    try:
        document = rt.load(old_text)
    except YAMLError as error:
        raise StackFileError(f"{path}: not valid YAML ({error})") from None
    config = document["config"]
    existing = {key: config.lc.key(key)[0] for key in values if key in config}
    for key, value in values.items():
        if key in config:
            config[key] = value
        else:
            config.insert(_insert_position(config, key), key, value)
    out = StringIO()
    rt.dump(document, out)
    new_text = out.getvalue()

    old_lines, new_lines = old_text.splitlines(keepends=True), new_text.splitlines(keepends=True)
    if len(existing) == len(values) and all(old_lines[line].lstrip().startswith(f"{key}:")
                                            for key, line in existing.items()):
        # Every key exists: splice ruamel's rendering of their lines into the untouched original, so the
        # rest of the file stays byte-identical whatever its formatting.
        rendered = {key: [line for line in new_lines if line.lstrip().startswith(f"{key}:")] for key in values}
        if all(len(lines) == 1 for lines in rendered.values()):
            spliced = list(old_lines)
            for key, line in existing.items():
                spliced[line] = rendered[key][0]
            new_lines = spliced
            new_text = "".join(new_lines)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        touched = old_lines[i1:i2] + new_lines[j1:j2]
        strays = [line for line in touched if not any(line.lstrip().startswith(f"{key}:") for key in values)]
        if strays:
            line_no = i1 + 1
            raise StackFileError(
                f"{path}: setting {', '.join(values)} would also reformat line {line_no} ({strays[0].rstrip()!r}); "
                f"edit the file by hand or normalise its formatting first"
            )
    parsed = yaml.safe_load(new_text)
    try:
        check = from_config_map(settings.stack, parsed["config"], path.name)
    except SettingsError as error:
        raise StackFileError(str(error)) from None
    for key, value in values.items():
        if str(getattr(check, attributes[key])) != value:
            raise StackFileError(f"{path}: {key} reads back as {getattr(check, attributes[key])!r}, not {value!r}")

    if new_text != old_text:
        _replace(path, new_text)
    return old_text, new_text


def _replace(path: Path, text: str) -> None:
    """Write `text` over `path` atomically, keeping its mode."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


SECRETS_KEYS = ("secretsprovider", "encryptedkey")


def write_secrets_provider(stack_file: Path, provider: str, encrypted_key: str) -> bool:
    """Put Pulumi's two top-level secrets lines (`pulumi stack init --secrets-provider` writes them) right
    above `config:`, replacing earlier ones; every other line kept. True when the file changed."""
    path = Path(stack_file)
    old_text = path.read_text()
    lines = [
        line for line in old_text.splitlines(keepends=True) if not line.startswith(tuple(f"{k}:" for k in SECRETS_KEYS))
    ]
    try:
        position = next(i for i, line in enumerate(lines) if line.startswith("config:"))
    except StopIteration:
        raise StackFileError(f"{path}: no top-level `config:` line to put the secrets provider above") from None
    new_text = "".join(
        [*lines[:position], f"secretsprovider: {provider}\n", f"encryptedkey: {encrypted_key}\n", *lines[position:]]
    )
    document = yaml.safe_load(new_text)
    if (document.get("secretsprovider"), document.get("encryptedkey")) != (provider, encrypted_key):
        raise StackFileError(f"{path}: the secrets provider lines do not read back as written")
    if new_text != old_text:
        _replace(path, new_text)
    return new_text != old_text
