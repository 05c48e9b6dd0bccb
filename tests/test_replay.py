"""Tests for fnrl.replay against a plain-Python ring buffer, with uniformity and jit checks."""

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compilations import counted_compilations

from fnrl import replay
from fnrl.replay import ReplayBuffer, ReplayState, can_sample, make_uniform_replay


def _example_item():
    """One transition with every dtype a buffer must keep."""
    return {
        "obs": np.zeros((2, 3), np.uint8),
        "action": np.zeros((), np.int32),
        "reward": np.zeros((), np.float32),
        "done": np.zeros((), bool),
    }


def _items(rng, n):
    """``n`` random transitions, leaves ``[n, ...]``."""
    return {
        "obs": rng.integers(0, 256, size=(n, 2, 3), dtype=np.uint8),
        "action": rng.integers(-5, 5, size=(n,)).astype(np.int32),
        "reward": rng.normal(size=(n,)).astype(np.float32),
        "done": rng.random(n) > 0.5,
    }


def _ids(first, n):
    """``n`` items that carry their own running number, to see which ones come back."""
    return {"id": np.arange(first, first + n, dtype=np.int32)}


class _PythonRing:
    """The reference: one item at a time into a list of slots, wrapping round."""

    def __init__(self, capacity, example_item):
        self.slots = [jax.tree.map(np.zeros_like, example_item)] * capacity
        self.position = 0
        self.size = 0

    def add(self, items):
        n = len(jax.tree.leaves(items)[0])
        for i in range(n):
            self.slots[self.position] = jax.tree.map(lambda x, i=i: x[i], items)
            self.position = (self.position + 1) % len(self.slots)
            self.size = min(self.size + 1, len(self.slots))

    def items(self):
        return jax.tree.map(lambda *xs: np.stack(xs), *self.slots)


def _assert_equals_reference(state, ref):
    assert int(state.position) == ref.position and int(state.size) == ref.size
    assert state.position.dtype == jnp.int32 and state.size.dtype == jnp.int32
    for got, want in zip(jax.tree.leaves(state.items), jax.tree.leaves(ref.items()), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_public_api_is_exported():
    assert replay.__all__ == ["ReplayBuffer", "ReplayState", "can_sample", "make_uniform_replay"]
    assert ReplayBuffer._fields == ("init", "add", "sample")
    assert ReplayState._fields == ("items", "position", "size")
    assert callable(can_sample) and callable(make_uniform_replay)


@pytest.mark.parametrize("capacity", [1, 3, 7])
def test_add_equals_python_ring_over_random_sequences_of_adds(capacity):
    # Each distinct batch size compiles an add: one random sequence per capacity.
    rng = np.random.default_rng(capacity)
    buffer = make_uniform_replay(capacity, batch_size=4)
    state, ref = buffer.init(_example_item()), _PythonRing(capacity, _example_item())
    _assert_equals_reference(state, ref)
    # Sizes from 0 to past two capacities, with N == capacity and N > capacity forced in.
    sizes = [*rng.integers(0, 2 * capacity + 2, size=12), capacity, 2 * capacity + 1, 1]
    for n in sizes:
        items = _items(rng, int(n))
        state = buffer.add(state, items)
        ref.add(items)
        _assert_equals_reference(state, ref)


def test_add_of_more_than_capacity_keeps_the_last_items_in_order():
    buffer = make_uniform_replay(3, batch_size=1)
    state = buffer.add(buffer.init({"id": np.int32(0)}), _ids(100, 1))  # slot 0, then position 1
    state = buffer.add(state, _ids(10, 5))  # 10..14 from slot 1: 12, 13, 14 overwrite 10, 11
    np.testing.assert_array_equal(state.items["id"], [12, 13, 14])
    assert (int(state.position), int(state.size)) == (0, 3)


def test_add_of_exactly_capacity_wraps_round_to_the_same_position():
    buffer = make_uniform_replay(4, batch_size=1)
    state = buffer.add(buffer.init({"id": np.int32(0)}), _ids(100, 2))
    state = buffer.add(state, _ids(10, 4))  # from slot 2: 10, 11 then 12, 13 in slots 0, 1
    np.testing.assert_array_equal(state.items["id"], [12, 13, 10, 11])
    assert (int(state.position), int(state.size)) == (2, 4)


@pytest.mark.parametrize("capacity, added", [(5, [1]), (5, [3]), (5, [4, 3]), (4, [2, 9, 1])])
def test_sample_returns_only_filled_slots_with_shapes_and_dtypes_kept(capacity, added):
    buffer = make_uniform_replay(capacity, batch_size=64)
    rng = np.random.default_rng(3)
    state, ref = buffer.init(_example_item()), _PythonRing(capacity, _example_item())
    for n in added:
        items = _items(rng, n)
        state, _ = buffer.add(state, items), ref.add(items)
    filled = {ref.slots[i]["obs"].tobytes() for i in range(ref.size)}
    for key in jax.random.split(jax.random.PRNGKey(0), 8):
        batch = buffer.sample(state, key)
        for got, example in zip(
            jax.tree.leaves(batch), jax.tree.leaves(_example_item()), strict=True
        ):
            assert got.shape == (64, *example.shape) and got.dtype == example.dtype
        assert {np.asarray(obs).tobytes() for obs in batch["obs"]} <= filled


@pytest.mark.parametrize("added", [[5], [6, 7]])  # part-filled; full after wrapping round
def test_sample_is_uniform_over_filled_slots(added):
    capacity, batch_size, draws = 8, 1000, 20
    buffer = make_uniform_replay(capacity, batch_size)
    state = buffer.init({"id": np.int32(0)})
    first = 0
    for n in added:
        state, first = buffer.add(state, _ids(first, n)), first + n
    filled = np.asarray(state.items["id"][: int(state.size)])
    keys = jax.random.split(jax.random.PRNGKey(42), draws)
    ids = np.concatenate([np.asarray(buffer.sample(state, key)["id"]) for key in keys])
    counts = np.array([np.sum(ids == i) for i in filled])
    assert counts.sum() == batch_size * draws  # nothing outside the filled slots
    expected = batch_size * draws / len(filled)
    chi_square = np.sum((counts - expected) ** 2 / expected)
    # 24.3 is the 0.999 quantile of chi-square with 7 degrees of freedom (at most 8 slots).
    assert chi_square < 24.3, counts


def test_sample_of_an_empty_buffer_returns_zeros_of_slot_zero():
    buffer = make_uniform_replay(4, batch_size=3)
    batch = buffer.sample(buffer.init(_example_item()), jax.random.PRNGKey(0))
    for got, example in zip(jax.tree.leaves(batch), jax.tree.leaves(_example_item()), strict=True):
        assert got.shape == (3, *example.shape) and got.dtype == example.dtype
        np.testing.assert_array_equal(got, np.zeros_like(got))
    assert not bool(can_sample(buffer.init(_example_item())))


def test_add_and_sample_under_jit_equal_eager():
    buffer = make_uniform_replay(5, batch_size=6)
    rng = np.random.default_rng(4)
    add, sample = jax.jit(buffer.add), jax.jit(buffer.sample)
    state = jitted = buffer.init(_example_item())
    for n in [3, 4, 11]:
        items = _items(rng, n)
        state, jitted = buffer.add(state, items), add(jitted, items)
        jax.tree.map(np.testing.assert_array_equal, jitted, state)
    key = jax.random.PRNGKey(5)
    jax.tree.map(np.testing.assert_array_equal, sample(jitted, key), buffer.sample(state, key))


def test_add_and_sample_inside_lax_scan_equal_python_ring():
    capacity, steps, per_step = 5, 7, 2
    buffer = make_uniform_replay(capacity, batch_size=3)
    all_items = _items(np.random.default_rng(6), steps * per_step)
    stacked = jax.tree.map(lambda x: x.reshape(steps, per_step, *x.shape[1:]), all_items)

    def step(state, xs):
        items, key = xs
        state = buffer.add(state, items)
        return state, (buffer.sample(state, key)["obs"], can_sample(state, capacity))

    keys = jax.random.split(jax.random.PRNGKey(7), steps)
    state, (sampled, ready) = jax.lax.scan(step, buffer.init(_example_item()), (stacked, keys))
    ref = _PythonRing(capacity, _example_item())
    ref.add(all_items)
    _assert_equals_reference(state, ref)
    assert sampled.shape == (steps, 3, 2, 3) and sampled.dtype == jnp.uint8
    np.testing.assert_array_equal(ready, [False, False, True, True, True, True, True])


def test_second_call_of_jitted_add_and_sample_compiles_nothing():
    buffer = make_uniform_replay(6, batch_size=4)
    add, sample = jax.jit(buffer.add), jax.jit(buffer.sample)
    rng = np.random.default_rng(8)
    with counted_compilations() as compilations:
        state = add(buffer.init(_example_item()), _items(rng, 4))
        sample(state, jax.random.PRNGKey(0))
        first = len(compilations)
        state = add(state, _items(rng, 4))  # wraps round: new position and size, same shapes
        jax.block_until_ready(sample(state, jax.random.PRNGKey(1)))
    assert first >= 2  # the listener sees compilations
    assert len(compilations) == first


def test_state_round_trips_bit_exactly_through_flax_serialization():
    buffer = make_uniform_replay(5, batch_size=2)
    items = _items(np.random.default_rng(9), 7)
    items["reward"][:3] = [np.nan, -0.0, np.inf]
    state = buffer.add(buffer.init(_example_item()), items)
    restored = flax.serialization.from_bytes(
        buffer.init(_example_item()), flax.serialization.to_bytes(state)
    )
    assert isinstance(restored, ReplayState)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


def test_can_sample_counts_filled_slots_and_rejects_impossible_sizes():
    buffer = make_uniform_replay(4, batch_size=2)
    state = buffer.add(buffer.init({"id": np.int32(0)}), _ids(0, 2))
    assert bool(can_sample(state, 2)) and not bool(can_sample(state, 3))
    assert bool(jax.jit(can_sample, static_argnums=1)(state, 1))
    for min_size in [0, 5]:
        with pytest.raises(ValueError, match="larger capacity"):
            can_sample(state, min_size)


@pytest.mark.parametrize("capacity, batch_size, match", [(0, 1, "capacity >= 1"), (4, 0, "batch")])
def test_make_uniform_replay_rejects_sizes_below_one(capacity, batch_size, match):
    with pytest.raises(ValueError, match=match):
        make_uniform_replay(capacity, batch_size)


def test_init_rejects_an_item_without_arrays():
    with pytest.raises(ValueError, match="at least one array"):
        make_uniform_replay(4, 2).init({})


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda items: {k: v for k, v in items.items() if k != "done"}, "structure"),
        (lambda items: {**items, "obs": items["obs"][:, :1]}, r"uint8\[N, 2, 3\]"),
        (lambda items: {**items, "obs": items["obs"].astype(np.float32)}, "dtype"),
        (lambda items: {**items, "action": items["action"][:2]}, "one N"),
        (lambda items: jax.tree.map(lambda x: x[0], items), "one N"),
    ],
    ids=["missing_leaf", "trailing_shape", "dtype", "different_n", "no_leading_axis"],
)
def test_add_rejects_items_that_do_not_match_the_buffer(change, match):
    buffer = make_uniform_replay(4, batch_size=2)
    state = buffer.init(_example_item())
    items = change(_items(np.random.default_rng(10), 3))
    with pytest.raises(ValueError, match=match):
        buffer.add(state, items)
    with pytest.raises(ValueError, match=match):
        jax.jit(buffer.add)(state, items)
