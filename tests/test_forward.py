"""Forward passes: against the defining formula, against PyTorch's own ops, dtypes and twin parity."""

from __future__ import annotations

import numpy as np
import pytest

import lnlib.numpy as lnp
from conftest import F, lnt, needs_torch, reference_normalize, torch

# (shape, axis, affine shape): the paper's per-unit affine, PyTorch's per-element affine, a per-channel
# (MATLAB-style) affine, statistics over a middle axis, and a 1-D input.
CASES = [
    ((8, 16), -1, (16,)),
    ((4, 3, 5, 6), (1, 2, 3), (3, 5, 6)),
    ((4, 3, 5, 6), (1, 2, 3), (3, 1, 1)),
    ((5, 7, 4), 1, (1, 4)),
    ((10,), 0, (10,)),
    ((2, 3, 4), (0, 2), (3, 1)),
]


@pytest.mark.parametrize("shape,axis,pshape", CASES)
def test_layer_norm_equals_the_defining_formula(backend, rng, shape, axis, pshape):
    x = rng.normal(2.0, 3.0, size=shape)
    gamma, beta = rng.normal(size=pshape), rng.normal(size=pshape)
    axes = tuple(np.atleast_1d(axis) % len(shape))
    y = backend.lib.layer_norm(backend.asarray(x), backend.asarray(gamma), backend.asarray(beta), axis=axis, eps=1e-5)
    np.testing.assert_allclose(backend.to_numpy(y), reference_normalize(x, axes, 1e-5, gamma, beta), rtol=0, atol=1e-12)


@pytest.mark.parametrize("ddof", [0, 1])
def test_batch_norm_equals_the_defining_formula(backend, rng, ddof):
    x = rng.normal(-1.0, 0.5, size=(6, 4, 3))
    gamma, beta = rng.normal(size=(4, 1)), rng.normal(size=(4, 1))
    y = backend.lib.batch_norm(backend.asarray(x), backend.asarray(gamma), backend.asarray(beta), axis=(0, 2),
                               eps=1e-3, ddof=ddof)
    expected = reference_normalize(x, (0, 2), 1e-3, gamma, beta, ddof=ddof)
    np.testing.assert_allclose(backend.to_numpy(y), expected, rtol=0, atol=1e-12)


@needs_torch
def test_layer_norm_matches_torch_layer_norm(backend, rng):
    x = rng.normal(0.5, 2.0, size=(4, 3, 5, 6))
    gamma, beta = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    ours = backend.lib.layer_norm(backend.asarray(x), backend.asarray(gamma), backend.asarray(beta), axis=(-2, -1))
    ref = F.layer_norm(torch.from_numpy(x), (5, 6), torch.from_numpy(gamma), torch.from_numpy(beta), eps=1e-5)
    np.testing.assert_allclose(backend.to_numpy(ours), ref.numpy(), rtol=0, atol=1e-12)


@needs_torch
def test_batch_norm_matches_torch_batch_norm_on_images(backend, rng):
    x = rng.normal(3.0, 2.0, size=(8, 3, 4, 5))
    weight, bias = rng.normal(size=3), rng.normal(size=3)
    ours = backend.lib.batch_norm(backend.asarray(x), backend.asarray(weight.reshape(3, 1, 1)),
                                  backend.asarray(bias.reshape(3, 1, 1)), axis=(0, 2, 3))
    ref = F.batch_norm(torch.from_numpy(x), None, None, torch.from_numpy(weight), torch.from_numpy(bias),
                       training=True, eps=1e-5)
    np.testing.assert_allclose(backend.to_numpy(ours), ref.numpy(), rtol=0, atol=1e-12)


@needs_torch
def test_layer_norm_over_channels_and_space_is_group_norm_with_one_group(backend, rng):
    x = rng.normal(1.0, 2.0, size=(4, 6, 3, 3))
    weight, bias = rng.normal(size=6), rng.normal(size=6)
    ours = backend.lib.layer_norm(backend.asarray(x), backend.asarray(weight.reshape(6, 1, 1)),
                                  backend.asarray(bias.reshape(6, 1, 1)), axis=(1, 2, 3))
    ref = F.group_norm(torch.from_numpy(x), 1, torch.from_numpy(weight), torch.from_numpy(bias), eps=1e-5)
    np.testing.assert_allclose(backend.to_numpy(ours), ref.numpy(), rtol=0, atol=1e-12)


@needs_torch
def test_statistics_over_space_only_are_instance_norm(backend, rng):
    x = rng.normal(1.0, 2.0, size=(4, 6, 3, 5))
    ours = backend.lib.layer_norm(backend.asarray(x), axis=(2, 3))
    ref = F.instance_norm(torch.from_numpy(x), eps=1e-5)
    np.testing.assert_allclose(backend.to_numpy(ours), ref.numpy(), rtol=0, atol=1e-12)


def test_eps_sits_inside_the_square_root(backend):
    # one row with variance 1e-4: inside the sqrt the denominator is sqrt(1e-4 + 1e-2), outside it would be 1e-2 + 1e-2
    x = np.array([[-0.01, 0.01]])
    y = backend.to_numpy(backend.lib.layer_norm(backend.asarray(x), eps=1e-2))
    np.testing.assert_allclose(y, x / np.sqrt(1e-4 + 1e-2), rtol=1e-14)
    assert not np.allclose(y, x / (0.01 + 1e-2))


def test_constant_slice_normalizes_to_beta(backend):
    x = np.full((3, 5), 7.0)
    beta = np.arange(5.0)
    y = backend.to_numpy(backend.lib.layer_norm(backend.asarray(x), None, backend.asarray(beta)))
    np.testing.assert_array_equal(y, np.broadcast_to(beta, (3, 5)))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_output_dtype_is_input_dtype(backend, rng, dtype):
    x = rng.normal(size=(4, 8)).astype(dtype)
    gamma = np.ones(8)  # float64 parameters do not promote the output
    for y in (backend.lib.layer_norm(backend.asarray(x), backend.asarray(gamma)),
              backend.lib.batch_norm(backend.asarray(x), backend.asarray(gamma))):
        assert backend.to_numpy(y).dtype == np.dtype(dtype)


@needs_torch
def test_bfloat16_is_computed_in_float32(rng):
    x = torch.from_numpy(rng.normal(5.0, 1.0, size=(4, 64)).astype(np.float32))
    y = lnt.layer_norm(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), lnt.layer_norm(x), atol=0.1, rtol=0.02)  # bfloat16 input rounding


CASES_PARITY = [((16, 32), -1), ((4, 3, 5, 6), (1, 2, 3)), ((9, 5), 0), ((3, 4, 5), (0, 2))]


@pytest.mark.parametrize("shape,axis", CASES_PARITY)
@needs_torch
def test_numpy_and_torch_agree_to_1e_12_in_float64(rng, shape, axis):
    x = rng.normal(3.0, 5.0, size=shape)
    pshape = tuple(1 if i in np.atleast_1d(axis) % len(shape) else n for i, n in enumerate(shape))
    gamma, beta, dy = rng.normal(size=pshape), rng.normal(size=pshape), rng.normal(size=shape)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    for fwd, bwd in ((lnp.layer_norm, lnt.layer_norm), (lnp.batch_norm, lnt.batch_norm)):
        np.testing.assert_allclose(fwd(x, gamma, beta, axis=axis), bwd(t(x), t(gamma), t(beta), axis=axis).numpy(),
                                   rtol=0, atol=1e-12)
    for fwd, bwd in ((lnp.layer_norm_backward, lnt.layer_norm_backward),
                     (lnp.batch_norm_backward, lnt.batch_norm_backward)):
        for a, b in zip(fwd(dy, x, gamma, beta, axis=axis), bwd(t(dy), t(x), t(gamma), t(beta), axis=axis)):
            np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-12)


def test_layer_norm_of_an_example_does_not_depend_on_its_batch(backend, rng):
    batch = rng.normal(size=(32, 50))
    alone = backend.to_numpy(backend.lib.layer_norm(backend.asarray(batch[:1])))
    together = backend.to_numpy(backend.lib.layer_norm(backend.asarray(batch)))[:1]
    np.testing.assert_allclose(alone, together, rtol=0, atol=1e-15)
    # ... while batch norm's does: the same example, normalized in two different batches
    other = np.concatenate([batch[:1], rng.normal(size=(31, 50))])
    bn_a = backend.to_numpy(backend.lib.batch_norm(backend.asarray(batch)))[0]
    bn_b = backend.to_numpy(backend.lib.batch_norm(backend.asarray(other)))[0]
    assert np.abs(bn_a - bn_b).max() > 0.01


def test_moments_are_two_pass_and_keepdims_works(backend, rng):
    x = rng.normal(1e6, 1.0, size=(3, 1000))
    mean, var = backend.lib.moments(backend.asarray(x), axis=1, keepdims=False)
    assert backend.to_numpy(mean).shape == (3,)
    np.testing.assert_allclose(backend.to_numpy(var), x.var(axis=1), rtol=1e-9)
    _, var1 = backend.lib.moments(backend.asarray(x), axis=1, ddof=1)
    assert backend.to_numpy(var1).shape == (3, 1)
    np.testing.assert_allclose(backend.to_numpy(var1)[:, 0], x.var(axis=1, ddof=1), rtol=1e-9)


def test_empty_batch_gives_empty_output(backend):
    y = backend.lib.layer_norm(backend.asarray(np.zeros((0, 4))), axis=-1)
    assert backend.to_numpy(y).shape == (0, 4)


def test_nan_stays_in_its_own_slice(backend, rng):
    x = rng.normal(size=(3, 6))
    x[1, 2] = np.nan
    y = backend.to_numpy(backend.lib.layer_norm(backend.asarray(x)))
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()


@pytest.mark.parametrize("shape", [(1, 7), (3, 1000), (5000, 64), (2, 3, 257)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_blocked_kernels_agree_with_the_general_path(rng, shape, dtype):
    from lnlib.numpy import rowwise
    from lnlib.numpy.normalization import gradients, standardize

    x = rng.normal(3.0, 2.0, size=shape).astype(dtype)
    gamma, beta = rng.normal(size=shape[-1]).astype(dtype), rng.normal(size=shape[-1]).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    axes = (len(shape) - 1,)
    assert rowwise.applies(x, axes, gamma, beta, 0)
    x_hat, rstd = standardize(x, axes, 1e-5)
    tol = 1e-12 if dtype == "float64" else 5e-5
    np.testing.assert_allclose(rowwise.forward(x, gamma, beta, 1e-5), x_hat * gamma + beta, rtol=0, atol=tol)
    dx, dgamma, dbeta = rowwise.backward(dy, x, gamma, 1e-5)
    ref = gradients(dy, x_hat, rstd, gamma, beta.shape, axes)
    for got, want in zip((dx, dgamma, dbeta), ref):
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(1.0, np.abs(want).max()))


def test_out_receives_the_result_and_in_place_works(rng):
    x = rng.normal(size=(4, 9))
    expected = lnp.layer_norm(x)
    out = np.empty_like(x)
    assert lnp.layer_norm(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    y = x.copy()
    lnp.layer_norm(y, out=y)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="out must have x's shape"):
        lnp.layer_norm(x, out=np.empty((4, 8)))
    with pytest.raises(TypeError, match="out must be a NumPy array"):
        lnp.layer_norm(x, out=[0.0])
    out_general = np.empty_like(x)  # statistics over axis 0 take the general path, which honours out too
    assert lnp.layer_norm(x, axis=0, out=out_general) is out_general
    np.testing.assert_array_equal(out_general, lnp.layer_norm(x, axis=0))
