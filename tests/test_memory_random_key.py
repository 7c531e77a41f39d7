"""The memory backend's random_key(prefix): how many draws it tries is remembered per prefix, and stays uniform."""

from __future__ import annotations

import collections

import pytest

from locust_kv import open_kv
from locust_kv.backends import memory


def test_the_draws_tried_follow_the_share_of_the_keys() -> None:
    assert memory._prefix_draws(0, 0) == 0
    assert memory._prefix_draws(0, 1_000) == 0
    assert memory._prefix_draws(10, 1_000) == 0  # 1%: two bisections cost less
    assert memory._prefix_draws(100, 1_000) == 40  # 10%: about 4 times the expected draws
    assert memory._prefix_draws(500, 1_000) == 8
    assert memory._prefix_draws(63, 1_000) == memory._PREFIX_DRAWS_MAX


@pytest.mark.parametrize("share", [2, 10, 50], ids=["narrow", "tenth", "half"])
def test_random_key_with_a_prefix_is_uniform_at_every_share(share: int) -> None:
    kv = open_kv(backend="memory", name=f"draws-{share}", track_keys=True)
    try:
        matching = [f"p:{i:03d}" for i in range(share * 4)]
        kv.set_many({key: 1 for key in matching + [f"q:{i:03d}" for i in range(400 - len(matching))]})
        draws = 100 * len(matching)
        counts = collections.Counter(kv.random_key("p:") for _ in range(draws))
        assert set(counts) == set(matching)
        expected = draws / len(matching)
        chi2 = sum((counts[k] - expected) ** 2 / expected for k in matching)
        df = len(matching) - 1
        assert chi2 < df + 6 * (2 * df) ** 0.5 + 20  # about the 99.99th percentile
        assert kv._backend._index.draws[b"p:"] == memory._prefix_draws(len(matching), 400)  # type: ignore[attr-defined]
    finally:
        kv.close()
