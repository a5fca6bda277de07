"""Task families: shapes, distributions, reproducibility, the true functions, errors."""

import numpy as np
import pytest

from minimaml.tasks import LinearRegression, Sinusoid, TaskBatch


def test_sinusoid_shapes_ranges_and_values():
    b = Sinusoid().sample(200, 10, 7, rng=0)
    assert isinstance(b, TaskBatch) and b.num_tasks == 200
    assert b.xs.shape == b.ys.shape == (200, 10, 1) and b.xq.shape == b.yq.shape == (200, 7, 1)
    assert b.amplitude.shape == b.phase.shape == (200,)
    assert 0.1 <= b.amplitude.min() and b.amplitude.max() <= 5.0 and b.amplitude.max() > 4.5
    assert 0 <= b.phase.min() and b.phase.max() <= np.pi and b.phase.max() > 2.8
    assert -5 <= b.xs.min() and b.xs.max() <= 5 and b.xq.min() < -4.5
    A, phi = b.params["amplitude"][:, None, None], b.params["phase"][:, None, None]
    np.testing.assert_allclose(b.ys, A * np.sin(b.xs - phi))
    np.testing.assert_allclose(b.yq, A * np.sin(b.xq - phi))


def test_sinusoid_is_reproducible_from_a_seed_and_advances_a_generator():
    a, b = Sinusoid().sample(3, 5, 5, rng=42), Sinusoid().sample(3, 5, 5, rng=42)
    np.testing.assert_array_equal(a.xs, b.xs)
    np.testing.assert_array_equal(a.amplitude, b.amplitude)
    rng = np.random.default_rng(42)
    c, d = Sinusoid().sample(3, 5, 5, rng), Sinusoid().sample(3, 5, 5, rng)
    np.testing.assert_array_equal(a.xs, c.xs)
    assert not np.array_equal(c.xs, d.xs)


def test_sinusoid_function_on_a_grid():
    b = Sinusoid().sample(4, 5, 5, rng=1)
    grid = np.linspace(-5, 5, 50)
    curves = Sinusoid.function(b.params, grid)
    assert curves.shape == (4, 50, 1)
    np.testing.assert_allclose(curves[2, :, 0], b.amplitude[2] * np.sin(grid - b.phase[2]))
    np.testing.assert_allclose(Sinusoid.function({"amplitude": 2.0, "phase": 0.5}, grid[:, None])[0, :, 0],
                               2.0 * np.sin(grid - 0.5))


def test_sinusoid_custom_ranges():
    b = Sinusoid(amp_range=(1, 1), phase_range=(0, 0), x_range=(0, 1)).sample(2, 3, 3, rng=0)
    np.testing.assert_allclose(b.ys, np.sin(b.xs))
    assert b.xs.min() >= 0 and b.xs.max() <= 1


def test_linear_regression_tasks():
    fam = LinearRegression(dim=3)
    b = fam.sample(5, 8, 6, rng=0)
    assert b.xs.shape == (5, 8, 3) and b.ys.shape == (5, 8, 1) and b.xq.shape == (5, 6, 3)
    assert b.weights.shape == (5, 3)
    np.testing.assert_allclose(b.ys[..., 0], np.einsum("tkd,td->tk", b.xs, b.weights))
    noisy = LinearRegression(dim=3, noise=0.5).sample(5, 8, 6, rng=0)
    resid = noisy.ys - LinearRegression.function(noisy.params, noisy.xs)
    assert 0.2 < resid.std() < 1.0


@pytest.mark.parametrize("args", [(0, 5, 5), (-1, 5, 5), (2.5, 5, 5), (True, 5, 5), (3, 0, 5), (3, 5, 0)])
def test_bad_sample_arguments(args):
    with pytest.raises(ValueError, match="positive int"):
        Sinusoid().sample(*args, rng=0)
    with pytest.raises(ValueError, match="positive int"):
        LinearRegression(2).sample(*args, rng=0)


def test_bad_family_arguments():
    with pytest.raises(TypeError, match="rng"):
        Sinusoid().sample(2, 2, 2, rng="seed")
    with pytest.raises(ValueError, match="dim"):
        LinearRegression(dim=0)
    with pytest.raises(ValueError, match="noise"):
        LinearRegression(dim=1, noise=-1)
    with pytest.raises(ValueError, match="amp_range"):
        Sinusoid(amp_range=(5, 1))
    with pytest.raises(AttributeError, match="frequency"):
        Sinusoid().sample(1, 1, 1, rng=0).frequency


@pytest.mark.parametrize("seed", [-1, np.int64(-5)])
def test_negative_seed_is_refused_in_one_line(seed):
    with pytest.raises(ValueError, match=rf"seed must be an int >= 0, got {seed}"):
        Sinusoid().sample(2, 2, 2, rng=seed)
    with pytest.raises(ValueError, match=r"seed must be an int >= 0"):
        LinearRegression().sample(2, 2, 2, rng=seed)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"amp_range": (0.1, np.inf)}, ValueError, r"amp_range must be \(low, high\) with finite low <= high.*"
                                               r"got \(0.1, inf\)"),
    ({"x_range": (np.nan, 1.0)}, ValueError, r"x_range must be \(low, high\) with finite low <= high"),
    ({"x_range": (-1e308, 1e308)}, ValueError, r"x_range .*finite width high − low"),
    ({"phase_range": (0.0, "pi")}, TypeError, r"phase_range must be a pair of real numbers \(low, high\), "
                                              r"got \(0.0, 'pi'\)"),
    ({"amp_range": 5.0}, TypeError, r"amp_range must be a pair of real numbers \(low, high\), got 5.0"),
    ({"amp_range": (1.0, 2.0, 3.0)}, TypeError, r"amp_range must be a pair of real numbers"),
])
def test_sinusoid_ranges_must_be_finite_pairs(kwargs, error, match):
    with pytest.raises(error, match=match):
        Sinusoid(**kwargs)
    assert Sinusoid(amp_range=np.array([1.0, 2.0])).amp_range == (1.0, 2.0)  # any pair of numbers


@pytest.mark.parametrize("noise,error", [("a", TypeError), (None, TypeError), (np.inf, ValueError),
                                         (-0.5, ValueError)])
def test_linear_regression_noise_must_be_finite_and_non_negative(noise, error):
    with pytest.raises(error, match=r"noise must be a finite real number >= 0, got "):
        LinearRegression(noise=noise)
