"""The convolutional experiment (issue 16, claim H14): the variants normalize over the axes they name, the
variants of a seed start from the same weights, the border/centre statistics, and a smoke run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lnlib.torch as lnt
from lnlib.experiments import convnet, training


def test_each_variant_normalizes_over_the_axes_it_names():
    x = torch.randn(6, 8, 5, 5, dtype=torch.float64) * 3 + 1
    expected = {"batchnorm": (0, 2, 3), "layernorm_chw": (1, 2, 3), "layernorm_c": (1,)}
    for variant, axes in expected.items():
        y = convnet.normalization(variant, 8).double()(x)
        torch.testing.assert_close(y.mean(axes), torch.zeros_like(y.mean(axes)), atol=1e-12, rtol=0)
        torch.testing.assert_close(y.var(axes, unbiased=False), torch.ones_like(y.mean(axes)), atol=1e-4, rtol=0)
    groups = convnet.normalization("groupnorm", 8).double()(x).reshape(6, 8 // convnet.GROUPS, -1)
    torch.testing.assert_close(groups.mean(-1), torch.zeros(6, 8 // convnet.GROUPS, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    assert isinstance(convnet.normalization("none", 8), torch.nn.Identity)
    with pytest.raises(ValueError, match="variant must be one of"):
        convnet.normalization("instancenorm", 8)
    with pytest.raises(ValueError, match="channels must be a positive multiple of 4"):
        convnet.make_cnn("none", 6)


def test_the_variants_of_a_seed_start_from_the_same_weights_and_shapes():
    spec = convnet.specs(convnet.PROFILES["smoke"], 0)
    seeds = {convnet.run_seed(s) for s in spec}
    assert len(seeds) == 1 and len({convnet.run_key(s) for s in spec}) == len(convnet.VARIANTS)
    weights = []
    for s in spec:
        torch.manual_seed(convnet.run_seed(s))
        model = convnet.make_cnn(s["variant"], s["channels"])
        assert model(torch.zeros(3, 784)).shape == (3, 10)
        weights.append(torch.cat([p.flatten() for n, p in model.named_parameters()
                                  if not n.endswith(("gamma", "beta"))]))
    assert all(torch.equal(w, weights[0]) for w in weights)
    assert convnet.run_seed(dict(spec[0], seed=1)) != convnet.run_seed(spec[0])


def test_a_group_norm_run_records_its_group_size_so_another_size_is_another_run(monkeypatch):
    (spec,) = [s for s in convnet.specs(convnet.PROFILES["smoke"], 0) if s["variant"] == "groupnorm"]
    assert spec["channels_per_group"] == convnet.GROUPS
    monkeypatch.setattr(convnet, "GROUPS", 2)  # a reader's experiment with the group size
    (other,) = [s for s in convnet.specs(convnet.PROFILES["smoke"], 0) if s["variant"] == "groupnorm"]
    assert other["channels_per_group"] == 2 and convnet.run_key(other) != convnet.run_key(spec)
    assert convnet.run_seed(other) == convnet.run_seed(spec)  # the same initial weights and batches
    assert convnet.make_cnn("groupnorm", 8, 2)[2].num_groups == 4
    with pytest.raises(ValueError, match="channels_per_group must be a positive int"):
        convnet.make_cnn("groupnorm", 8, 0)


def test_border_mask_is_the_outer_ring_without_ink():
    mask = convnet.border_mask(28)
    assert mask.sum() == 28 * 28 - 20 * 20 and not mask[4:24, 4:24].any() and mask[3, 10] and mask[10, 24]
    assert convnet.border_mask(14).sum() == 14 * 14 - 10 * 10
    with pytest.raises(ValueError, match="size must be 28 or 14"):
        convnet.border_mask(7)


def test_unit_statistics_see_constant_border_units_and_count_active_cases():
    torch.manual_seed(0)
    model = convnet.make_cnn("none", 4)
    with torch.no_grad():
        first = model[1]
        first.weight.zero_()
        first.weight[:, 0, 1, 1] = 1.0  # each filter copies its pixel: the border of MNIST is always 0
        first.bias.fill_(-0.5)  # on only where the pixel is above 0.5
    images = torch.from_numpy(np.random.default_rng(0).random((50, 784), dtype=np.float32))
    images.view(50, 28, 28)[:, torch.from_numpy(convnet.border_mask(28))] = 0.0
    stats = convnet.unit_statistics(model, images, batch=20)
    layer = stats["layer1"]
    assert layer["variance_border"] == 0.0 and layer["log10_variance_border"] == -12.0
    assert abs(layer["mean_border"] + 0.5) < 1e-7 and layer["active_border"] == 0.0
    assert 0.3 < layer["active_centre"] < 0.7  # uniform pixels: about half above 0.5
    assert np.array(layer["active_map"]).shape == (28, 28) and stats["layer2"]["size"] == 14


def test_a_smoke_run_trains_and_records_the_statistics(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "COMMITTED_RUNS", tmp_path / "runs")
    spec = dict(convnet.specs(convnet.PROFILES["smoke"], 0)[3], epochs=1)  # layer norm over C
    with training.run_environment("cpu", threads=convnet.THREADS) as device:
        log = convnet.train_run(spec, convnet.mnist.load(), tmp_path / "convnet-smoke-seed0", device=device,
                                progress=False)
    assert log["epoch"] == [1] and 0.0 < log["test_error"][0] < 0.9
    assert set(log["unit_statistics"]) == {"layer1", "layer2"}
    again = convnet.train_run(spec, None, tmp_path / "convnet-smoke-seed0", progress=False)  # read, not retrained
    assert again["test_error"] == log["test_error"]
    assert isinstance(convnet.make_cnn("groupnorm", 8)[2], lnt.GroupNorm)
