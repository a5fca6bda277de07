"""The fast route beyond MLP + MSE: batch norm and cross-entropy (each layer's four passes against the
engine), low-rank per-task weights against dense ones, the reused workspaces, and the array-module
plumbing that lets the same code run on CuPy (checked here with a NumPy stand-in for CuPy)."""

import sys
import types

import numpy as np
import pytest

import minimaml as mm
from minimaml.fastpath import arena, mlp_hessian, mlp_hvp, mlp_loss_and_grad
from minimaml.fastpath.network import TaskLosses, choose_lowrank, network
from minimaml.meta.inner import inner_loop, step_sizes, walk_back

CE = mm.softmax_cross_entropy


def classification_problem(sizes=(6, 8, 7, 3), norm="batch", act="relu", T=3, K=4, Q=5, seed=0):
    rng = np.random.default_rng(seed)
    net = mm.MLP(list(sizes), activation=act, norm=norm)
    theta = net.init(seed) + 0.1 * rng.standard_normal(net.num_params)   # γ, β away from 1, 0
    xs, xq = rng.standard_normal((T, K, sizes[0])), rng.standard_normal((T, Q, sizes[0]))
    ys, yq = rng.integers(0, sizes[-1], (T, K)), rng.integers(0, sizes[-1], (T, Q))
    return net, theta, xs, ys, xq, yq


def rel_err(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


# ------------------------------------------------------------------------------------------
# The layers' passes against the engine, and the meta-gradient against "autodiff".
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", [None, "batch"])
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("loss", [mm.mse, CE], ids=["mse", "ce"])
def test_gradient_hvp_and_hessian_match_the_engine(norm, act, loss):
    net, theta, xs, ys, _, _ = classification_problem(norm=norm, act=act)
    y = ys[0] if loss is CE else np.random.default_rng(5).standard_normal((4, 3))
    f = lambda th: loss(net(th, xs[0]), y)  # noqa: E731
    value, g = mlp_loss_and_grad(net, theta, xs[0], y, loss=loss)
    assert value == pytest.approx(float(f(theta)), rel=1e-13)
    np.testing.assert_allclose(g, mm.grad(f)(theta), rtol=1e-11, atol=1e-14)
    v = np.random.default_rng(6).standard_normal(net.num_params)
    np.testing.assert_allclose(mlp_hvp(net, theta, xs[0], y, v, loss=loss), mm.hvp(f, theta, v),
                               rtol=1e-10, atol=1e-13)
    H = mlp_hessian(net, theta, xs[0], y, loss=loss)
    np.testing.assert_allclose(H, mm.hessian(f)(theta), rtol=1e-9, atol=1e-12 * np.abs(H).max())


@pytest.mark.parametrize("norm", [None, "batch"])
@pytest.mark.parametrize("loss", [mm.mse, CE], ids=["mse", "ce"])
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_hvp_route_equals_autodiff_to_1e9(norm, loss, steps):
    net, theta, xs, ys, xq, yq = classification_problem(norm=norm, act="tanh")
    if loss is mm.mse:
        rng = np.random.default_rng(7)
        ys, yq = rng.standard_normal(ys.shape + (3,)), rng.standard_normal(yq.shape + (3,))
    args = (net, theta, xs, ys, xq, yq, 0.3, steps)
    la, ga = mm.meta_value_and_grad(*args, method="autodiff", loss=loss)
    lh, gh = mm.meta_value_and_grad(*args, method="hvp", loss=loss)
    lf, gf = mm.meta_value_and_grad(*args, method="first_order", loss=loss)
    assert lh == pytest.approx(la, rel=1e-12)
    assert rel_err(gh, ga) < 1e-9
    assert rel_err(gf, ga) > 1e-3                     # the second-order term is there, and measurable


# ------------------------------------------------------------------------------------------
# Low-rank per-task weights.
# ------------------------------------------------------------------------------------------
def meta_grad_with(net, loss, lowrank, theta, xs, ys, xq, yq, alpha, steps):
    tl = TaskLosses(net, loss, arena.Fresh(np))
    tl.net = network(net, loss, lowrank)
    sizes = step_sizes(alpha, steps)
    params, caches = inner_loop(tl, theta, xs, ys, sizes)
    losses, g, _ = tl.value_and_grad(params, xq, yq)
    return losses.mean(), tl.mean(walk_back(tl, caches, g, sizes)[0], theta.dtype), tl.flat(params, (len(xs),), theta.dtype)


@pytest.mark.parametrize("steps", [1, 3])
def test_low_rank_weights_give_the_dense_results(steps):
    net, theta, xs, ys, xq, yq = classification_problem(sizes=(30, 24, 20, 5), K=2, Q=2)
    dense = meta_grad_with(net, CE, [False] * 3, theta, xs, ys, xq, yq, 0.5, steps)
    for lowrank in ([True, False, False], [True, True, True]):
        low = meta_grad_with(net, CE, lowrank, theta, xs, ys, xq, yq, 0.5, steps)
        assert low[0] == pytest.approx(dense[0], rel=1e-13)
        assert rel_err(low[1], dense[1]) < 1e-11           # the meta-gradient
        assert rel_err(low[2], dense[2]) < 1e-13           # the adapted parameters θ_S


def test_low_rank_is_chosen_for_wide_layers_seen_through_few_points():
    omniglot = mm.MLP([784, 256, 128, 64, 64, 5], norm="batch")
    assert choose_lowrank(omniglot, 5 + 2 * 5) == [True, True, True, True, False]   # 1-shot
    assert choose_lowrank(omniglot, 25 + 2 * 25) == [True, False, False, False, False]
    assert choose_lowrank(mm.MLP([1, 40, 40, 1]), 10 + 2 * 10) == [False] * 3       # the sinusoid net: dense
    assert choose_lowrank(omniglot, 0) == [False] * 5


# ------------------------------------------------------------------------------------------
# Workspaces: reused from call to call, never visible to the caller.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes, K", [((6, 8, 7, 3), 4), ((30, 24, 20, 5), 2)])
def test_repeated_calls_reuse_buffers_and_give_fresh_exact_results(sizes, K):
    net, theta, xs, ys, xq, yq = classification_problem(sizes=sizes, K=K, Q=K)
    args = (net, theta, xs, ys, xq, yq, 0.5, 2)
    ref = mm.meta_value_and_grad(*args, method="autodiff", loss=CE)
    first = mm.meta_value_and_grad(*args, loss=CE)
    kept = first[1].copy()
    other = mm.meta_value_and_grad(net, theta + 0.1, xs, ys, xq, yq, 0.5, 2, loss=CE)   # same shapes
    again = mm.meta_value_and_grad(*args, loss=CE)
    np.testing.assert_array_equal(first[1], kept)           # a later call did not overwrite it
    np.testing.assert_array_equal(again[1], first[1])       # replayed buffers: the same numbers
    assert not np.array_equal(other[1], first[1])
    assert rel_err(first[1], ref[1]) < 1e-9


def test_arena_replays_its_buffers_in_order():
    ws = arena.arena(("test", 1), np)
    a = ws.mul(np.ones(3), 2.0)
    b = ws.matmul(np.ones((2, 3)), np.ones((3, 4)))
    ws = arena.arena(("test", 1), np)
    assert ws.mul(np.ones(3), 5.0) is a and (a == 5).all()
    assert ws.matmul(np.ones((2, 3)), np.ones((3, 4))) is b


# ------------------------------------------------------------------------------------------
# The array module comes from the inputs: a NumPy stand-in for CuPy.
# ------------------------------------------------------------------------------------------
class FakeGPUArray(np.ndarray):
    """An ndarray that says it is a CuPy array, and fails when NumPy's own functions are called on
    it directly (as they would fail on a real CuPy array): only the stand-in module, operators and
    methods may touch it."""

    inside = [False]

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if method == "__call__" and not FakeGPUArray.inside[0]:
            raise AssertionError(f"np.{ufunc.__name__} was called directly on a GPU array")
        inputs = tuple(i.view(np.ndarray) if isinstance(i, FakeGPUArray) else i for i in inputs)
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, FakeGPUArray) else o for o in out)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        return out[0] if out is not None and len(out) == 1 else _to_gpu(result)

    def __array_function__(self, func, types_, args, kwargs):
        if not FakeGPUArray.inside[0]:
            raise AssertionError(f"np.{func.__name__} was called directly on a GPU array")
        return _to_gpu(func._implementation(*_to_cpu(args), **_to_cpu(kwargs)))


FakeGPUArray.__module__ = "cupy._core.core"      # what minimaml.autodiff.array_module looks at


def _to_gpu(x):
    if isinstance(x, np.ndarray) and not isinstance(x, FakeGPUArray):
        return x.view(FakeGPUArray)
    return tuple(_to_gpu(i) for i in x) if isinstance(x, tuple) else x


def _to_cpu(x):
    if isinstance(x, FakeGPUArray):
        return x.view(np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(i) for i in x)
    return {k: _to_cpu(v) for k, v in x.items()} if isinstance(x, dict) else x


def _operator(name):
    def op(self, *args, **kwargs):
        FakeGPUArray.inside[0] = True
        try:
            return getattr(np.ndarray, name)(self, *args, **kwargs)
        finally:
            FakeGPUArray.inside[0] = False
    return op


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
              "__rtruediv__", "__neg__", "__matmul__", "__rmatmul__", "__iadd__", "__isub__", "__imul__",
              "__itruediv__", "__pow__", "__gt__", "__lt__", "__ge__", "__le__", "__eq__",
              "mean", "sum", "max", "min", "all", "any"):       # CuPy has these methods too
    setattr(FakeGPUArray, _name, _operator(_name))


def fake_cupy():
    """A module named cupy whose functions are NumPy's, returning FakeGPUArrays."""
    module = types.ModuleType("cupy")
    module.ndarray = FakeGPUArray

    def __getattr__(name):
        fn = getattr(np, name)
        if not callable(fn) or isinstance(fn, type):
            return fn

        def call(*args, **kwargs):
            FakeGPUArray.inside[0] = True
            try:
                return _to_gpu(fn(*args, **kwargs))
            finally:
                FakeGPUArray.inside[0] = False
        return call
    module.__getattr__ = __getattr__
    return module


@pytest.mark.parametrize("sizes, K", [((6, 8, 7, 3), 4), ((30, 24, 20, 5), 2)])
def test_the_fast_route_runs_on_the_arrays_it_is_given(monkeypatch, sizes, K):
    net, theta, xs, ys, xq, yq = classification_problem(sizes=sizes, K=K, Q=K)
    ref_loss, ref_grad = mm.meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.5, 2, loss=CE)
    ref_g = mlp_loss_and_grad(net, theta, xs, ys, loss=CE)[1]
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    on_gpu = [a.view(FakeGPUArray) for a in (theta, xs, ys, xq, yq)]
    loss, g = mm.meta_value_and_grad(net, *on_gpu, 0.5, 2, loss=CE)
    assert isinstance(g, FakeGPUArray)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(g.view(np.ndarray), ref_grad, rtol=1e-10)
    grads = mlp_loss_and_grad(net, on_gpu[0], on_gpu[1], on_gpu[2], loss=CE)[1]
    assert isinstance(grads, FakeGPUArray)
    np.testing.assert_allclose(grads.view(np.ndarray), ref_g, rtol=1e-12)
