"""adept's modules: multi-head attention against numpy, the causal mask, the RMC core."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.networks import MultiHeadSelfAttention, RelationalMHDPA, RMCCell, initial_memory


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _numpy_attention(q, k, v, heads, *, causal, scale):
    """adept's equations, head by head, with plain loops."""
    batch, length, _ = q.shape
    dq, dv = q.shape[-1] // heads, v.shape[-1] // heads
    out = np.zeros((batch, length, v.shape[-1]), np.float64)
    for b in range(batch):
        for h in range(heads):
            qh, kh = q[b, :, h * dq : (h + 1) * dq], k[b, :, h * dq : (h + 1) * dq]
            vh = v[b, :, h * dv : (h + 1) * dv]
            w = qh @ kh.T
            if scale:
                w = w / np.sqrt(dv)
            if causal:
                w = np.where(np.tril(np.ones((length, length), bool)), w, -1e9)
            out[b, :, h * dv : (h + 1) * dv] = _softmax(w) @ vh
    return out


@pytest.mark.parametrize(("heads", "causal", "scale"), [(1, True, False), (2, False, True)])
def test_multi_head_self_attention_matches_numpy(heads, causal, scale):
    x = np.random.default_rng(0).normal(size=(2, 5, 6)).astype(np.float32)
    module = MultiHeadSelfAttention(heads, 4, 6, causal=causal, scale=scale)
    variables = module.init(jax.random.key(0), x)
    out = jax.jit(module.apply)(variables, x)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    qk = x @ p["qk_projection"]["kernel"] + p["qk_projection"]["bias"]
    v = x @ p["v_projection"]["kernel"] + p["v_projection"]["bias"]
    expected = _numpy_attention(qk[..., :4], qk[..., 4:], v, heads, causal=causal, scale=scale)
    assert out.shape == (2, 5, 6) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_relational_mhdpa_matches_numpy_and_keeps_the_width():
    x = np.random.default_rng(1).normal(size=(2, 4, 6)).astype(np.float32)
    module = RelationalMHDPA(3, scale=True)
    variables = module.init(jax.random.key(0), x)
    out = module.apply(variables, x)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    qkv = x @ p["projection"]["kernel"] + p["projection"]["bias"]
    attended = _numpy_attention(
        qkv[..., :6], qkv[..., 6:12], qkv[..., 12:], 3, causal=True, scale=True
    )
    expected = attended @ p["mlp"]["kernel"] + p["mlp"]["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_causal_attention_ignores_later_positions():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 6, 4)).astype(np.float32)
    changed = x.copy()
    changed[:, 4:] = rng.normal(size=(1, 2, 4))
    module = MultiHeadSelfAttention(2, 4, 4)
    variables = module.init(jax.random.key(0), x)
    a, b = module.apply(variables, x), module.apply(variables, changed)
    np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=1e-6)
    assert not np.allclose(a[:, 4:], b[:, 4:])
    unmasked = MultiHeadSelfAttention(2, 4, 4, causal=False)
    assert not np.allclose(
        unmasked.apply(variables, x)[:, 0], unmasked.apply(variables, changed)[:, 0]
    )


def test_heads_must_divide_the_widths():
    with pytest.raises(ValueError, match="qk_features=34 is not divisible by num_heads=3"):
        MultiHeadSelfAttention(3, 34, 34)
    with pytest.raises(ValueError, match="num_heads must be at least 1"):
        MultiHeadSelfAttention(0, 4, 4)


def test_initial_memory_rows_are_distinct_identity_rows():
    memory = initial_memory(2, 3, 5)
    assert memory.shape == (2, 3, 5) and memory.dtype == jnp.float32
    np.testing.assert_array_equal(memory[1], np.eye(3, 5))
    np.testing.assert_array_equal(initial_memory(1, 4, 2)[0], np.eye(4, 2))


def test_rmc_cell_gates_follow_santoro_et_al():
    """With the attention's output known, the gating equation is checked in numpy."""
    rng = np.random.default_rng(3)
    memory = rng.normal(size=(2, 3, 4)).astype(np.float32)
    x = rng.normal(size=(2, 5)).astype(np.float32)
    cell = RMCCell(mem_slots=3, head_size=2, num_heads=2)
    variables = cell.init(jax.random.key(0), memory, x)
    new = jax.jit(cell.apply)(variables, memory, x)
    assert new.shape == (2, 3, 4) and new.dtype == jnp.float32

    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    u = (x @ p["input_linear"]["kernel"] + p["input_linear"]["bias"])[:, None, :]
    m = np.concatenate([memory, u], axis=1)

    def layer_norm(y, q):
        mu, var = y.mean(-1, keepdims=True), y.var(-1, keepdims=True)
        return (y - mu) / np.sqrt(var + 1e-5) * q["scale"] + q["bias"]

    a = p["attention"]
    qk = m @ a["qk_projection"]["kernel"] + a["qk_projection"]["bias"]
    v = m @ a["v_projection"]["kernel"] + a["v_projection"]["bias"]
    m = layer_norm(
        m + _numpy_attention(qk[..., :4], qk[..., 4:], v, 2, causal=False, scale=True), p["ln1"]
    )
    mlp = m
    for i in ("0", "1"):
        mlp = np.maximum(mlp @ p["mlp"][i]["kernel"] + p["mlp"][i]["bias"], 0)
    attended = layer_norm(mlp + m, p["ln2"])[:, :3]
    gates = u @ p["ih"]["kernel"] + np.tanh(memory) @ p["hh"]["kernel"]  # zero biases
    i_gate, f_gate = 1 / (1 + np.exp(-gates[..., :4])), 1 / (1 + np.exp(-(gates[..., 4:] + 1)))
    expected = i_gate * np.tanh(attended) + f_gate * memory
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(p["ih"]["bias"], 0.0)


def test_rmc_memory_rows_stay_distinct_over_steps():
    cell = RMCCell(mem_slots=4, head_size=8)
    memory = initial_memory(2, 4, 8)
    x = jnp.ones((2, 3))
    variables = cell.init(jax.random.key(0), memory, x)
    step = jax.jit(cell.apply)
    for _ in range(5):
        memory = step(variables, memory, x)
    rows = np.asarray(memory[0])
    assert min(np.abs(rows[i] - rows[j]).max() for i in range(4) for j in range(i)) > 1e-3
