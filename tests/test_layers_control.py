"""Control over named tensors: recompute_grad (memory, gradients, meshes, executors, scopes),
while_loop (accumulators, gradients, autoregressive decoding) and custom_gradient."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from namedmesh.core import control
from helpers import strategy

L = nm.layers
D = nm.Dimension


# -- recompute_grad -----------------------------------------------------------------------------
def _block(store, t, i, d_model, d_ff):
    h = L.dense(t, d_ff, reduced_dims=[d_model], activation=nm.gelu, name="wi_%d" % i,
                store=store)
    return L.dense(h, d_model, reduced_dims=[d_ff], name="wo_%d" % i, store=store)


def _stack(mesh, store, x, shape, recompute, blocks=3, d_ff="d_ff:512", seed=None):
    d_model = shape.dims[-1]
    t = nm.import_tf_tensor(mesh, x, shape)
    for i in range(blocks):
        def fn(u, i=i):
            h = _block(store, u, i, d_model, d_ff)
            if seed is not None:
                h = nm.dropout(h, True, rate=0.25, seed=[seed, i])
            return h
        t = t + (nm.recompute_grad(fn, [t]) if recompute else fn(t))
    return nm.export_to_tf_tensor(nm.reduce_sum(t * t))


def _grads(mesh, store, x, shape, recompute, **kw):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = _stack(mesh, store, x, shape, recompute, **kw)
    return loss, tape.gradient(loss, [x] + store.trainable_variables)


def test_recompute_grad_holds_less_memory_and_gives_the_same_gradients():
    """The tape keeps fn's activations without recompute_grad and not with it (measured with
    TensorFlow's CPU allocator statistics after the forward pass)."""
    mesh, store = nm.Mesh(), nm.VariableStore(seed=0)
    shape = nm.convert_to_shape("batch:8;length:32;d_model:128")
    x = tf.random.normal(shape.sizes, seed=0)
    _grads(mesh, store, x, shape, False)  # creates the variables
    held, grads = {}, {}
    for recompute in (False, True):
        base = tf.config.experimental.get_memory_info("CPU:0")["current"]
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _stack(mesh, store, x, shape, recompute)
        held[recompute] = tf.config.experimental.get_memory_info("CPU:0")["current"] - base
        grads[recompute] = tape.gradient(loss, [x] + store.trainable_variables)
    activation = 8 * 32 * 512 * 4  # one d_ff activation, float32
    assert held[False] > 6 * activation          # gelu's inputs and outputs, per block
    assert held[True] < held[False] / 4
    for a, b in zip(grads[False], grads[True]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=1e-6)


def test_recompute_grad_on_a_mesh_reruns_the_forward_collectives():
    shape = nm.convert_to_shape("batch:4;length:4;d_model:8")
    x = tf.random.normal(shape.sizes, seed=1)
    single = nm.VariableStore(seed=3)
    _, expected = _grads(nm.Mesh(), single, x, shape, False, d_ff="d_ff:16")
    mesh = nm.Mesh("b0:2;b1:2", "batch:b0;d_ff:b1")
    store = nm.VariableStore(seed=3)
    with nm.trace_collectives() as plain:
        _grads(mesh, store, x, shape, False, d_ff="d_ff:16")
    with nm.trace_collectives() as recomputed:
        _, got = _grads(mesh, store, x, shape, True, d_ff="d_ff:16")
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5, rtol=1e-5)
    # wo's einsum reduces the split d_ff: one all-reduce per block forward; recomputing runs
    # each block's forward once more during the backward pass
    assert plain.count("all_reduce") == 3 + 1  # blocks + the loss
    assert recomputed.count("all_reduce") == plain.count("all_reduce") + 3


def test_recompute_grad_with_seeded_dropout_inside_tf_function():
    shape = nm.convert_to_shape("batch:2;length:4;d_model:8")
    x = tf.random.normal(shape.sizes, seed=2)
    mesh = nm.Mesh("b0:2", "batch:b0")
    store = nm.VariableStore(seed=4)
    _, expected = _grads(mesh, store, x, shape, False, d_ff="d_ff:16", seed=7)
    step = tf.function(lambda x: _grads(mesh, store, x, shape, True, d_ff="d_ff:16", seed=7)[1],
                       autograph=False)
    for a, b in zip(expected, step(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=1e-6)


def test_recompute_grad_under_tf_distribute():
    shape = nm.convert_to_shape("batch:4;length:2;d_model:8")
    x = tf.random.normal(shape.sizes, seed=5)
    store = nm.VariableStore(seed=6)
    _, expected = _grads(nm.Mesh(), store, x, shape, False, d_ff="d_ff:16")
    mesh = nm.Mesh("b0:2;b1:2", "batch:b0;d_ff:b1", strategy=strategy(4))

    def replica(x):
        return _grads(mesh, store, x, shape, True, d_ff="d_ff:16")[1]

    got = mesh.run(replica, x, reduce="sum")
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5, rtol=1e-5)


def test_recompute_grad_finds_the_variables_of_its_scope_on_the_backward_pass():
    mesh, store = nm.Mesh(), nm.VariableStore(seed=1)
    x = tf.ones([2, 4])
    with tf.GradientTape() as tape:
        with store.as_default(), store.scope("block"):
            t = nm.import_tf_tensor(mesh, x, "batch:2;d_model:4")
            y = nm.recompute_grad(lambda u: L.dense(u, "hidden:3", reduced_dims=["d_model:4"]),
                                  [t])
        loss = nm.export_to_tf_tensor(nm.reduce_sum(y))
    grads = tape.gradient(loss, store.trainable_variables)  # outside the scope and the default
    assert sorted(store.variables()) == ["block/dense/bias", "block/dense/kernel"]
    np.testing.assert_allclose(grads[0].numpy(), np.full((4, 3), 2.0))


def test_recompute_grad_rejects_variables_made_on_the_backward_pass():
    mesh, store = nm.Mesh(), nm.VariableStore()
    calls = []

    def fn(u):
        calls.append(1)
        return L.dense(u, "hidden:3", reduced_dims=["d_model:4"], name="d%d" % len(calls),
                       store=store)

    with tf.GradientTape() as tape:
        y = nm.recompute_grad(fn, [nm.ones(mesh, "batch:2;d_model:4")])
        loss = nm.export_to_tf_tensor(nm.reduce_sum(y))
    with pytest.raises(nm.ConfigError, match="created while recomputing"):
        tape.gradient(loss, store.trainable_variables)


# -- custom_gradient ----------------------------------------------------------------------------
def test_custom_gradient_with_variables():
    mesh = nm.Mesh("b0:2", "batch:b0")
    store = nm.VariableStore(seed=0)
    x = tf.random.normal([4, 3], seed=0)

    def fn(t):
        return L.dense(t, "hidden:2", reduced_dims=["d:3"], use_bias=False, store=store)

    def grad_fn(inputs, outputs, output_grads, variables):
        # the true gradients, scaled by 3: a hand-written backward pass
        kernel = store.get_variable(mesh, "dense/kernel", "d:3;hidden:2")
        dx = nm.einsum([output_grads[0], kernel], inputs[0].shape) * 3.0
        dk = nm.einsum([inputs[0], output_grads[0]], "d:3;hidden:2") * 3.0
        return [dx], [nm.export_to_tf_tensor(dk)]

    fn(nm.import_tf_tensor(mesh, x, "batch:4;d:3"))  # creates the kernel
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        t = nm.import_tf_tensor(mesh, x, "batch:4;d:3")
        plain = nm.export_to_tf_tensor(nm.reduce_sum(fn(t)))
        custom = nm.export_to_tf_tensor(nm.reduce_sum(control.custom_gradient(fn, grad_fn, [t])))
    sources = [x] + store.trainable_variables
    for a, b in zip(tape.gradient(plain, sources), tape.gradient(custom, sources)):
        np.testing.assert_allclose(3.0 * a.numpy(), b.numpy(), atol=1e-5)


def test_custom_gradient_checks_what_grad_fn_returns():
    mesh = nm.Mesh()
    x = tf.ones([2])
    with tf.GradientTape() as tape:
        tape.watch(x)
        t = nm.import_tf_tensor(mesh, x, "a:2")
        y = control.custom_gradient(lambda u: u * 2.0, lambda i, o, g: [nm.ones(mesh, "b:2")], [t])
        loss = nm.export_to_tf_tensor(nm.reduce_sum(y))
    with pytest.raises(nm.ShapeError, match="does not have the dims of its input"):
        tape.gradient(loss, x)


# -- while_loop ---------------------------------------------------------------------------------
def test_while_loop_with_accumulators_on_a_mesh():
    mesh = nm.Mesh("b0:2;b1:2", "batch:b0;d:b1")
    x0 = np.arange(8, dtype=np.float32).reshape(2, 4)
    x = nm.import_tf_tensor(mesh, x0, "batch:2;d:4")
    i = nm.constant(mesh, 0, [], dtype=tf.int32)
    out = nm.while_loop(lambda i, x: nm.less(i, 3),
                        lambda i, x: [i + 1, x * 2.0 + 1.0, nm.reduce_sum(x, reduced_dim="d")],
                        [i, x], has_accumulators=True)
    assert len(out) == 3
    want, total = x0.copy(), np.zeros(2, np.float32)
    for _ in range(3):
        total += want.sum(1)
        want = want * 2 + 1
    assert int(nm.export_to_tf_tensor(out[0])) == 3
    np.testing.assert_allclose(nm.export_to_tf_tensor(out[1]).numpy(), want)
    np.testing.assert_allclose(nm.export_to_tf_tensor(out[2]).numpy(), total)
    assert out[2].shape.names == ("batch",)
    # the loop that never runs: accumulators are zero; num_loop_vars keeps the first outputs
    out = nm.while_loop(lambda i, x: nm.less(i, 0),
                        lambda i, x: [i + 1, x, nm.reduce_sum(x, reduced_dim="d")],
                        [i, x], has_accumulators=True)
    np.testing.assert_allclose(nm.export_to_tf_tensor(out[2]).numpy(), [0.0, 0.0])
    first = nm.while_loop(lambda i, x: nm.less(i, 2), lambda i, x: [i + 1, x], [i, x],
                          num_loop_vars=1)
    assert len(first) == 1 and int(nm.export_to_tf_tensor(first[0])) == 2


def test_while_loop_gradients_equal_the_unrolled_loop():
    mesh = nm.Mesh("b0:2", "d:b0")
    x0 = tf.constant(np.linspace(-1, 1, 4, dtype=np.float32))
    results = []
    for looped in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(x0)
            x = nm.import_tf_tensor(mesh, x0, "d:4")
            if looped:
                _, y = nm.while_loop(lambda i, x: nm.less(i, 3),
                                     lambda i, x: [i + 1, nm.tanh(x) * 1.5 + nm.reduce_sum(x)],
                                     [nm.constant(mesh, 0, [], dtype=tf.int32), x])
            else:
                y = x
                for _ in range(3):
                    y = nm.tanh(y) * 1.5 + nm.reduce_sum(y)
            loss = nm.export_to_tf_tensor(nm.reduce_sum(y * y))
        results.append((loss.numpy(), tape.gradient(loss, x0).numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)


def test_while_loop_under_tf_distribute_unrolls_with_accumulators():
    mesh = nm.Mesh("b0:2;b1:2", "batch:b0;d:b1", strategy=strategy(4))
    x0 = np.arange(8, dtype=np.float32).reshape(2, 4)

    def program(x, limit):
        x = nm.import_tf_tensor(mesh, x, "batch:2;d:4")
        i = nm.constant(mesh, 0, [], dtype=tf.int32)
        out = nm.while_loop(lambda i, x: nm.less(i, limit),
                            lambda i, x: [i + 1, x + nm.reduce_sum(x, reduced_dim="d"), x],
                            [i, x], has_accumulators=True, maximum_iterations=4)
        return [nm.export_to_tf_tensor(t) for t in out]

    want, total = x0.copy(), np.zeros_like(x0)
    for _ in range(3):  # the limit stops the loop before maximum_iterations
        total += want
        want = want + want.sum(1, keepdims=True)
    i, x, acc = mesh.run(program, tf.constant(x0), tf.constant(3))
    assert int(i) == 3
    np.testing.assert_allclose(x.numpy(), want)
    np.testing.assert_allclose(acc.numpy(), total)
    with pytest.raises(nm.MeshError, match="maximum_iterations"):
        mesh.run(lambda x: program_without_limit(mesh, x), tf.constant(x0))


def program_without_limit(mesh, x):
    x = nm.import_tf_tensor(mesh, x, "batch:2;d:4")
    _, y = nm.while_loop(lambda i, x: nm.less(i, 2), lambda i, x: [i + 1, x],
                         [nm.constant(mesh, 0, [], dtype=tf.int32), x])
    return nm.export_to_tf_tensor(y)


def test_while_loop_errors_name_the_problem():
    mesh = nm.Mesh()
    x = nm.ones(mesh, "a:2")
    with pytest.raises(nm.ShapeError, match="bool scalar"):
        nm.while_loop(lambda x: nm.greater(x, 0.0), lambda x: [x], [x])
    with pytest.raises(nm.ShapeError, match="body output 0"):
        nm.while_loop(lambda x: nm.less(nm.reduce_sum(x), 5.0), lambda x: [nm.ones(mesh, "b:2")],
                      [x])
    with pytest.raises(nm.ShapeError, match="has_accumulators"):
        nm.while_loop(lambda x: nm.less(nm.reduce_sum(x), 5.0), lambda x: [x * 2.0, x], [x])


# -- autoregressive decoding with while_loop ------------------------------------------------------
BATCH, LENGTH, VOCAB = D("batch", 2), D("length", 6), D("vocab", 11)
D_MODEL, HEADS, D_KV = D("d_model", 8), D("heads", 2), D("d_kv", 4)
MEMORY = D("memory_length", LENGTH.size)


def _decoder_step(store, ids_t, k, v, step):
    """Embed this step's ids, one self-attention step, logits: (logits, k, v)."""
    x = L.embedding(ids_t, VOCAB, D_MODEL, store=store)
    y, k, v = L.multihead_self_attention_incremental(x, k, v, step, store=store)
    return L.dense(y, VOCAB, reduced_dims=[D_MODEL], name="logits", store=store), k, v


def _greedy_decode(mesh, store, prompt, looped: bool):
    """Greedy decoding of LENGTH tokens; the prompt's nonzero ids are forced (teacher)."""
    prompt = nm.import_tf_tensor(mesh, prompt, nm.Shape([BATCH, LENGTH]))
    cache = nm.zeros(mesh, nm.Shape([BATCH, HEADS, MEMORY, D_KV]))
    ids = nm.zeros(mesh, nm.Shape([BATCH, LENGTH]), tf.int32)
    step = nm.constant(mesh, 0, [], dtype=tf.int32)

    def body(step, ids, k, v):
        previous = nm.gather(ids, step - 1, LENGTH)  # id 0 (padding) at step 0
        logits, k, v = _decoder_step(store, previous, k, v, step)
        chosen = nm.argmax(logits, VOCAB)
        forced = nm.gather(prompt, step, LENGTH)
        chosen = nm.where(nm.greater(forced, 0), forced, chosen)
        ids = ids + nm.one_hot(step, LENGTH, dtype=tf.int32) * chosen
        return [step + 1, ids, k, v]

    if looped:
        _, ids, _, _ = nm.while_loop(lambda step, *rest: nm.less(step, LENGTH.size), body,
                                     [step, ids, cache, cache], maximum_iterations=LENGTH.size)
    else:
        k = v = cache
        for _ in range(LENGTH.size):
            step, ids, k, v = body(step, ids, k, v)
    return nm.export_to_tf_tensor(ids)


def test_incremental_attention_in_a_while_loop_equals_full_causal_attention():
    """Teacher forcing: each step's incremental self-attention output equals the full causal
    multihead_attention over the sequence (same variables), computed in one while_loop."""
    store = nm.VariableStore(seed=2)
    x_full = tf.random.normal([BATCH.size, LENGTH.size, D_MODEL.size], seed=3)
    for mesh in (nm.Mesh(), nm.Mesh("b0:2;b1:2", "batch:b0;heads:b1")):
        x = nm.import_tf_tensor(mesh, x_full, nm.Shape([BATCH, LENGTH, D_MODEL]))
        mask = L.attention_mask_autoregressive(nm.range(mesh, LENGTH, tf.int32))
        full = L.multihead_attention(x, None, mask, D_KV, HEADS, False, store=store)
        cache = nm.zeros(mesh, nm.Shape([BATCH, HEADS, MEMORY, D_KV]))

        def body(step, k, v, out):
            y, k, v = L.multihead_self_attention_incremental(nm.gather(x, step, LENGTH), k, v,
                                                             step, store=store)
            return [step + 1, k, v, out + y * nm.one_hot(step, LENGTH)]

        _, _, _, out = nm.while_loop(lambda step, *rest: nm.less(step, LENGTH.size), body,
                                     [nm.constant(mesh, 0, [], dtype=tf.int32), cache, cache,
                                      nm.zeros(mesh, full.shape)])
        np.testing.assert_allclose(
            nm.export_to_tf_tensor(nm.broadcast(out, full.shape)).numpy(),
            nm.export_to_tf_tensor(full).numpy(), atol=1e-5)


def test_greedy_decoding_in_a_while_loop():
    """Greedy decoding as one while_loop (eagerly, in tf.function, on a mesh and under
    tf.distribute) gives the tokens of the same decoding unrolled in Python."""
    store = nm.VariableStore(seed=5)
    prompt = tf.constant([[3, 7, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0]], tf.int32)
    expected = _greedy_decode(nm.Mesh(), store, prompt, looped=False).numpy()
    assert (expected[:, 0] == [3, 5]).all() and expected[0, 1] == 7
    assert len(set(expected[0, 2:])) > 1 and len(set(expected[1, 1:])) > 1  # not degenerate
    mesh = nm.Mesh("b0:2;b1:2", "batch:b0;heads:b1")
    got = [_greedy_decode(nm.Mesh(), store, prompt, looped=True),
           tf.function(lambda p: _greedy_decode(mesh, store, p, looped=True),
                       autograph=False)(prompt)]
    smesh = nm.Mesh("b0:2;b1:2", "batch:b0;heads:b1", strategy=strategy(4))
    got.append(smesh.run(lambda p: _greedy_decode(smesh, store, p, looped=True), prompt))
    for g in got:
        np.testing.assert_array_equal(g.numpy(), expected)
