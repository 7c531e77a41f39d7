"""The test accounts of the seeding and account_pool scenarios: their keys, their passwords, and the JSONL file they are imported from.

Run as a program it writes that file (all ACCOUNTS accounts, or the first
COUNT), the first step of building the snapshot a scenario restores::

    python e2e/accounts.py accounts.jsonl [COUNT]
    locust-kv snapshot import accounts.jsonl -o accounts.snapshot

Both the store's copy (restored from the snapshot) and the target service
(which derives each password from the account name) agree on the
credentials, so a login succeeds only with a password read from the store.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Final

ACCOUNTS: Final = 10_000
PREMIUM: Final = 100
"""The first PREMIUM accounts are premium; users ask for one half of the time, so they contend for them."""


def account_name(number: int) -> str:
    tier = "premium" if number < PREMIUM else "standard"
    return f"{tier}-{number:05d}"


def password_of(name: str) -> str:
    return hashlib.sha256(f"locust-kv e2e {name}".encode()).hexdigest()[:16]


def write_jsonl(path: str, count: int = ACCOUNTS) -> None:
    """Write the first ``count`` accounts as ``{"key", "value"}`` lines, the form ``locust-kv snapshot import`` reads."""
    with open(path, "w", encoding="utf-8") as out:
        for number in range(count):
            name = account_name(number)
            value = {"login": name, "password": password_of(name), "tier": name.split("-")[0]}
            out.write(json.dumps({"key": f"account:{name}", "value": value}) + "\n")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and not sys.argv[2].isdigit()):
        sys.exit("usage: python e2e/accounts.py OUTPUT.jsonl [COUNT]")
    write_jsonl(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else ACCOUNTS)
