"""DRAW (issue 15, claim H15): attention filterbanks, read/write, the KL term, the bound, the LN cell."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lnlib.experiments import draw as experiment
from lnlib.experiments import training
from lnlib.numpy import recurrent as rn
from lnlib.torch import draw
from lnlib.torch import recurrent as rt


def _params(batch, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 5, generator=g, dtype=dtype) * 0.5


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_filterbank_rows_sum_to_one_and_centre_where_the_formulas_say(n):
    attention = draw.filterbanks(_params(4), n)
    assert attention.fy.shape == (4, n, 28) and attention.fx.shape == (4, n, 28) and attention.gamma.shape == (4, 1, 1)
    torch.testing.assert_close(attention.fx.sum(-1), torch.ones(4, n, dtype=torch.float64))
    torch.testing.assert_close(attention.fy.sum(-1), torch.ones(4, n, dtype=torch.float64))
    centred = draw.filterbanks(torch.tensor([[0.0, 0.0, math.log(0.01), 0.0, 0.0]], dtype=torch.float64), 2)
    # g~ = 0: grid centre at pixel 14.5; stride 27 (the full image): filters at 1 and 28, a narrow sigma
    assert centred.fx[0, 0].argmax() == 0 and centred.fx[0, 1].argmax() == 27
    torch.testing.assert_close(centred.fx, centred.fy)


def test_read_of_a_narrow_full_grid_is_the_image_and_write_puts_a_patch_back():
    # N = 28 filters with stride 1 and a tiny variance: F is the identity, read(x) = gamma x
    params = torch.tensor([[0.0, 0.0, math.log(1e-4), math.log(1.0), math.log(2.0)]], dtype=torch.float64)
    attention = draw.filterbanks(params, 28)
    torch.testing.assert_close(attention.fx[0], torch.eye(28, dtype=torch.float64), atol=1e-12, rtol=0)
    image = torch.rand(1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(draw.read(image, attention), 2.0 * image)
    torch.testing.assert_close(draw.write(image, attention), image / 2.0)


def test_attention_gradients_are_right_in_float64():
    images = torch.rand(2, 28, 28, dtype=torch.float64)
    params = _params(2).requires_grad_(True)
    patch = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: draw.read(images, draw.filterbanks(p, 3)), (params,))
    assert torch.autograd.gradcheck(lambda p, w: draw.write(w, draw.filterbanks(p, 3)), (params, patch))


def test_kl_matches_the_closed_form_of_torch_distributions():
    mu, log_sigma = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64) * 0.3
    q = torch.distributions.Normal(mu, torch.exp(log_sigma))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(draw.gaussian_kl(mu, log_sigma), torch.distributions.kl_divergence(q, p).sum(-1))


def test_the_bound_agrees_with_a_monte_carlo_estimate_of_its_kl_terms():
    """Analytic KL per step (the loss) against the sampled log q(z) - log p(z) of the same runs: equal in
    expectation, so over many samples the two bounds agree within their Monte-Carlo error."""
    torch.manual_seed(0)
    model = draw.DRAW("layernorm", glimpses=3, hidden=8, latent=2, rng=0).double()
    x = (torch.rand(1, 784, dtype=torch.float64) > 0.7).double().expand(4000, 784)
    trace: list = []
    with torch.no_grad():
        recon, kl = model(x, trace=trace)
    sampled = sum(torch.distributions.Normal(s["mu"], torch.exp(s["log_sigma"])).log_prob(s["z"]).sum(-1)
                  - torch.distributions.Normal(0.0, 1.0).log_prob(s["z"]).sum(-1) for s in trace)
    analytic, monte_carlo = recon + kl.sum(1), recon + sampled
    error = float((monte_carlo - analytic).std() / math.sqrt(x.shape[0]))
    assert abs(float(monte_carlo.mean() - analytic.mean())) < 4 * error
    assert float(kl.min()) >= 0 and len(trace) == 3 and trace[-1]["canvas"].shape == (4000, 28, 28)


def test_shapes_variants_and_paired_initial_weights():
    torch.manual_seed(1)
    models = {v: draw.DRAW(v, glimpses=4, hidden=16, latent=3, rng=5) for v in draw.CELLS}
    x = (torch.rand(6, 784) > 0.5).float()
    recon, kl = models["baseline"](x)
    assert recon.shape == (6,) and kl.shape == (6, 4)
    assert [s.shape for s in models["layernorm"].sample(3)] == [(3, 28, 28)] * 4
    base, ln = models["baseline"].encoder.params(), models["layernorm"].encoder.params()
    assert all(torch.equal(base[k], ln[k]) for k in ("W_x", "W_h", "b"))  # same LSTM weights, LN added
    assert "gain_c" in ln and "gain_c" not in base
    with pytest.raises(ValueError, match="variant must be one of"):
        draw.DRAW("batchnorm", glimpses=1, hidden=4, latent=1)
    with pytest.raises(ValueError, match="glimpses must be a positive int"):
        draw.DRAW("baseline", glimpses=0, hidden=4, latent=1)
    with pytest.raises(ValueError, match=r"params must have shape \(batch, 5\)"):
        draw.filterbanks(torch.zeros(3, 4), 2)


def test_the_ln_cell_of_draw_matches_its_numpy_twin():
    rng = np.random.default_rng(0)
    params = rn.init_params("draw_lstm", 6, 5, rng)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}
    x, h, c = rng.standard_normal((4, 6)), rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    expected = rn.draw_lstm_step(x, h, c, params)
    got = rt.draw_lstm_step(*(torch.tensor(a) for a in (x, h, c)), {k: torch.tensor(v) for k, v in params.items()})
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-12, atol=1e-12)


def test_binarized_mnist_is_the_recorded_fixed_draw():
    from lnlib.data import binarized_mnist as bm

    data = bm.load(np.uint8)  # checks the recorded SHA-256 of the bits
    assert [part.shape for part in data] == [(50_000, 784), (10_000, 784), (10_000, 784)]
    assert set(np.unique(data.test)) == {0, 1} and 0.12 < data.train.mean() < 0.14
    pixels = np.array([[0, 255, 128] * 1000], dtype=np.uint8)
    bits = bm.binarize(pixels)
    assert bits[0, 0::3].sum() == 0 and bits[0, 1::3].all() and 400 < bits[0, 2::3].sum() < 600
    with pytest.raises(TypeError, match="pixels must be uint8"):
        bm.binarize(pixels.astype(np.float32))


def test_a_smoke_draw_run_trains_resumes_and_draws(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "COMMITTED_RUNS", tmp_path / "runs")
    spec = dict(experiment.specs(experiment.PROFILES["smoke"], 0)[1], epochs=1, train_cases=640, test_cases=100,
                train_eval_cases=100)
    assert spec["variant"] == "layernorm" and spec["pictures"]
    data = experiment.binarized_mnist.load()
    folder = tmp_path / "draw-smoke-seed0"
    with training.run_environment("cpu", threads=experiment.THREADS) as device:
        log = experiment.train_run(spec, data, folder, device=device, progress=False)
    test = log["test"][0]
    assert 50 < test["bound"] < 600 and abs(test["bound"] - test["reconstruction"] - test["kl"]) < 1e-6
    pictures = log["pictures"]
    assert len(pictures["samples"]) == 36 and len(pictures["samples"][0]) == 784
    assert len(pictures["canvases"]) == spec["glimpses"] and len(pictures["read_rows"][0]) == spec["read_n"]
    assert experiment.train_run(spec, None, folder, progress=False)["test"] == log["test"]  # read, not retrained
    model = experiment.make_model(spec)
    same = experiment.bound(model, torch.from_numpy(data.test[:50]), seed=3)
    assert same == experiment.bound(model, torch.from_numpy(data.test[:50]), seed=3)  # fixed evaluation noise


def test_assemble_without_training_names_the_missing_runs(tmp_path, monkeypatch):
    # --assemble (train=False) reads only finished runs: before any training every run is missing, after
    # one finished run that one is in and the result says it is incomplete
    monkeypatch.setattr(training, "COMMITTED_RUNS", tmp_path / "runs")
    monkeypatch.setenv("LNLIB_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    params = dict(experiment.PROFILES["smoke"], epochs=1, train_cases=128, test_cases=64, train_eval_cases=64)
    empty = experiment.run(params, profile="smoke", seed=0, device="cpu", progress=False, train=False)
    assert empty["runs"] == {} and not empty["complete"]
    assert empty["missing"] == [experiment._label(s) for s in experiment.specs(params, 0)]
    first = experiment.specs(params, 0)[0]
    with training.run_environment("cpu", threads=1) as device:
        experiment.train_run(first, experiment.binarized_mnist.load(), training.run_folder("draw", "smoke", 0), device=device,
                       progress=False)
    partial = experiment.run(params, profile="smoke", seed=0, device="cpu", progress=False, train=False)
    assert list(partial["runs"]) == [experiment.run_key(first)] and partial["missing"] == [experiment._label(s) for s in
                                                                                    experiment.specs(params, 0)[1:]]
    assert partial["training_seconds"] == sum(partial["runs"][experiment.run_key(first)]["epoch_seconds"])
