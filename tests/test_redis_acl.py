"""The commands docs/redis-backend.md lists for a least-privilege ACL user are all the backend needs.

A real ACL user on the session's redis-server, allowed only the store's keys
and exactly the commands the document names (top level and inside the
scripts, which Redis checks too), runs every kind of operation: any command
missing from the list fails it with ``NOPERM``.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import redis

from locust_kv import open_kv

from .conftest import session_redis_url

ROOT = Path(__file__).resolve().parent.parent


def documented_commands() -> set[str]:
    text = (ROOT / "docs" / "redis-backend.md").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if "Prefer an ACL user" in line)
    listed = line.split("the commands the backend uses:", 1)[1]
    return {name.lower() for name in re.findall(r"`([A-Z][A-Z ]*[A-Z])`", listed)}


def test_a_user_allowed_only_the_documented_commands_runs_every_operation(tmp_path: Path) -> None:
    commands = documented_commands()
    assert {"evalsha", "hmget", "multi", "exec", "hsetnx"} <= commands
    url = session_redis_url()
    admin = redis.Redis.from_url(url)
    namespace = "acl" + secrets.token_hex(4)
    user, password = "kv" + secrets.token_hex(4), secrets.token_hex(12)
    admin.acl_setuser(
        user,
        reset=True,
        enabled=True,
        passwords=[f"+{password}"],
        keys=[f"lkv:{{{namespace}}}:*"],
        commands=["-@all"] + ["+" + name.replace(" ", "|") for name in sorted(commands)],
    )
    try:
        host = url.split("://", 1)[1]
        with open_kv(backend="redis", url=f"redis://{user}:{password}@{host}", namespace=namespace) as kv:
            kv.set("a", 1)
            kv.set("t", 1, ttl=60)
            assert kv.get("a") == 1 and kv.get("t") == 1 and kv.exists("t")
            kv.set_many({"m1": 1, "m2": 2}, ttl=60)
            assert [found.value for found in kv.get_many(["m1", "m2", "none"])] == [1, 2, None]
            kv.increment_by("n", 5, ttl=60)
            kv.get_or_set("g", 1)
            kv.swap("s", 1)
            kv.compare_and_swap("a", 1, 2)
            kv.compare_and_delete("a", 2)
            kv.expire("g", 30)
            assert kv.ttl("g") is not None
            kv.persist("g")
            assert kv.size() >= 5 and kv.count(start="m", end="n") == 2
            assert kv.list_keys(start="m", offset=1, limit=1) == ["m2"]
            assert kv.random_key() is not None and len(kv.random_keys(count=2)) == 2
            claim = kv.claim_key("m1", ttl=10)
            assert claim is not None
            kv.release_claim(claim)
            assert kv.claim_random(prefix="m", ttl=10) is not None
            with kv.lock("resource", ttl=5):
                assert kv.lock_status("resource").held
            kv.stats()
            kv.allocation_stats("m")
            assert kv.pop_random(prefix="s") is not None
            kv.delete_many(["m2"])
            kv.delete_prefix("n")
            kv.purge_expired()
            snapshot = tmp_path / "acl.kv"
            kv.backup(snapshot)
            kv.clear()
            assert kv.restore(snapshot).total_entries >= 2
            assert kv.get("t") == 1
            kv.delete("t")
            kv.clear()
    finally:
        admin.acl_deluser(user)
        admin.close()
