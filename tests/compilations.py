"""Counting XLA compilations through JAX's public monitoring hook (for no-recompile tests)."""

import contextlib
from collections.abc import Iterator

import jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def counted_compilations() -> Iterator[list[float]]:
    """Yields a list that gains the duration of each backend compilation inside the block."""
    compilations: list[float] = []

    def count(event, seconds, **kwargs):
        del kwargs
        if event == COMPILE_EVENT:
            compilations.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        yield compilations
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
