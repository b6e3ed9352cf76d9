r"""DRAW (Gregor et al. 2015) with selective attention, with and without the paper's layer normalization.

DRAW writes an image onto a canvas in ``T`` steps ("glimpses"). At step :math:`t`, with the canvas
:math:`c_{t-1}` and the decoder's previous state :math:`h^{dec}_{t-1}`:

.. math::

    \hat x_t &= x - \sigma(c_{t-1}) &&\text{(what the canvas still misses)}\\
    r_t &= \text{read}(x, \hat x_t, h^{dec}_{t-1}) &&\text{(two } N_r\times N_r \text{ glimpses)}\\
    h^{enc}_t &= \text{LSTM}^{enc}(h^{enc}_{t-1}, [r_t, h^{dec}_{t-1}])\\
    z_t &\sim Q(Z_t \mid h^{enc}_t) = \mathcal N(\mu_t, \operatorname{diag}\sigma_t^2),
        \quad \mu_t = W_\mu h^{enc}_t,\ \log\sigma_t = W_\sigma h^{enc}_t\\
    h^{dec}_t &= \text{LSTM}^{dec}(h^{dec}_{t-1}, z_t)\\
    c_t &= c_{t-1} + \text{write}(h^{dec}_t) &&\text{(an } N_w\times N_w \text{ patch placed on the canvas)}

and the loss is the negative variational bound, in nats per image, with Bernoulli pixels:

.. math::

    \mathcal L = \underbrace{-\sum_{k=1}^{784} \big[x_k \log \sigma(c_{T,k}) + (1-x_k)\log(1-\sigma(c_{T,k}))\big]}
    _{\mathcal L^x}
    + \underbrace{\sum_{t=1}^{T} \tfrac12 \sum_j \big(\mu_{tj}^2 + \sigma_{tj}^2 - \log\sigma_{tj}^2 - 1\big)}
    _{\mathcal L^z = \sum_t \mathrm{KL}(Q(Z_t|h^{enc}_t)\,\|\,\mathcal N(0, I))} .

**Attention.** From :math:`h^{dec}` a linear map gives :math:`(\tilde g_X, \tilde g_Y, \log\sigma^2,
\log\tilde\delta, \log\gamma)`; for an :math:`A\times B` image (28x28) the grid centre is
:math:`g_X = \frac{A+1}{2}(\tilde g_X + 1)`, :math:`g_Y = \frac{B+1}{2}(\tilde g_Y + 1)`, the stride
:math:`\delta = \frac{\max(A,B)-1}{N-1}\tilde\delta`, and filter :math:`i = 1..N` is centred at
:math:`\mu^i_X = g_X + (i - N/2 - 1/2)\,\delta`. The filterbank
:math:`F_X[i, a] = \exp\!\big(-(a-\mu^i_X)^2 / 2\sigma^2\big) / Z_X` over pixel columns :math:`a = 1..A`
has rows that sum to 1 (:math:`F_Y` likewise). Then :math:`\text{read} = \gamma\,[F_Y x F_X^\top,\,
F_Y \hat x F_X^\top]` and :math:`\text{write} = \frac{1}{\hat\gamma} \hat F_Y^\top w_t \hat F_X` with
:math:`w_t = W_w h^{dec}_t` and the write head's own :math:`\hat F, \hat\gamma`.

**Layer normalization (§6.4, eqs. 29–31).** The paper normalizes only the LSTM's cell before the output
tanh: :math:`h_t = o_t \odot \tanh(\mathrm{LN}(c_t))`, :func:`lnlib.torch.recurrent.draw_lstm_step`, in
both the encoder and the decoder. The baseline uses the plain LSTM (:func:`~lnlib.torch.recurrent.lstm_step`)
with the same initial weights.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .recurrent import make_cell

#: the cell kind of each variant: the paper's DRAW LSTM with LN on the cell, or the plain LSTM
CELLS = {"baseline": "lstm", "layernorm": "draw_lstm"}


class Attention(NamedTuple):
    """One attention head's filterbanks and intensity for a batch (:func:`filterbanks`)."""

    fy: torch.Tensor  #: (batch, N, B): row i is filter i over the image's rows
    fx: torch.Tensor  #: (batch, N, A): row i is filter i over the image's columns
    gamma: torch.Tensor  #: (batch, 1, 1): the intensity


def filterbanks(params: torch.Tensor, n: int, height: int = 28, width: int = 28) -> Attention:
    r"""The Gaussian filterbanks of one attention head from its 5 raw parameters per case (``(batch, 5)``:
    :math:`\tilde g_X, \tilde g_Y, \log\sigma^2, \log\tilde\delta, \log\gamma`), ``n`` filters per axis."""
    if params.ndim != 2 or params.shape[1] != 5:
        raise ValueError(f"params must have shape (batch, 5), got {tuple(params.shape)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    gx_, gy_, log_var, log_delta, log_gamma = params.unbind(1)
    gx = (width + 1) / 2 * (gx_ + 1)
    gy = (height + 1) / 2 * (gy_ + 1)
    delta = (max(width, height) - 1) / max(n - 1, 1) * torch.exp(log_delta)
    var = torch.exp(log_var)
    offsets = torch.arange(1, n + 1, dtype=params.dtype, device=params.device) - n / 2 - 0.5

    def bank(centre: torch.Tensor, size: int) -> torch.Tensor:
        mu = centre[:, None] + offsets[None, :] * delta[:, None]  # (batch, n)
        pixels = torch.arange(1, size + 1, dtype=params.dtype, device=params.device)
        # exp(.) / Z as a softmax over the pixels: the same numbers, but a filter centred far off the image,
        # whose every exp(.) underflows, still sums to 1 (on the nearest pixels) instead of 0/0
        return torch.softmax(-((pixels[None, None, :] - mu[:, :, None]) ** 2) / (2 * var[:, None, None]), dim=-1)

    return Attention(bank(gy, height), bank(gx, width), torch.exp(log_gamma)[:, None, None])


def read(images: torch.Tensor, attention: Attention) -> torch.Tensor:
    """``gamma * F_Y x F_X^T`` for images ``(batch, B, A)``: the ``(batch, N, N)`` glimpse."""
    return attention.gamma * attention.fy @ images @ attention.fx.transpose(1, 2)


def write(patch: torch.Tensor, attention: Attention) -> torch.Tensor:
    """``F_Y^T w F_X / gamma`` for a patch ``(batch, N, N)``: a ``(batch, B, A)`` image."""
    return attention.fy.transpose(1, 2) @ patch @ attention.fx / attention.gamma


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, sigma^2) || N(0, 1))`` summed over the last axis: ``1/2 sum(mu^2 + sigma^2 - 2 log sigma - 1)``."""
    return 0.5 * (mu ** 2 + torch.exp(2 * log_sigma) - 2 * log_sigma - 1).sum(-1)


class DRAW(nn.Module):
    """DRAW on 28x28 binary images: ``variant`` ``"baseline"`` or ``"layernorm"`` (:data:`CELLS`), ``glimpses``
    steps, ``hidden`` units in each LSTM, ``latent`` dimensions per step, ``read_n``/``write_n`` filters.

    ``forward(x)`` with ``x`` ``(batch, 784)`` in {0, 1} returns ``(reconstruction nats, KL nats per step)``:
    ``(batch,)`` and ``(batch, glimpses)``; their sum over steps is the loss. ``rng`` seeds the LSTM
    weights (the same for both variants: paired runs); the linear maps use torch's generator."""

    def __init__(self, variant: str, *, glimpses: int, hidden: int, latent: int, read_n: int = 2,
                 write_n: int = 5, rng: int = 0) -> None:
        super().__init__()
        if variant not in CELLS:
            raise ValueError(f"variant must be one of {tuple(CELLS)}, got {variant!r}")
        for name, value in (("glimpses", glimpses), ("hidden", hidden), ("latent", latent), ("read_n", read_n),
                            ("write_n", write_n)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.variant, self.glimpses, self.hidden, self.latent = variant, glimpses, hidden, latent
        self.read_n, self.write_n = read_n, write_n
        seeds = np.random.default_rng(rng).integers(0, 2**62, size=2)
        self.encoder = make_cell(CELLS[variant], 2 * read_n * read_n + hidden, hidden, rng=int(seeds[0]))
        self.decoder = make_cell(CELLS[variant], latent, hidden, rng=int(seeds[1]))
        self.read_head = nn.Linear(hidden, 5)
        self.write_head = nn.Linear(hidden, 5)
        self.write_patch = nn.Linear(hidden, write_n * write_n)
        self.q_mu = nn.Linear(hidden, latent)
        self.q_log_sigma = nn.Linear(hidden, latent)

    def forward(self, x: torch.Tensor, *, noise: torch.Tensor | None = None,
                trace: list[dict[str, torch.Tensor]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The two loss terms of each case; ``noise`` ``(glimpses, batch, latent)`` fixes the samples (else
        drawn from torch's generator); ``trace``, if a list, receives one dict per step: the canvas
        :math:`\\sigma(c_t)`, the read filterbanks ``read_fy``, ``read_fx`` and the posterior's ``mu``, ``log_sigma``, ``z``."""
        batch = x.shape[0]
        images = x.view(batch, 28, 28)
        canvas = torch.zeros_like(images)
        enc = self.encoder.initial_state(batch)
        dec = self.decoder.initial_state(batch)
        kls = []
        for t in range(self.glimpses):
            error = images - torch.sigmoid(canvas)
            attention = filterbanks(self.read_head(dec[0]), self.read_n)
            glimpse = torch.cat([read(images, attention), read(error, attention)], 1).flatten(1)
            enc = self.encoder(torch.cat([glimpse, dec[0]], 1), enc)
            mu, log_sigma = self.q_mu(enc[0]), self.q_log_sigma(enc[0])
            eps = torch.randn_like(mu) if noise is None else noise[t]
            z = mu + torch.exp(log_sigma) * eps
            dec = self.decoder(z, dec)
            patch = self.write_patch(dec[0]).view(batch, self.write_n, self.write_n)
            canvas = canvas + write(patch, filterbanks(self.write_head(dec[0]), self.write_n))
            kls.append(gaussian_kl(mu, log_sigma))
            if trace is not None:
                trace.append({"canvas": torch.sigmoid(canvas).detach(), "mu": mu, "log_sigma": log_sigma, "z": z,
                              "read_fy": attention.fy.detach(), "read_fx": attention.fx.detach()})
        reconstruction = nn.functional.binary_cross_entropy_with_logits(canvas.flatten(1), x, reduction="none").sum(1)
        return reconstruction, torch.stack(kls, 1)

    @torch.no_grad()
    def sample(self, count: int, *, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Generate ``count`` images from the prior: ``z_t ~ N(0, I)`` through the decoder; returns the
        canvas :math:`\\sigma(c_t)` after every step (the last is the sample's pixel probabilities)."""
        w = self.q_mu.weight
        dec = self.decoder.initial_state(count)
        canvas = torch.zeros(count, 28, 28, dtype=w.dtype, device=w.device)
        steps = []
        for _ in range(self.glimpses):
            z = torch.randn(count, self.latent, generator=generator, dtype=w.dtype, device="cpu").to(w.device)
            dec = self.decoder(z, dec)
            patch = self.write_patch(dec[0]).view(count, self.write_n, self.write_n)
            canvas = canvas + write(patch, filterbanks(self.write_head(dec[0]), self.write_n))
            steps.append(torch.sigmoid(canvas))
        return steps

    def extra_repr(self) -> str:
        return (f"variant={self.variant!r}, glimpses={self.glimpses}, hidden={self.hidden}, latent={self.latent}, "
                f"read_n={self.read_n}, write_n={self.write_n}")
