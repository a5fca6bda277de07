"""The hand-written meta-optimizers: SGD and Adam against hand-computed updates, exact resume
from a state_dict, and bad input."""

import math

import numpy as np
import pytest

from minimaml.optim import SGD, Adam


def test_sgd_step_is_theta_minus_lr_grad_and_does_not_mutate():
    theta = np.array([1.0, -2.0, 3.0])
    grad = np.array([0.5, 0.25, -4.0])
    new = SGD(lr=0.1).step(theta, grad)
    np.testing.assert_array_equal(new, [0.95, -2.025, 3.4])
    np.testing.assert_array_equal(theta, [1.0, -2.0, 3.0])  # inputs untouched
    assert new.dtype == theta.dtype


def test_adam_two_steps_match_hand_computation():
    # Scalars worked by hand with the textbook formulas, lr=0.1, b1=0.9, b2=0.999, eps=1e-8.
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    theta0 = np.array([1.0, -1.0])
    g1 = np.array([2.0, -0.5])
    g2 = np.array([-1.0, 3.0])
    opt = Adam(lr=lr, b1=b1, b2=b2, eps=eps)

    # step 1: m = 0.1 g1, v = 0.001 g1², m̂ = g1, v̂ = g1² → update = lr · g1 / (|g1| + eps) ≈ lr·sign(g1)
    theta1 = opt.step(theta0, g1)
    expected1 = theta0 - lr * g1 / (np.abs(g1) + eps)
    np.testing.assert_allclose(theta1, expected1, rtol=0, atol=1e-15)
    np.testing.assert_allclose(theta1, [0.9, -0.9], atol=1e-8)

    # step 2, element 0 by hand: m = 0.9·0.2 + 0.1·(−1) = 0.08, v = 0.999·0.004 + 0.001·1 = 0.004996
    # m̂ = 0.08 / 0.19, v̂ = 0.004996 / 0.001999
    m = np.array([0.9 * 0.2 + 0.1 * -1.0, 0.9 * -0.05 + 0.1 * 3.0])
    v = np.array([0.999 * 0.004 + 0.001 * 1.0, 0.999 * 0.00025 + 0.001 * 9.0])
    m_hat = m / (1 - 0.9**2)
    v_hat = v / (1 - 0.999**2)
    theta2 = opt.step(theta1, g2)
    expected2 = theta1 - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(theta2, expected2, rtol=1e-13)
    # element 0 written out as one number, as a reader would on paper
    e0 = (1.0 - 0.1 * 2.0 / (2.0 + 1e-8)) - 0.1 * (0.08 / 0.19) / (math.sqrt(0.004996 / 0.001999) + 1e-8)
    assert theta2[0] == pytest.approx(e0, rel=1e-13)
    assert opt.t == 2


def test_adam_keeps_float32():
    theta = np.ones(4, dtype=np.float32)
    grad = np.full(4, 0.5, dtype=np.float32)
    opt = Adam(lr=1e-3)
    for _ in range(3):
        theta = opt.step(theta, grad)
    assert theta.dtype == np.float32 and opt.m.dtype == np.float32 and opt.v.dtype == np.float32


@pytest.mark.parametrize("make", [lambda: SGD(0.05), lambda: Adam(0.01)])
def test_state_round_trip_continues_identically(make):
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(6, 5))
    theta = rng.normal(size=5)

    ref = make()
    t_ref = theta
    for g in grads:
        t_ref = ref.step(t_ref, g)

    first = make()
    t = theta
    for g in grads[:3]:
        t = first.step(t, g)
    # Save through an .npz the way a checkpoint would (None-free keys only), then resume.
    state = first.state_dict()
    resumed = make()
    # A fresh optimizer with other hyper-parameters must be fully overwritten by the state.
    resumed.lr = 123.0
    resumed.load_state_dict(state)
    # The saved state is a copy: stepping the original must not change it.
    first.step(t, grads[3])
    for g in grads[3:]:
        t = resumed.step(t, g)
    np.testing.assert_array_equal(t, t_ref)


def test_adam_state_survives_npz(tmp_path):
    opt = Adam(lr=0.01)
    theta = np.zeros(3)
    theta = opt.step(theta, np.array([1.0, 2.0, 3.0]))
    path = tmp_path / "opt.npz"
    np.savez(path, **{k: v for k, v in opt.state_dict().items()})
    with np.load(path) as f:
        state = {k: f[k][()] if f[k].ndim == 0 else f[k] for k in f.files}
    other = Adam()
    other.load_state_dict(state)
    g = np.array([-1.0, 0.5, 0.0])
    np.testing.assert_array_equal(other.step(theta, g), opt.step(theta, g))


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan"), float("inf")])
@pytest.mark.parametrize("cls", [SGD, Adam])
def test_bad_lr(cls, lr):
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got lr="):
        cls(lr)


def test_bad_betas_eps_and_shapes():
    with pytest.raises(ValueError, match=r"b1 must be in \[0, 1\), got b1=1.0"):
        Adam(b1=1.0)
    with pytest.raises(ValueError, match=r"b2 must be in \[0, 1\), got b2=-0.1"):
        Adam(b2=-0.1)
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0, got eps=0"):
        Adam(eps=0)
    with pytest.raises(TypeError, match=r"lr must be a real number, got '0.1'"):
        SGD("0.1")
    with pytest.raises(ValueError, match=r"same shape, got theta \(3,\) and grad \(4,\)"):
        SGD(0.1).step(np.zeros(3), np.zeros(4))
    opt = Adam()
    opt.step(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"Adam state has shape \(3,\) but grad has shape \(2,\)"):
        opt.step(np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match=r"state_dict is for optimizer 'SGD', cannot load it into Adam"):
        Adam().load_state_dict(SGD(0.1).state_dict())


@pytest.mark.parametrize("theta,grad,match", [
    (np.array([1, 2, 3]), np.ones(3), r"theta must be a floating-point array, got int64 array"),
    (np.ones(3), np.array([1, 0, 1]), r"grad must be a floating-point array, got int64 array"),
    ([1.0, 2.0], np.ones(2), r"theta must be a floating-point array, got list"),
])
@pytest.mark.parametrize("opt", [SGD(0.1), Adam(0.1)], ids=["SGD", "Adam"])
def test_step_refuses_non_float_arrays(opt, theta, grad, match):
    # An int theta used to come back unchanged: the float update was cast away.
    with pytest.raises(TypeError, match=match):
        opt.step(theta, grad)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"eps": float("inf")}, ValueError, r"eps must be a finite number > 0, got eps=inf"),
    ({"b2": float("nan")}, ValueError, r"b2 must be in \[0, 1\), got b2=nan"),
    ({"b1": "0.9"}, TypeError, r"b1 must be a real number, got '0.9' of type str"),
    ({"eps": None}, TypeError, r"eps must be a real number, got None"),
    ({"b1": True}, TypeError, r"b1 must be a real number, got True"),
])
def test_adam_hyperparameters_finite_and_in_range(kwargs, error, match):
    with pytest.raises(error, match=match):
        Adam(**kwargs)


def _adam_state():
    opt = Adam(0.01)
    opt.step(np.zeros(3), np.array([1.0, -2.0, 0.5]))
    return opt.state_dict()


MISSING = object()


@pytest.mark.parametrize("change,error,match", [
    ({"lr": MISSING, "b1": MISSING}, ValueError, r"Adam state_dict is missing keys \['b1', 'lr'\]"),
    ({"lr": "0.1"}, TypeError, r"lr must be a real number, got '0.1'"),
    ({"eps": float("inf")}, ValueError, r"eps must be a finite number > 0, got eps=inf"),
    ({"t": -1}, ValueError, r"t must be an int >= 0, got t=-1"),
    ({"t": 1.5}, ValueError, r"t must be an int >= 0, got t=1.5"),
    ({"m": np.zeros(2)}, ValueError, r"m and v must be float arrays of one shape, got m a float64 array of "
                                     r"shape \(2,\)"),
    ({"m": np.zeros(3, dtype=int), "v": np.zeros(3, dtype=int)}, ValueError, r"float arrays"),
    ({"v": np.array([1.0, np.nan, 1.0])}, ValueError, r"m and v must be finite, and v >= 0"),
    ({"v": np.array([1.0, -1.0, 1.0])}, ValueError, r"v >= 0"),
    ({"m": None, "v": None}, ValueError, r"t=1; the moments must both be arrays, or both None before"),
    ({"m": None}, ValueError, r"m is None, v is a float64 array of shape \(3,\) and t=1"),
])
def test_adam_load_state_dict_refuses_bad_state(change, error, match):
    state = _adam_state()
    state.update(change)
    state = {k: v for k, v in state.items() if v is not MISSING}
    opt = Adam(lr=0.5)
    with pytest.raises(error, match=match):
        opt.load_state_dict(state)
    assert opt.lr == 0.5 and opt.t == 0 and opt.m is None  # a bad state changes nothing


def test_sgd_load_state_dict_names_missing_keys():
    with pytest.raises(ValueError, match=r"SGD state_dict is missing keys \['lr'\]"):
        SGD(0.1).load_state_dict({"name": "SGD"})
