"""Blue/green cache swap: in every round, many deployers swap a new build into the round's cache slot at once.

Time is cut into rounds of ROUND_SECONDS. Each deployer swaps a build
(blue or green, with a ticket unique to the run) into the current round's
slot with ``swap``. The first swap of a round finds the slot empty
(``loaded`` False): that deployer warms the cache. Every later swap gets the
build it displaced.

Invariant, per round: exactly one swap found the slot empty, and every build
written was displaced exactly once except the one left in the slot (the
tickets written add up to the tickets displaced plus the final one).

Deliberate bug (E2E_BREAK=1): one deployer that displaced a build also
warms the cache, as if the slot had been empty.
"""

from __future__ import annotations

import random
import time

from locust import User, between, task

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from kit import Verdict, invariant, sabotage

ROUND_SECONDS = 0.25


class Deployer(User):
    wait_time = between(0.005, 0.03)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.color = random.choice(("blue", "green"))

    @task
    def deploy(self) -> None:
        kv = self.kv
        round_no = int(time.time() / ROUND_SECONDS)
        ticket = kv.increment_by("bg:tickets", 1)
        previous = kv.swap(f"bg:slot:{round_no}", {"color": self.color, "ticket": ticket})
        kv.increment_by(f"bg:written:{round_no}", ticket)
        if previous.loaded:
            kv.increment_by(f"bg:displaced:{round_no}", previous.previous["ticket"])
        if not previous.loaded or sabotage(kv):
            kv.increment_by(f"bg:warmed:{round_no}", 1)
        self.color = "green" if self.color == "blue" else "blue"


def _by_round(kv, prefix: str) -> dict[int, int]:
    return {int(entry.key[len(prefix) :]): entry.value for entry in kv.list(prefix=prefix)}


@invariant
def check(kv, verdict: Verdict) -> None:
    slots = {r: value["ticket"] for r, value in _by_round(kv, "bg:slot:").items()}
    written = _by_round(kv, "bg:written:")
    displaced = _by_round(kv, "bg:displaced:")
    warmed = _by_round(kv, "bg:warmed:")
    verdict.fact("rounds", len(slots))
    verdict.fact("swaps", kv.get("bg:tickets"))
    verdict.expect(len(slots) >= 5, f"only {len(slots)} rounds ran")
    verdict.expect(set(written) == set(slots), "a round has builds written but no slot, or the reverse")
    for round_no in sorted(slots):
        verdict.expect(
            warmed.get(round_no, 0) == 1,
            f"round {round_no}: {warmed.get(round_no, 0)} swaps found the slot empty (\"not loaded\"), expected exactly 1",
        )
        verdict.expect(
            written.get(round_no, 0) == displaced.get(round_no, 0) + slots[round_no],
            f"round {round_no}: builds written (tickets {written.get(round_no, 0)}) are not those displaced "
            f"({displaced.get(round_no, 0)}) plus the one in the slot ({slots[round_no]})",
        )
