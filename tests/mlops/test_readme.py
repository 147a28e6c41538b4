from __future__ import annotations

import re

from mlops.settings import REPO_ROOT, declared_keys


def test_readme_starts_with_the_two_commands() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first_block
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make run", "make test"]


def test_readme_configuration_reference_lists_every_key() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    table = {m.group(1) for m in re.finditer(r"^\| `([A-Za-z0-9]+)` \|", text, re.M)}
    assert table == {key.key.split(":", 1)[1] for key in declared_keys()}
