"""The losses: values against plain NumPy, first and second derivatives against finite differences,
the cross-entropy's Hessian structure, and one clear error for bad targets."""

import numpy as np
import pytest

import minimaml as mm
from minimaml.autodiff import check_grads
from minimaml.nn.losses import check_targets, loss_by_name, loss_name, one_hot


def test_cross_entropy_value_is_the_mean_negative_log_likelihood():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((3, 4, 5)), rng.integers(0, 5, (3, 4))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = -np.log(np.take_along_axis(p, labels[..., None], -1)[..., 0]).mean(-1)
    np.testing.assert_allclose(mm.softmax_cross_entropy(logits, labels), expected, rtol=1e-13)
    assert np.shape(mm.softmax_cross_entropy(logits[0], labels[0])) == ()     # one task: a scalar


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0]])
    assert mm.softmax_cross_entropy(logits, np.array([0])) == pytest.approx(0.0, abs=1e-12)
    assert mm.softmax_cross_entropy(logits, np.array([2])) == pytest.approx(2000.0)


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3)])
def test_cross_entropy_derivatives_to_second_order(shape):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, shape[:-1])
    check_grads(lambda z: mm.softmax_cross_entropy(z, labels), rng.standard_normal(shape), order=2)


def test_cross_entropy_gradient_and_hessian_in_closed_form():
    """∂L/∂z = (p − onehot)/N and ∇²_z L = blockdiag((diag(p_n) − p_n p_nᵀ)/N): PSD, zero along 1."""
    rng = np.random.default_rng(2)
    N, C = 3, 4
    z, y = rng.standard_normal((N, C)), rng.integers(0, C, N)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    f = lambda v: mm.softmax_cross_entropy(v.reshape(N, C), y)  # noqa: E731
    np.testing.assert_allclose(mm.grad(f)(z.ravel()).reshape(N, C), (p - one_hot(y, C, float)) / N, rtol=1e-12)
    H = mm.hessian(f)(z.ravel())
    blocks = np.zeros((N * C, N * C))
    for n in range(N):
        blocks[n * C:(n + 1) * C, n * C:(n + 1) * C] = (np.diag(p[n]) - np.outer(p[n], p[n])) / N
    np.testing.assert_allclose(H, blocks, atol=1e-14)
    eig = np.linalg.eigvalsh(H[:C, :C])
    assert eig[0] == pytest.approx(0.0, abs=1e-14) and (eig[1:] > 1e-6).all()
    np.testing.assert_allclose(H[:C, :C] @ np.ones(C), 0.0, atol=1e-15)


def test_mse_derivatives_to_second_order():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((2, 4, 3))
    check_grads(lambda z: mm.mse(z, y), rng.standard_normal((2, 4, 3)), order=2)
    np.testing.assert_allclose(mm.mse(y + 1.0, y), np.ones(2))


def test_accuracy_counts_the_argmax():
    logits = np.array([[[2.0, 1.0], [0.0, 3.0], [5.0, 4.0]]])
    assert mm.accuracy(logits, np.array([[0, 1, 1]])).tolist() == [pytest.approx(2 / 3)]


@pytest.mark.parametrize("labels, error, match", [
    (np.array([0, 1, 3]), ValueError, r"labels must be in \[0, 3\) for 3 classes, got values from 0 to 3"),
    (np.array([-1, 0, 1]), ValueError, r"got values from -1 to 1"),
    (np.array([0.0, 1.0, 2.0]), TypeError, r"labels must be an integer array, got dtype float64.*astype\(int\)"),
    (np.array([0, 1]), ValueError, r"logits of shape \(3, 3\) need labels of shape \(3,\), got labels of shape \(2,\)"),
])
def test_bad_labels_are_one_clear_error(labels, error, match):
    with pytest.raises(error, match=match):
        mm.softmax_cross_entropy(np.zeros((3, 3)), labels)


def test_mse_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"output has shape \(4, 1\) but the targets y have shape \(4,\)"):
        mm.mse(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match="check_targets knows"):
        check_targets(lambda a, b: 0, (2,), np.zeros(2))


def test_losses_are_stored_by_name():
    assert loss_by_name(loss_name(mm.softmax_cross_entropy)) is mm.softmax_cross_entropy
    assert loss_by_name("mse") is mm.mse
    with pytest.raises(ValueError, match="only the built-in losses"):
        loss_name(lambda out, y: 0)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        loss_by_name("hinge")
