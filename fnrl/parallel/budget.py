"""The run's counters, its step budget and the steps where it pauses (acme's ``Counter``).

A mode counts each learner update and the environment steps it consumed; the run is finished
at the first update boundary at or after ``--max-train-steps``, or once asked to stop. The
host pauses the loop where a checkpoint or an evaluation is due (:class:`Schedule`), so that
a mode that runs several updates per compiled call keeps its calls within
:meth:`Budget.updates_before`.

Impure only in reading a ``threading.Event``.
"""

from __future__ import annotations

import math
import threading


def updates_until(target: int, env_steps: int, steps_per_update: int) -> int:
    """Updates of ``steps_per_update`` steps from ``env_steps`` to ``target``; at least 1."""
    return max(1, -(-(target - env_steps) // steps_per_update))


class Budget:
    """The run's counters and when it is finished.

    Args:
        max_train_steps: the budget in environment steps summed over envs.
        stop: when set, the run is finished at the next update boundary (Ctrl-C).
        env_steps: the steps already done (a resumed run's checkpoint), 0 for a new run.
        updates: the updates already done, likewise.
    """

    def __init__(
        self, max_train_steps: int, stop: threading.Event, *, env_steps: int = 0, updates: int = 0
    ) -> None:
        self.max_train_steps = max_train_steps
        self.stop = stop
        self.env_steps, self.updates = env_steps, updates
        self.start_env_steps, self.start_updates = env_steps, updates

    @property
    def finished(self) -> bool:
        """Whether the step budget is spent or a stop was requested."""
        return self.env_steps >= self.max_train_steps or self.stop.is_set()

    @property
    def first_of_session(self) -> bool:
        """Whether the last update counted was the first of this start of the run (its time
        is mostly compilation)."""
        return self.updates == self.start_updates + 1

    def count(self, env_steps: int) -> None:
        """Counts one update that consumed ``env_steps`` environment steps."""
        self.env_steps += env_steps
        self.updates += 1

    def updates_before(self, steps_per_update: int, *pauses: float) -> int:
        """Updates of ``steps_per_update`` steps that may run before the host is needed.

        The first of ``pauses`` (steps where a checkpoint or an evaluation is due) or the end
        of the budget, whichever comes first; at least 1.
        """
        target = int(min(self.max_train_steps, *pauses))  # the budget is finite
        return updates_until(target, self.env_steps, steps_per_update)


class Schedule:
    """Every ``every`` environment steps, at the first update boundary at or after a multiple.

    Args:
        every: the period in environment steps; 0 never.
        env_steps: the run's steps so far; the first due point is the next multiple above them.
        first_update: also due after the run's first update (adept's first checkpoint).
    """

    def __init__(self, every: int, env_steps: int, *, first_update: bool = False) -> None:
        self.every = every
        self.next: float = 0 if first_update else self._after(env_steps)

    def _after(self, env_steps: int) -> float:
        return (env_steps // self.every + 1) * self.every if self.every else math.inf

    def due(self, env_steps: int) -> bool:
        """Whether a point falls at or before ``env_steps``."""
        return env_steps >= self.next

    def advance(self, env_steps: int) -> None:
        """Moves to the first multiple after ``env_steps``."""
        self.next = self._after(env_steps)
