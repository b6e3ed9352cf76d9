"""The epsilon_numerics experiment (chapter 15): result files, determinism, and the physics it must show."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import lnlib.numpy as lnp
from lnlib import experiments, results
from lnlib.experiments import epsilon_numerics as m


@pytest.fixture(scope="module")
def smoke() -> dict:
    return experiments.run(m, profile="smoke", seed=0, device="cpu", progress=False, save=False)


def test_smoke_run_writes_a_valid_record(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_RESULTS_DIR", str(tmp_path))
    record = experiments.run(m, profile="smoke", seed=0, device="cpu", progress=False)
    path = tmp_path / "epsilon_numerics-smoke-seed0.json"
    assert path.exists()
    loaded = results.load(path)
    assert loaded["experiment"] == "epsilon_numerics" and loaded["profile"] == "smoke"
    assert loaded["data"] == json.loads(json.dumps(record["data"]))
    assert set(loaded["data"]) == {"device", "near_constant", "variance_accuracy", "half_precision"}
    assert loaded["data"]["device"] == "cpu"
    again = experiments.load_or_run(m, profile="smoke", recompute=False)
    assert again["data"] == loaded["data"]


def test_same_seed_same_data_other_seed_other_data():
    a = experiments.run(m, profile="smoke", seed=1, device="cpu", progress=False, save=False)
    b = experiments.run(m, profile="smoke", seed=1, device="cpu", progress=False, save=False)
    c = experiments.run(m, profile="smoke", seed=2, device="cpu", progress=False, save=False)
    assert a["data"] == b["data"]
    assert a["data"] != c["data"]


def test_profiles_share_their_structure_and_unknown_profiles_are_refused():
    assert set(m.PROFILES) == set(experiments.PROFILE_NAMES)
    keys = {name: sorted(profile) for name, profile in m.PROFILES.items()}
    assert keys["smoke"] == keys["cpu"] == keys["paper"]
    assert len(m.sigma_grid(m.PROFILES["cpu"])) == 37 and m.sigma_grid(m.PROFILES["cpu"])[0] == 1e-8
    with pytest.raises(ValueError, match="profile must be one of"):
        experiments.run(m, profile="huge", progress=False, save=False)


def test_record_is_strict_json(smoke):
    json.dumps(smoke, allow_nan=False)


def test_near_constant_output_and_gradient_follow_the_closed_forms(smoke):
    nc = smoke["data"]["near_constant"]
    for i, eps in enumerate(nc["eps"]):
        rms, rms_cf = np.array(nc["output_rms"][i]), np.array(nc["output_rms_closed_form"][i])
        gain, gain_cf = np.array(nc["grad_gain"][i]), np.array(nc["grad_gain_closed_form"][i])
        np.testing.assert_allclose(rms, rms_cf, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(gain, gain_cf, rtol=1e-6)
        scale = np.array(nc["grad_scale"][i])
        assert np.all(gain <= scale) and np.all(gain > 0.95 * scale)  # gain = r * a projection factor
        if eps > 0:
            assert max(gain) <= 1.0 / math.sqrt(eps)  # bounded by 1/sqrt(eps)


def test_without_eps_the_gradient_blows_up_like_one_over_sigma(smoke):
    nc = smoke["data"]["near_constant"]
    sigmas = np.array(nc["sigmas"])
    gain = np.array(nc["grad_gain"][nc["eps"].index(0.0)])
    product = gain * sigmas
    np.testing.assert_allclose(product, product[0], rtol=1e-6)
    assert gain[0] > 1e7  # sigma = 1e-8
    rms = np.array(nc["output_rms"][nc["eps"].index(0.0)])
    np.testing.assert_allclose(rms, 1.0, rtol=1e-6)  # the normalized values themselves do not grow


def test_a_constant_input_is_nan_only_without_eps(smoke):
    constant = smoke["data"]["near_constant"]["constant_input"]
    eps = smoke["data"]["near_constant"]["eps"]
    assert constant["output_all_nan"] == [e == 0.0 for e in eps]
    for e, gain, bound in zip(eps, constant["grad_gain"], constant["grad_gain_bound"]):
        if e > 0:
            assert 0.9 * bound < gain <= bound


def _accuracy(smoke, method, mean):
    return next(r for r in smoke["data"]["variance_accuracy"] if r["method"] == method and r["mean"] == mean)


def test_variance_accuracy_separates_the_algorithms(smoke):
    assert _accuracy(smoke, "one-pass", 1e4)["var_max_rel_error"] > 1.0
    assert _accuracy(smoke, "two-pass", 1e4)["var_max_rel_error"] < 1e-5
    welford = _accuracy(smoke, "welford", 1e4)["var_max_rel_error"]
    assert 1e-5 < welford < 1e-2
    assert _accuracy(smoke, m.TORCH_CPU, 1e4)["var_max_rel_error"] < 1e-3
    for method in ("one-pass", "two-pass", "welford", m.TORCH_CPU):
        assert _accuracy(smoke, method, 0.0)["var_max_rel_error"] < 1e-5


def test_half_precision_lnlib_reaches_the_storage_floor(smoke):
    for record in smoke["data"]["half_precision"]["records"]:
        assert record["output_dtype"] == record["dtype"]
        if record["method"] == m.LNLIB_TORCH:
            assert record["max_abs_error"] <= 1.01 * record["storage_max_abs_error"]
    naive = [r for r in smoke["data"]["half_precision"]["records"]
             if r["method"] == m.HALF_ARITHMETIC and r["mean"] == 100.0]
    assert all(r["rms_error"] > 5 * r["storage_rms_error"] for r in naive)


def test_eps_1e_8_is_zero_in_float16_but_not_in_bfloat16_or_float32(smoke):
    row = next(r for r in smoke["data"]["half_precision"]["stored_eps"] if r["eps"] == 1e-8)
    assert row["float16"] == 0.0 and float(np.float16(1e-8)) == 0.0
    assert row["bfloat16"] > 0.0 and row["float32"] > 0.0
    constant = {(r["dtype"], r["eps"], r["method"]): r["all_finite"]
                for r in smoke["data"]["half_precision"]["constant_row"]}
    assert constant[("float16", 1e-8, m.HALF_ARITHMETIC)] is False
    assert constant[("float16", 1e-8, m.LNLIB_TORCH)] is True
    assert constant[("bfloat16", 1e-8, m.HALF_ARITHMETIC)] is True


@pytest.mark.parametrize("sigma,eps", [(1e-3, 0.0), (1e-3, 1e-5), (2.0, 1e-3), (1e-6, 1e-5)])
def test_gradient_gain_closed_form_matches_the_backward_pass(rng, sigma, eps):
    z = m.standardized_noise(3, 50, rng)
    g = rng.standard_normal((3, 50))
    dx, _, _ = lnp.layer_norm_backward(g, 1.0 + sigma * z, eps=eps)
    measured = np.linalg.norm(dx, axis=-1) / np.linalg.norm(g, axis=-1)
    np.testing.assert_allclose(m.gradient_gain_closed_form(z, g, sigma, eps), measured, rtol=1e-6)


def test_standardized_noise_is_exactly_standardized(rng):
    z = m.standardized_noise(4, 100, rng)
    np.testing.assert_allclose(z.mean(axis=-1), 0.0, atol=1e-15)
    np.testing.assert_allclose(z.std(axis=-1), 1.0, rtol=1e-14)
