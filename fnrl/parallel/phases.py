"""What a run measures as it goes: the time of each phase and the games that ended.

Impure: reads the clock.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple


class PhaseTimer:
    """Wall-clock seconds spent in each named phase of a run (env, inference, learner, ...)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Adds the time spent inside the ``with`` block to ``seconds[name]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def bound(self) -> str:
        """The phase that took the most time: what bound the run."""
        return max(self.seconds, key=self.seconds.get) if self.seconds else "nothing"


class Episode(NamedTuple):
    """A finished whole game: its unclipped return and length in agent steps."""

    returns: float
    length: int
