"""Leases bound to the Locust user that made them: released when the user stops, whatever stops it.

A claim (``claim_key``, ``claim_random``...) made on the run's store from
inside a Locust user's greenlet (its tasks, ``on_start``, ``on_stop``) is
remembered for that greenlet, as ``token -> Claim`` (a token is unique in
its store: a counter of every claim). Releasing or
completing it forgets it. When the greenlet ends, for any reason (a ramp-down
or a LoadTestShape stopping users, ``StopUser``, the end of the test, a worker
that quits), the claims it still holds are released:

- the greenlet's ``rawlink`` callback, which gevent runs in its hub, only
  moves them to a list and wakes the releaser (one greenlet), which releases
  them in batches of up to MAX_BATCH with ``release_claims``: the hub never
  waits on the store (a redis call is network I/O);
- at the end of a test (``test_stop``), before a worker answers the master's
  users-stopped barrier, before ``after_load`` and at quit, the plugin calls
  :meth:`UserLeases.settle`, which hands over what the ended users still hold
  and waits for the releaser: every lease a user left is back in the pool
  before the invariants are checked.

A claim made outside any user (``before_load``, a ``test_start`` listener, a
greenlet a task spawned) is not bound: its maker releases it, or it expires.
A process killed with ``kill -9`` releases nothing: its users' leases end at
their ``expires_at``.

The cost on the hot path is a dict lookup per claim call and a dict update
per claim granted or ended; no store call is added. The releases the plugin
makes are not reported to Locust's statistics.

Leases bind on the run's store (``environment.kv`` and every other handle on
the same store in the process): the hooks are those of ``_Store``.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
from typing import TYPE_CHECKING, Any, Final

import gevent
from gevent import getcurrent
from locust import User

from ..backends.base import MAX_BATCH, MAX_OWNER_BYTES
from ..errors import KVError
from ..store import KV

if TYPE_CHECKING:
    from ..results import Claim

__all__ = ["UserLeases"]

logger = logging.getLogger("locust_kv.plugin")

SETTLE_TIMEOUT: Final = 30.0
"""Seconds :meth:`UserLeases.settle` waits for the releaser (each release is one store call)."""


class _Holder:
    """One user's greenlet: its owner label and the leases it holds."""

    __slots__ = ("claims", "label")

    def __init__(self, label: str) -> None:
        self.label = label
        self.claims: dict[int, Claim] = {}  # token -> claim


def _user_of(greenlet: Any) -> User | None:
    """The User whose greenlet this is (Locust spawns it as ``run_user(user)``), or None."""
    args = getattr(greenlet, "args", None)
    if args:
        user = args[0]
        if isinstance(user, User) and getattr(user, "_greenlet", None) is greenlet:
            return user
    return None


def _bounded(label: str) -> str:
    """``label`` cut to the owner limit, on a character boundary."""
    data = label.encode()
    if len(data) <= MAX_OWNER_BYTES:
        return label
    return data[:MAX_OWNER_BYTES].decode(errors="ignore")


class UserLeases:
    """The leases of one process's Locust users on the run's store; see the module docstring."""

    def __init__(self) -> None:
        self._kv: KV | None = None
        self._holders: dict[Any, _Holder] = {}  # greenlet -> holder
        self._holder_of: dict[int, _Holder] = {}  # token -> holder
        self._pending: list[Claim] = []
        self._releaser: gevent.Greenlet | None = None
        self._numbers = itertools.count(1)
        self._process = ""
        self._pid = -1
        self.released = 0
        """Leases this process released for users that had stopped holding them."""

    # -- the store's hooks -------------------------------------------------------

    def attach(self, kv: KV) -> None:
        """Bind the leases of ``kv``'s store to the users that make them, from now on."""
        store = kv._store
        store.on_claim = self._on_claim
        store.on_unclaim = self._on_unclaim
        store.default_owner = self._default_owner
        self._kv = kv

    def detach(self, kv: KV) -> None:
        """Stop binding on ``kv``'s store (after :meth:`release_all`)."""
        store = kv._store
        if store.on_claim == self._on_claim:
            store.on_claim = store.on_unclaim = store.default_owner = None
        if self._kv is kv:
            self._kv = None

    def _holder(self) -> _Holder | None:
        """The current user's holder, created on its first use; None outside a user."""
        greenlet = getcurrent()
        holder = self._holders.get(greenlet)
        if holder is None:
            user = _user_of(greenlet)
            if user is None:
                return None
            holder = _Holder(_bounded(f"{self._process_label()}:{type(user).__name__}#{next(self._numbers)}"))
            self._holders[greenlet] = holder
            greenlet.rawlink(self._on_user_end)
        return holder

    def _process_label(self) -> str:
        pid = os.getpid()
        if pid != self._pid:  # computed once per process (--processes forks after import)
            self._pid = pid
            self._process = f"{socket.gethostname()}:{pid}"
        return self._process

    def _default_owner(self) -> str:
        holder = self._holder()
        return self._process_label() if holder is None else holder.label

    def _on_claim(self, claims: list[Claim]) -> None:
        holder = self._holder()
        if holder is None:
            return
        held, holder_of = holder.claims, self._holder_of
        for claim in claims:
            token = claim.token
            held[token] = claim
            holder_of[token] = holder

    def _on_unclaim(self, claims: list[Claim]) -> None:
        # Also a claim another greenlet made: a user may hand its Claim to another one.
        holder_of = self._holder_of
        for claim in claims:
            holder = holder_of.pop(claim.token, None)
            if holder is not None:
                held = holder.claims.pop(claim.token)
                if held.key != claim.key:  # a Claim made up with another's token: keep the real one
                    holder.claims[held.token] = held
                    holder_of[held.token] = holder

    # -- releasing -----------------------------------------------------------------

    def _on_user_end(self, greenlet: Any) -> None:
        """In gevent's hub, when a user's greenlet ended: hand its leases to the releaser."""
        holder = self._holders.pop(greenlet, None)
        if holder is not None and holder.claims:
            self._hand_over(holder)
            self._wake_releaser()

    def _hand_over(self, holder: _Holder) -> None:
        for token in holder.claims:
            self._holder_of.pop(token, None)
        self._pending.extend(holder.claims.values())
        holder.claims.clear()

    def _wake_releaser(self) -> None:
        if self._releaser is None and self._pending:
            self._releaser = gevent.spawn(self._release_pending)

    def _release_pending(self) -> None:
        try:
            pending = self._pending
            while pending:
                batch = pending[:MAX_BATCH]
                del pending[:MAX_BATCH]
                self._release(batch)
        finally:
            # No switch since the loop saw the list empty: a hand-over meanwhile finds no releaser and starts one.
            self._releaser = None

    def _release(self, batch: list[Claim]) -> None:
        kv = self._kv
        if kv is None or kv.closed:
            logger.warning("locust_kv: %d leases of stopped users were not released: the store is closed; "
                           "they end at their expiry", len(batch))  # fmt: skip
            return
        try:
            # KV's own method, not the handle's: the plugin's releases are not the users' load.
            self.released += len(KV.release_claims(kv, batch).done)
        except KVError as error:
            logger.warning("locust_kv: %d leases of stopped users were not released (%s); they end at their expiry",
                           len(batch), error)  # fmt: skip

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Release the leases of every user that has ended, and wait until the releaser is done.

        Users still running keep theirs. Called at test_stop, at the barrier
        and before after_load, from a greenlet (never the hub).
        """
        self._release_now([holder for greenlet, holder in self._holders.items() if greenlet.dead], timeout)

    def release_all(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Release every bound lease, of running users too (the store is about to close)."""
        self._release_now(list(self._holders.values()), timeout)

    def _release_now(self, holders: list[_Holder], timeout: float) -> None:
        for holder in holders:
            self._hand_over(holder)
        self._wake_releaser()
        releaser = self._releaser
        if releaser is not None and releaser is not getcurrent():
            releaser.join(timeout)
            if not releaser.dead:
                logger.warning("locust_kv: releasing the leases of stopped users took over %.0f s", timeout)
