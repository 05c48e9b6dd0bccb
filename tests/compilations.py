"""Counting XLA compilations through JAX's public monitoring hooks (for no-recompile tests).

A program loaded from JAX's persistent compilation cache (which ``fnrl.train.main`` turns on)
counts as compiled: it was not in memory.
"""

import contextlib
from collections.abc import Iterator

import jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


@contextlib.contextmanager
def counted_compilations() -> Iterator[list[float]]:
    """Yields a list that gains the duration of each backend compilation inside the block
    (0.0 for a program loaded from the persistent cache)."""
    compilations: list[float] = []

    def count(event, seconds, **kwargs):
        del kwargs
        if event == COMPILE_EVENT:
            compilations.append(seconds)

    def count_hit(event, **kwargs):
        del kwargs
        if event == CACHE_HIT_EVENT:
            compilations.append(0.0)

    jax.monitoring.register_event_duration_secs_listener(count)
    jax.monitoring.register_event_listener(count_hit)
    try:
        yield compilations
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
        jax.monitoring.unregister_event_listener(count_hit)
