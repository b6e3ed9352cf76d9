"""Bad input gets a ValueError/TypeError that names the argument, in both backends alike."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lnlib.numpy as lnp
from conftest import lnt, needs_torch, torch

X = np.arange(24.0).reshape(2, 3, 4)

# (description, function name, keyword arguments replacing the defaults, exception, words the message must contain)
CASES = [
    ("axis out of range", "layer_norm", {"axis": 3}, ValueError, ["axis=3", "out of range", "[-3, 2]"]),
    ("negative axis out of range", "layer_norm", {"axis": -4}, ValueError, ["axis=-4", "out of range"]),
    ("axis repeated", "layer_norm", {"axis": (1, -2)}, ValueError, ["axis=(1, -2)", "more than once"]),
    ("axis empty", "layer_norm", {"axis": ()}, ValueError, ["axis", "at least one axis"]),
    ("axis a float", "layer_norm", {"axis": 1.0}, TypeError, ["axis", "float"]),
    ("axis a bool", "batch_norm", {"axis": True}, TypeError, ["axis", "bool"]),
    ("axis a string", "layer_norm", {"axis": "-1"}, TypeError, ["axis", "str"]),
    ("gamma not broadcastable", "layer_norm", {"gamma": np.ones(3)}, ValueError, ["gamma", "(3,)", "(2, 3, 4)"]),
    ("beta not broadcastable", "batch_norm", {"beta": np.ones((5, 4))}, ValueError, ["beta", "(5, 4)"]),
    ("gamma expands x", "layer_norm", {"gamma": np.ones((5, 2, 3, 4))}, ValueError, ["gamma", "(5, 2, 3, 4)", "unchanged"]),
    ("gamma of integers", "layer_norm", {"gamma": np.ones(4, dtype=int)}, TypeError, ["gamma", "int64", "floating"]),
    ("x of integers", "layer_norm", {"x": np.arange(6).reshape(2, 3)}, TypeError, ["x", "int64", "floating"]),
    ("x of bools", "batch_norm", {"x": np.ones((2, 3), dtype=bool)}, TypeError, ["x", "bool"]),
    ("x complex", "layer_norm", {"x": np.ones((2, 3), dtype=complex)}, TypeError, ["x", "complex128"]),
    ("empty reduction", "layer_norm", {"x": np.zeros((3, 0))}, ValueError, ["layer_norm", "empty reduction"]),
    ("batch of one in training", "batch_norm", {"x": np.ones((1, 5))}, ValueError,
     ["batch_norm in training mode", "1 value", "at least 2"]),
    ("unbiased variance of one value", "batch_norm", {"x": np.ones((1, 5)), "ddof": 1}, ValueError, ["at least 2"]),
    ("negative eps", "layer_norm", {"eps": -1e-5}, ValueError, ["eps", ">= 0"]),
    ("eps not a number", "layer_norm", {"eps": "1e-5"}, TypeError, ["eps", "str"]),
]


def _call(backend, name, overrides):
    kwargs = {"x": X, "gamma": None, "beta": None, **overrides}
    x, gamma, beta = (backend.asarray(kwargs.pop(k)) for k in ("x", "gamma", "beta"))
    return getattr(backend.lib, name)(x, gamma, beta, **kwargs)


@pytest.mark.parametrize("what,name,overrides,error,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_clear_message(backend, what, name, overrides, error, words):
    with pytest.raises(error) as info:
        _call(backend, name, overrides)
    for word in words:
        assert word in str(info.value), f"{word!r} missing from: {info.value}"


@pytest.mark.parametrize("what,name,overrides,error,words", CASES, ids=[c[0] for c in CASES])
def test_backward_refuses_the_same_inputs(backend, what, name, overrides, error, words):
    x = overrides.get("x", X)
    kwargs = {k: v for k, v in overrides.items() if k not in ("x", "gamma", "beta")}
    args = [backend.asarray(a) for a in (np.ones(np.shape(x), dtype=float), x, overrides.get("gamma"),
                                         overrides.get("beta"))]
    with pytest.raises(error):
        getattr(backend.lib, f"{name}_backward")(*args, **kwargs)


@needs_torch
def test_numpy_backend_refuses_tensors():
    with pytest.raises(TypeError, match="torch.Tensor.*lnlib.torch"):
        lnp.layer_norm(torch.ones(2, 3))
    with pytest.raises(TypeError, match="gamma is a torch.Tensor"):
        lnp.layer_norm(np.ones((2, 3)), torch.ones(3))


@needs_torch
def test_torch_backend_refuses_numpy_arrays():
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray.*lnlib.numpy"):
        lnt.layer_norm(np.ones((2, 3)))
    with pytest.raises(TypeError, match="beta must be a torch.Tensor"):
        lnt.batch_norm(torch.ones(2, 3), None, [0.0, 0.0, 0.0])


def test_dy_of_the_wrong_shape(backend):
    with pytest.raises(ValueError, match=r"dy must have the shape of x"):
        backend.lib.layer_norm_backward(backend.asarray(np.ones((2, 3))), backend.asarray(np.ones((3, 2))))


def test_batch_norm_module_built_for_other_features(backend):
    layer = backend.lib.BatchNorm(5)
    with pytest.raises(ValueError, match=r"num_features=\(5,\)"):
        layer(backend.asarray(np.ones((4, 3))))


def test_momentum_out_of_range(backend):
    with pytest.raises(ValueError, match="momentum"):
        backend.lib.BatchNorm(3, momentum=1.5)


@needs_torch
def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        lnt.resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        lnt.resolve_device("gpu")
    assert lnt.resolve_device("auto").type == "cpu"


# Inputs that are not errors: each has a documented result (see lnlib/numpy/normalization.py).
def test_inf_makes_its_own_slice_nan(backend, rng):
    x = rng.normal(size=(3, 5))
    x[0, 1] = np.inf
    with np.errstate(invalid="ignore"):  # inf - inf: NumPy warns, the slice is NaN as documented
        y = backend.to_numpy(backend.lib.layer_norm(backend.asarray(x)))
    assert np.isnan(y[0]).all() and np.isfinite(y[1:]).all()


def test_zero_variance_with_eps_zero_is_nan_not_an_exception(backend):
    with np.errstate(invalid="ignore", divide="ignore"):
        y = backend.to_numpy(backend.lib.layer_norm(backend.asarray(np.full((2, 4), 3.0)), eps=0.0))
    assert np.isnan(y).all()


def test_float16_is_computed_in_float32_and_does_not_overflow(backend):
    x = np.array([[-60000.0, 60000.0, 0.0, 30000.0]], dtype=np.float16)  # x**2 overflows float16
    y = backend.to_numpy(backend.lib.layer_norm(backend.asarray(x)))
    assert y.dtype == np.float16 and np.isfinite(y).all()
    np.testing.assert_allclose(y.astype(np.float64), lnp.layer_norm(x.astype(np.float64)), atol=2e-3)


def test_non_contiguous_input_gives_the_contiguous_result(backend, rng):
    base = rng.normal(size=(6, 8))
    t = torch.from_numpy(base) if backend.name == "torch" else None  # the NumPy twin needs no torch
    views = {"strided": (base[:, ::2], lambda: t[:, ::2]), "transposed": (base.T, lambda: t.T),
             "reversed": (base[::-1], lambda: t.flip(0))}
    for name, (array_view, tensor_view) in views.items():
        x = array_view if backend.name == "numpy" else tensor_view()
        expected = lnp.layer_norm(np.ascontiguousarray(array_view))
        np.testing.assert_allclose(backend.to_numpy(backend.lib.layer_norm(x)), expected, rtol=0, atol=1e-14,
                                   err_msg=name)


def test_zero_dimensional_input_is_refused(backend):
    with pytest.raises(ValueError, match=r"axis=-1 cannot apply to a 0-dimensional input"):
        backend.lib.layer_norm(backend.asarray(np.array(3.0)))


def test_complex_gamma_is_refused(backend):
    with pytest.raises(TypeError, match="gamma must have a real floating dtype"):
        backend.lib.layer_norm(backend.asarray(np.ones((2, 3))), backend.asarray(np.ones(3, dtype=complex)))


def test_bad_ddof_is_refused(backend):
    for bad, error in ((-1, ValueError), (True, TypeError), (0.5, TypeError)):
        with pytest.raises(error, match="ddof"):
            backend.lib.batch_norm(backend.asarray(np.ones((4, 3))), ddof=bad)


# --- out= (NumPy only): every overlap with an input is refused by name; exactly x's memory is in place.
def _out_cases():
    x = np.arange(16.0).reshape(4, 4)
    out = np.empty((5, 4))
    readonly = np.empty((4, 4))
    readonly.flags.writeable = False
    return [
        ("out and gamma disjoint parts of one buffer", dict(x=x, gamma=out[0], out=out[1:]), None),  # accepted
        ("out is gamma's memory", dict(x=x, gamma=out[0], out=out[:4]), ["out overlaps gamma"]),
        ("out is beta's memory", dict(x=x, beta=out[3], out=out[:4]), ["out overlaps beta"]),
        ("out partly overlaps x", dict(x=out[:4], out=out[1:]), ["out overlaps x"]),
        ("in place, gamma a row of x", dict(x=out[:4], gamma=out[0], out=out[:4]), ["out overlaps gamma"]),
        ("out read-only", dict(x=x, out=readonly), ["out is read-only"]),
        ("out a list", dict(x=x, out=[[0.0] * 4] * 4), ["out must be a NumPy array", "list"]),
        ("out of another dtype", dict(x=x, out=np.empty((4, 4), dtype=np.float32)), ["out must have", "float32"]),
    ]


@pytest.mark.parametrize("function", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("what,kwargs,words", _out_cases(), ids=[c[0] for c in _out_cases()])
def test_out_refuses_every_overlap_by_name(function, what, kwargs, words, rng):
    kwargs = dict(kwargs)
    x = kwargs.pop("x")
    x[...] = rng.normal(size=x.shape)
    if words is None:
        gamma = kwargs.get("gamma")
        expected = getattr(lnp, function)(x.copy(), None if gamma is None else gamma.copy())
        assert getattr(lnp, function)(x, **kwargs) is kwargs["out"]
        np.testing.assert_array_equal(kwargs["out"], expected)
        return
    error = TypeError if "list" in words else ValueError
    with pytest.raises(error) as info:
        getattr(lnp, function)(x, **kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("view", ["x", "x[:, :]", "x[...]", "x.reshape(x.shape)"])
def test_out_of_exactly_x_memory_normalizes_in_place(view, rng):
    for axis in (-1, 0):  # the row-blocked kernel and the general path
        x = rng.normal(size=(3, 5))
        expected = lnp.layer_norm(x, axis=axis)
        out = eval(view, {"x": x})
        assert lnp.layer_norm(x, axis=axis, out=out) is out
        np.testing.assert_array_equal(x, expected)


# --- Issue 18, item 5: every public constructor and function names its bad arguments, in both twins alike.
# Each row runs through lnlib.numpy and lnlib.torch and must raise the same exception type, naming the same
# argument. Arrays are written as NumPy arrays and converted to tensors for the torch twin (INT_DTYPE is the
# backend's int64); RAW marks an object passed unconverted to both.
class RAW:
    def __init__(self, value):
        self.value = value


INT_DTYPE = object()
X43 = np.arange(12.0).reshape(4, 3) ** 1.5
MASKED = np.ma.masked_array(X43, mask=X43 > 20)

TWIN_CASES = [
    # (what, name, args, kwargs, exception, argument named in the message)
    ("BatchNorm momentum a string", "BatchNorm", (3,), {"momentum": "0.1"}, TypeError, "momentum"),
    ("BatchNorm momentum a bool", "BatchNorm", (3,), {"momentum": True}, TypeError, "momentum"),
    ("BatchNorm momentum NaN", "BatchNorm", (3,), {"momentum": float("nan")}, ValueError, "momentum"),
    ("BatchNorm momentum above 1", "BatchNorm", (3,), {"momentum": 1.5}, ValueError, "momentum"),
    ("BatchNorm negative features", "BatchNorm", (-3,), {}, ValueError, "num_features"),
    ("BatchNorm zero features", "BatchNorm", ((3, 0),), {}, ValueError, "num_features"),
    ("BatchNorm 2.5 features", "BatchNorm", (2.5,), {}, TypeError, "num_features"),
    ("BatchNorm True features", "BatchNorm", (True,), {}, TypeError, "num_features"),
    ("BatchNorm features a string", "BatchNorm", ("3",), {}, TypeError, "num_features"),
    ("BatchNorm eps negative", "BatchNorm", (3,), {"eps": -1e-5}, ValueError, "eps"),
    ("BatchNorm ddof negative", "BatchNorm", (3,), {"ddof": -1}, ValueError, "ddof"),
    ("BatchNorm ddof a float", "BatchNorm", (3,), {"ddof": 0.5}, TypeError, "ddof"),
    ("BatchNorm axis a string", "BatchNorm", (3,), {"axis": "0"}, TypeError, "axis"),
    ("BatchNorm axis empty", "BatchNorm", (3,), {"axis": ()}, ValueError, "axis"),
    ("BatchNorm affine a string", "BatchNorm", (3,), {"affine": "no"}, TypeError, "affine"),
    ("BatchNorm dtype int64", "BatchNorm", (3,), {"dtype": INT_DTYPE}, TypeError, "dtype"),
    ("LayerNorm 2.5 units", "LayerNorm", (2.5,), {}, TypeError, "shape"),
    ("LayerNorm negative units", "LayerNorm", (-1,), {}, ValueError, "shape"),
    ("LayerNorm shape with a zero", "LayerNorm", ((3, 0),), {}, ValueError, "shape"),
    ("LayerNorm shape empty", "LayerNorm", ((),), {}, ValueError, "shape"),
    ("LayerNorm eps negative", "LayerNorm", (3,), {"eps": -1e-5}, ValueError, "eps"),
    ("LayerNorm eps inf", "LayerNorm", (3,), {"eps": float("inf")}, ValueError, "eps"),
    ("LayerNorm eps a string", "LayerNorm", (3,), {"eps": "1e-5"}, TypeError, "eps"),
    ("LayerNorm axis a float", "LayerNorm", (3,), {"axis": 1.0}, TypeError, "axis"),
    ("LayerNorm affine None", "LayerNorm", (3,), {"affine": None}, TypeError, "affine"),
    ("LayerNorm dtype int64", "LayerNorm", (3,), {"dtype": INT_DTYPE}, TypeError, "dtype"),
    ("group_norm num_groups a float", "group_norm", (X43, 1.5), {}, TypeError, "num_groups"),
    ("group_norm num_groups a bool", "group_norm", (X43, True), {}, TypeError, "num_groups"),
    ("group_norm num_groups zero", "group_norm", (X43, 0), {}, ValueError, "num_groups"),
    ("group_norm num_groups not a divisor", "group_norm", (X43, 2), {}, ValueError, "num_groups"),
    ("group_norm eps negative", "group_norm", (X43, 1), {"eps": -1.0}, ValueError, "eps"),
    ("moments keepdims a string", "moments", (X43,), {"keepdims": "no"}, TypeError, "keepdims"),
    ("moments ddof a bool", "moments", (X43,), {"ddof": True}, TypeError, "ddof"),
    ("weight_norm axis out of range", "weight_norm", (X43,), {"axis": 2}, ValueError, "axis"),
    ("weight_norm g of integers", "weight_norm", (X43, np.ones((4, 1), dtype=int)), {}, TypeError, "g"),
    ("weight_norm v complex", "weight_norm", (X43.astype(complex),), {}, TypeError, "v"),
    ("batch_norm_inference var of another shape", "batch_norm_inference", (X43, np.zeros(3), np.ones(5)), {},
     ValueError, "var"),
    ("batch_norm_inference mean of integers", "batch_norm_inference", (X43, np.zeros(3, dtype=int), np.ones(3)), {},
     TypeError, "mean"),
    ("batch_norm_inference mean None", "batch_norm_inference", (X43, None, np.ones(3)), {}, TypeError, "mean"),
    ("batch_norm_inference eps negative", "batch_norm_inference", (X43, np.zeros(3), np.ones(3)), {"eps": -1.0},
     ValueError, "eps"),
    ("x a masked array", "layer_norm", (RAW(MASKED),), {}, TypeError, "x"),
    ("layer_norm_backward dy of integers", "layer_norm_backward", (np.ones((4, 3), dtype=int), X43), {}, TypeError,
     "dy"),
    ("rms_norm_backward dy of another shape", "rms_norm_backward", (np.ones((3, 4)), X43), {}, ValueError, "dy"),
    ("weight_norm_backward dw of another shape", "weight_norm_backward", (np.ones((3, 4)), X43), {}, ValueError,
     "dw"),
    ("group_norm_backward dy complex", "group_norm_backward", (X43.astype(complex), X43, 1), {}, TypeError, "dy"),
]


def _twin_argument(value, backend):
    if isinstance(value, RAW):
        return value.value
    if value is INT_DTYPE:
        return np.int64 if backend.name == "numpy" else torch.int64
    if isinstance(value, np.ndarray) and backend.name == "torch":
        return torch.from_numpy(np.ascontiguousarray(value))
    return value


@pytest.mark.parametrize("what,name,args,kwargs,error,argument", TWIN_CASES, ids=[c[0] for c in TWIN_CASES])
def test_twins_refuse_the_same_arguments_by_name(backend, what, name, args, kwargs, error, argument):
    args = [_twin_argument(a, backend) for a in args]
    kwargs = {k: _twin_argument(v, backend) for k, v in kwargs.items()}
    with pytest.raises(error) as info:
        getattr(backend.lib, name)(*args, **kwargs)
    assert re.search(rf"\b{argument}\b", str(info.value)), f"{argument!r} not named in: {info.value}"


@pytest.mark.parametrize("what,kwargs", [("native a string", {"native": "no"}), ("native None", {"native": None})])
@needs_torch
def test_torch_native_flag_is_a_bool(what, kwargs):
    for call in (lambda: lnt.layer_norm(torch.ones(2, 3), **kwargs), lambda: lnt.LayerNorm(3, **kwargs),
                 lambda: lnt.BatchNorm(3, **kwargs)):
        with pytest.raises(TypeError, match=r"native must be True or False"):
            call()


def test_mnist_refuses_an_integer_dtype_by_name():
    from lnlib.data import mnist
    with pytest.raises(TypeError, match=r"dtype must have a real floating dtype .* got dtype int64"):
        mnist.load(dtype=int)


@pytest.mark.parametrize("seed", [2**63, 2**64 + 1])
@needs_torch
def test_experiment_seeds_beyond_64_bits_are_refused_by_name(seed):
    from lnlib.experiments import check_parameters
    with pytest.raises(ValueError, match=r"seed must be a non-negative int below 2\*\*63"):
        check_parameters(seed=seed)


def test_constructors_accept_what_they_document(backend):
    lib, dtype = backend.lib, (np.float32 if backend.name == "numpy" else torch.float32)
    assert lib.BatchNorm((2, 3), momentum=None, dtype=dtype).momentum is None
    assert lib.BatchNorm(np.int64(3), momentum=1).momentum == 1.0
    assert lib.LayerNorm((2, 3), axis=(1, 2), affine=False, eps=0).eps == 0.0
