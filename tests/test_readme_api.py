"""README's API table names every public method of the handle, and nothing that is not one."""

from __future__ import annotations

import re
from pathlib import Path

from locust_kv import KV

README = Path(__file__).resolve().parent.parent / "README.md"
NOT_METHODS = {"backend", "scope", "location", "serialization", "options", "closed", "read_only"}


def documented_methods() -> set[str]:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## The API") : text.index("## Backends")]
    names = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            first_cell = row.split(" | ")[0]
            names |= set(re.findall(r"`(\w+)(?:\(|`)", first_cell))
    return names


def test_every_public_method_is_in_the_readme_api_table() -> None:
    public = {name for name in dir(KV) if not name.startswith("_") and name not in NOT_METHODS}
    documented = documented_methods()
    assert public - documented == set(), "methods missing from README's API table"
    assert documented - public == set(), "README's API table names methods the handle does not have"
