"""lnlib: layer normalization and its relatives, in two twin backends.

- :mod:`lnlib.numpy`: the reference, derived in the book.
- :mod:`lnlib.torch`: the same maths with autograd, on CPU or CUDA.

Importing :mod:`lnlib` itself imports neither backend, so the NumPy backend works without loading torch.
"""

__version__ = "0.1.0"
