"""What every e2e scenario shares: user ids, the deliberate bug, and the verdict.

A scenario is a locustfile whose users work on ``environment.kv`` (the
locust_kv plugin). It states its invariant as a function registered with
:func:`invariant`. The plugin's ``after_load`` event runs that function once
per run, in the master or standalone process, after every user of every
process has stopped, so the check reads the final state of the shared store
whatever the topology (one process, or ``--processes N`` on a disk store).

The verdict goes three ways, so that it reaches whoever runs the scenario:

- a log line, ``e2e <scenario>: PASS ...`` or ``e2e <scenario>: FAIL: <why>``;
- the exit status: a violated invariant sets ``environment.process_exit_code = 1``;
- a JSON file at ``$E2E_VERDICT`` when set (``e2e/run.py`` reads it to say why a run failed).

``E2E_BREAK=1`` makes each scenario commit one deliberate bug of the kind its
invariant exists to catch, exactly once per run (:func:`sabotage`). The test
suite runs every scenario that way and expects the runner to report the
failure and its reason: a check that never fails proves nothing.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from locust_kv.errors import KeyNotFoundError
from locust_kv.plugin import after_load, before_load

if TYPE_CHECKING:
    from locust.env import Environment

    from locust_kv import KV

__all__ = ["BREAK", "Verdict", "counter", "invariant", "sabotage", "setup", "user_id", "workdir"]

logger = logging.getLogger("e2e")

BREAK: Final = os.environ.get("E2E_BREAK") == "1"
"""Whether this run commits its scenario's deliberate bug (``E2E_BREAK=1``)."""

_LOGGED_FAILURES: Final = 10
"""Failures logged one per line; the verdict file has them all."""


class Verdict:
    """The outcome of one scenario's check: failures (why it broke) and facts (what it saw)."""

    def __init__(self, scenario: str, processes: int = 1) -> None:
        self.scenario = scenario
        self.processes = processes
        """How many processes ran users: N with ``--processes N``, else 1."""
        self.failures: list[str] = []
        self.facts: dict[str, Any] = {}

    @property
    def passed(self) -> bool:
        return not self.failures

    def fail(self, message: str) -> None:
        """Record a violated invariant; ``message`` says what was expected and what was found."""
        self.failures.append(message)

    def expect(self, condition: bool, message: str) -> bool:
        """Record ``message`` as a failure unless ``condition`` holds; returns ``condition``."""
        if not condition:
            self.fail(message)
        return condition

    def fact(self, name: str, value: Any) -> None:
        """Record a figure of the run (jobs processed, CAS conflicts...), shown with the verdict."""
        self.facts[name] = value

    def summary(self) -> str:
        facts = " ".join(f"{name}={value}" for name, value in self.facts.items())
        if self.passed:
            return f"PASS {facts}".rstrip()
        more = f" (+{len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        return f"FAIL: {self.failures[0]}{more}"

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "passed": self.passed, "failures": self.failures, "facts": self.facts}


def invariant(check: Callable[[KV, Verdict], None]) -> Callable[[KV, Verdict], None]:
    """Register ``check(kv, verdict)`` as the scenario's invariant (a decorator).

    The check runs once, after the load, in the process that coordinates the
    run. An exception inside it is a failure of the run, not a crash.
    """
    scenario = check.__module__

    def on_after_load(environment: Environment, kv: KV, **_kwargs: Any) -> None:
        verdict = Verdict(scenario, getattr(environment.parsed_options, "processes", None) or 1)
        try:
            check(kv, verdict)
        except Exception as exc:  # noqa: BLE001 - a check that cannot finish is a failed check
            logger.error("e2e %s: the check raised\n%s", scenario, traceback.format_exc())
            verdict.fail(f"the check raised {type(exc).__name__}: {exc}")
        verdict.fact("kv_backend", kv.backend)
        _publish(environment, verdict)

    after_load.add_listener(on_after_load)
    return check


def setup(prepare: Callable[[KV], None]) -> Callable[[KV], None]:
    """Register ``prepare(kv)`` to seed the store once, before any user starts (a decorator)."""

    def on_before_load(kv: KV, **_kwargs: Any) -> None:
        prepare(kv)

    before_load.add_listener(on_before_load)
    return prepare


def _publish(environment: Environment, verdict: Verdict) -> None:
    line = f"e2e {verdict.scenario}: {verdict.summary()}"
    if verdict.passed:
        logger.info(line)
    else:
        logger.error(line)
        for failure in verdict.failures[1:_LOGGED_FAILURES]:
            logger.error("e2e %s: also: %s", verdict.scenario, failure)
        environment.process_exit_code = 1
    path = os.environ.get("E2E_VERDICT")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(verdict.to_json(), out, indent=2)


def user_id(kv: KV) -> int:
    """A number unique to this user across every process of the run, from 1."""
    return kv.increment_by("e2e:user-ids", 1)


def counter(kv: KV, key: str) -> int:
    """The counter at ``key``, 0 when no user ever incremented it."""
    try:
        return kv.get(key)
    except KeyNotFoundError:
        return 0


def sabotage(kv: KV) -> bool:
    """True exactly once per run, in one user of one process, when ``E2E_BREAK=1``.

    The caller then commits its scenario's deliberate bug instead of the
    correct step.
    """
    return BREAK and not kv.get_or_set("e2e:sabotaged", True).loaded


def workdir() -> str:
    """A directory for the run's files (snapshots): ``$E2E_WORKDIR``, else the working directory."""
    path = os.environ.get("E2E_WORKDIR") or os.getcwd()
    os.makedirs(path, exist_ok=True)
    return path
