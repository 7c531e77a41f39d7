"""Session tokens that expire: log in once per token life, shared by every user of an account, across two processes.

    locust -f examples/session_tokens.py --headless -u 20 -r 20 -t 4s --processes 2 --kv-backend disk --kv-path .locust-kv-examples/sessions.lmdb --kv-clear

``set(key, value, ttl=seconds)`` stores a key that the store forgets that
many seconds later, for every operation of every process at once: ``get``
raises KeyNotFoundError (or returns its default), ``exists`` is False, and
it is no longer counted, listed or backed up. ``ttl(key)`` says how long is
left (None: never expires), ``expire`` sets a new life, ``persist`` makes
the key permanent, and a plain ``set`` drops the expiry. ``set_if_absent``,
``get_or_set`` and ``increment_by`` apply their ttl only when they create
the key.

Under load, users share ACCOUNTS accounts. To call the "API", a user needs
its account's session token: it reads it from the store, and only when the
token is missing (expired) does it log in and offer a new one with
``set_if_absent(..., ttl=TOKEN_LIFE)``, so that two users who find it
missing at once end up with one token, the first stored. Each token records
when it was issued. After the load: no user ever got a token past its life
from the store, every account logged in again after its tokens expired
(several logins each, not one per call), the tokens were shared (far more
calls than logins), and once a life has passed the store holds no session,
which ``purge_expired`` then frees. A failed check exits 1.
"""

from __future__ import annotations

import logging
import random
import secrets
import time

from locust import User, between, task

from locust_kv.errors import KeyNotFoundError
from locust_kv.plugin import after_load, before_load

ACCOUNTS = 8
TOKEN_LIFE = 1.0
"""Seconds a session token lives."""
SLACK = 0.25
"""Seconds a token may be seen past its recorded life: the store set its expiry a little after the user stamped it."""

logger = logging.getLogger("examples.session_tokens")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.set("tour:token", "abc", ttl=30)                  # expires in 30 s
    left = kv.ttl("tour:token")
    assert 29 < left <= 30, left
    assert kv.expire("tour:token", 60)                   # a new life (False for an absent key)
    assert kv.persist("tour:token") and kv.ttl("tour:token") is None  # permanent now
    kv.set("tour:token", "def", ttl=30)
    kv.set("tour:token", "ghi")                          # a plain set drops the expiry
    assert kv.ttl("tour:token") is None

    kv.set("tour:otp", 123456, ttl=0.05)
    time.sleep(0.1)
    assert not kv.exists("tour:otp") and kv.get("tour:otp", None) is None
    try:
        kv.ttl("tour:otp")
    except KeyNotFoundError:                             # expired: absent for every operation
        pass
    else:
        raise AssertionError("an expired key should be absent")

    assert kv.increment_by("tour:window", 1, ttl=30) == 1  # creates the counter: its window ends in 30 s
    assert kv.increment_by("tour:window", 1, ttl=99) == 2  # counts in the same window
    assert kv.ttl("tour:window") <= 30
    kv.delete_prefix("tour:")


class ApiUser(User):
    wait_time = between(0.01, 0.05)

    def on_start(self):
        self.kv = self.environment.kv
        self.account = random.randrange(ACCOUNTS)

    def token(self):
        key = f"session:{self.account}"
        session = self.kv.get(key, None)
        if session is None:  # none yet, or expired: log in, and offer the new token
            self.kv.increment_by(f"logins:{self.account}", 1)
            fresh = {"token": secrets.token_hex(8), "issued_at": time.time()}
            if not self.kv.set_if_absent(key, fresh, ttl=TOKEN_LIFE):
                session = self.kv.get(key, None)  # another user's login won: use its token
            session = session or fresh
        if time.time() > session["issued_at"] + TOKEN_LIFE + SLACK:
            self.kv.increment_by("check:stale-tokens", 1)
        return session["token"]

    @task
    def call_api(self):
        self.token()
        self.kv.increment_by("calls", 1)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    logins = {account: kv.get(f"logins:{account}", 0) for account in range(ACCOUNTS)}
    calls, stale = kv.get("calls", 0), kv.get("check:stale-tokens", 0)
    used = [account for account, n in logins.items() if n]
    time.sleep(TOKEN_LIFE + 0.1)  # every token issued during the load has expired now
    left = kv.count("session:")
    purged = kv.purge_expired()
    checks = {
        f"no token was used past its life ({stale} stale)": stale == 0,
        f"every account in use logged in again after its token expired ({logins})":
            bool(used) and all(logins[account] >= 2 for account in used),
        f"tokens were shared: {calls} calls for {sum(logins.values())} logins": calls > 5 * sum(logins.values()),
        f"no session outlived its life ({left} left; {purged} purged)": left == 0,
    }  # fmt: skip
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
