"""The stateful layers: BatchNorm (running statistics, train/eval) and LayerNorm, against torch.nn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lnlib.numpy as lnp
import lnlib.torch as lnt


def _copy_affine(ref: torch.nn.Module, ours: object, gamma: np.ndarray, beta: np.ndarray) -> None:
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(gamma))
        ref.bias.copy_(torch.from_numpy(beta))
    if isinstance(ours, torch.nn.Module):
        with torch.no_grad():
            ours.gamma.copy_(torch.from_numpy(gamma))
            ours.beta.copy_(torch.from_numpy(beta))
    else:
        ours.gamma, ours.beta = gamma.copy(), beta.copy()


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_batch_norm_module_matches_batchnorm1d_in_both_modes(backend, rng, momentum):
    ref = torch.nn.BatchNorm1d(6, momentum=momentum, dtype=torch.float64)
    kwargs = {"dtype": torch.float64} if backend.name == "torch" else {}
    ours = backend.lib.BatchNorm(6, momentum=momentum, **kwargs)
    _copy_affine(ref, ours, rng.normal(size=6), rng.normal(size=6))
    for _ in range(7):
        x = rng.normal(2.0, 3.0, size=(5, 6))
        np.testing.assert_allclose(backend.to_numpy(ours(backend.asarray(x))), ref(torch.from_numpy(x)).detach().numpy(),
                                   rtol=0, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(ours.running_mean), ref.running_mean.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(ours.running_var), ref.running_var.numpy(), rtol=0, atol=1e-12)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 7
    ours.eval(), ref.eval()
    x = rng.normal(2.0, 3.0, size=(3, 6))
    np.testing.assert_allclose(backend.to_numpy(ours(backend.asarray(x))), ref(torch.from_numpy(x)).detach().numpy(),
                               rtol=0, atol=1e-12)


def test_batch_norm_module_on_images_matches_batchnorm2d(backend, rng):
    ref = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    kwargs = {"dtype": torch.float64} if backend.name == "torch" else {}
    ours = backend.lib.BatchNorm(3, axis=(0, 2, 3), **kwargs)
    for _ in range(3):
        x = rng.normal(1.0, 2.0, size=(4, 3, 5, 5))
        np.testing.assert_allclose(backend.to_numpy(ours(backend.asarray(x))), ref(torch.from_numpy(x)).detach().numpy(),
                                   rtol=0, atol=1e-12)
    ours.eval(), ref.eval()
    x = rng.normal(size=(2, 3, 5, 5))
    np.testing.assert_allclose(backend.to_numpy(ours(backend.asarray(x))), ref(torch.from_numpy(x)).detach().numpy(),
                               rtol=0, atol=1e-12)


def test_batch_norm_output_depends_on_mode_but_layer_norm_does_not(backend, rng):
    bn = backend.lib.BatchNorm(8)
    ln = backend.lib.LayerNorm(8)
    x = backend.asarray(rng.normal(1.0, 2.0, size=(4, 8)))
    bn_train, ln_train = backend.to_numpy(bn(x)), backend.to_numpy(ln(x))
    bn.eval(), ln.eval()
    assert np.abs(bn_train - backend.to_numpy(bn(x))).max() > 0.1
    np.testing.assert_array_equal(ln_train, backend.to_numpy(ln(x)))


def test_layer_norm_module_matches_nn_layer_norm(rng):
    ref = torch.nn.LayerNorm((3, 4, 5), dtype=torch.float64)
    ours = lnt.LayerNorm((3, 4, 5), axis=(-3, -2, -1), dtype=torch.float64)
    with torch.no_grad():
        for a, b in ((ref.weight, ours.gamma), (ref.bias, ours.beta)):
            value = torch.from_numpy(rng.normal(size=(3, 4, 5)))
            a.copy_(value), b.copy_(value)
    x = torch.from_numpy(rng.normal(size=(2, 3, 4, 5)))
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-12)
    ours(x).sum().backward(), ref(x).sum().backward()
    torch.testing.assert_close(ours.gamma.grad, ref.weight.grad, rtol=0, atol=1e-12)


def test_numpy_layer_norm_module_initializes_gains_to_one_and_biases_to_zero():
    layer = lnp.LayerNorm(5)
    np.testing.assert_array_equal(layer.gamma, np.ones(5))
    np.testing.assert_array_equal(layer.beta, np.zeros(5))
    assert lnp.LayerNorm(5, affine=False).gamma is None


def test_modules_register_parameters_and_buffers():
    layer = lnt.BatchNorm(4)
    assert {n for n, _ in layer.named_parameters()} == {"gamma", "beta"}
    assert set(layer.state_dict()) == {"gamma", "beta", "running_mean", "running_var", "num_batches_tracked"}
    assert {n for n, _ in lnt.LayerNorm(4, affine=False).named_parameters()} == set()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_results_match_cpu(rng):
    x = torch.from_numpy(rng.normal(size=(16, 64)))
    cpu = lnt.LayerNorm(64, dtype=torch.float64)
    gpu = lnt.LayerNorm(64, dtype=torch.float64).to("cuda")
    torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=0, atol=1e-12)
    bn_cpu, bn_gpu = lnt.BatchNorm(64, dtype=torch.float64), lnt.BatchNorm(64, dtype=torch.float64).cuda()
    torch.testing.assert_close(bn_gpu(x.cuda()).cpu(), bn_cpu(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(bn_gpu.running_var.cpu(), bn_cpu.running_var, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_group_norm_module_matches_nn_group_norm_and_is_layer_norm_with_one_group(backend, rng):
    x = rng.normal(2.0, 3.0, size=(5, 8, 6, 7))
    gain, bias = rng.normal(size=(8, 1, 1)), rng.normal(size=(8, 1, 1))
    reference = torch.nn.GroupNorm(4, 8, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(gain.ravel())), reference.bias.copy_(torch.tensor(bias.ravel()))
    expected = reference(torch.tensor(x)).detach().numpy()
    lib = lnp if backend == "numpy" else lnt
    kwargs = {} if backend == "numpy" else {"dtype": torch.float64}
    ours = lib.GroupNorm((8, 1, 1), 4, axis=(1, 2, 3), **kwargs)
    one_group = lib.GroupNorm((8, 1, 1), 1, axis=(1, 2, 3), **kwargs)
    layer = lib.LayerNorm((8, 1, 1), axis=(1, 2, 3), **kwargs)
    if backend == "torch":
        with torch.no_grad():
            ours.gamma.copy_(torch.tensor(gain)), ours.beta.copy_(torch.tensor(bias))
        x = torch.tensor(x)
        y, y_one, y_layer = (m(x).detach().numpy() for m in (ours, one_group, layer))
    else:
        ours.gamma[...], ours.beta[...] = gain, bias
        y, y_one, y_layer = ours(x), one_group(x), layer(x)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y_one, y_layer, rtol=1e-12, atol=1e-12)  # one group: layer norm over (C, H, W)
    assert "num_groups=4" in repr(ours)
    with pytest.raises(ValueError, match="num_groups=3 does not divide the 8 channels of axis 1"):
        lib.GroupNorm((8, 1, 1), 3, axis=(1, 2, 3), **kwargs)(x)
    with pytest.raises(ValueError, match="num_groups must be a positive int"):
        lib.GroupNorm((8, 1, 1), 0, axis=(1, 2, 3))
    with pytest.raises(TypeError, match="shape must be"):
        lib.GroupNorm(2.5, 1)


def test_group_norm_module_trains_through_lnlibs_backward(rng):
    x = torch.tensor(rng.normal(size=(3, 8, 5, 5)), requires_grad=True)
    module = lnt.GroupNorm((8, 1, 1), 2, axis=(1, 2, 3), dtype=torch.float64)
    reference = torch.nn.GroupNorm(2, 8, dtype=torch.float64)
    (dx,) = torch.autograd.grad((module(x) ** 3).sum(), x)
    (dx_ref,) = torch.autograd.grad((reference(x) ** 3).sum(), x)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-10, atol=1e-10)
    assert {n for n, _ in module.named_parameters()} == {"gamma", "beta"}
