"""Continuous Kernel Convolution (Romero et al., ICLR 2022) with SIREN or KAN kernel generators.

The kernel of a CKConv is a function of relative position, produced by a small network over
positions linspace(-1, 1, L), with L the input length: the kernel spans the whole input and the
convolution is causal. Fixes over the original CkTIM-net code:

* SIREN init survives weight norm: weights are initialised first and weight_norm is attached
  after, so (g, v) reproduce exactly the SIREN weights (the original re-derived them with the
  default Kaiming bound);
* the bias is a registered Parameter, so it trains on every device;
* omega_0 is a constructor argument used by every CKConv, the input ones included.

Optionally (mask_width) the kernel is multiplied by a causal Gaussian over the lag with a learned
width, as FlexConv (Romero et al., ICLR 2022) does: the kernel starts local and can grow to the
whole input.

In eval mode the generated kernel spectra are cached per input length; the cache is dropped on
train() (entering training mode) and whenever a parameter changes (tracked through tensor versions, which
optimizer steps and load_state_dict bump).
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn.utils import parametrizations

from .kan import KANLayer
from .native import DOMAIN as SPECTRAL_MIX_DOMAIN

GENERATORS = ('conv', 'convKan')


class SineLinear(nn.Module):
    """sin(omega_0 * (W x + b)) with SIREN initialisation, optionally weight-normalised."""

    def __init__(self, in_features: int, out_features: int, omega_0: float, first: bool, weight_norm: bool):
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Linear(in_features, out_features)
        bound = 1.0 / in_features if first else math.sqrt(6.0 / in_features) / omega_0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bound, bound)
        if weight_norm:
            # Attached after init: g = ||v|| and v = W, so the effective weight is the SIREN one.
            parametrizations.weight_norm(self.linear, name='weight', dim=0)

    def forward(self, x):
        return torch.sin(self.omega_0 * self.linear(x))


class KernelGenerator(nn.Module):
    """Relative positions (L, 1) -> kernel values (L, out_channels * in_channels)."""

    def __init__(self, out_values: int, generator: str = 'conv', hidden_scale: int = 1, omega_0: float = 25.0,
                 weight_norm: bool = True, kan_grid: int = 5):
        super().__init__()
        if generator not in GENERATORS:
            raise ValueError(f'unknown kernel generator {generator!r}; choose one of {GENERATORS}')
        hidden = 32 * hidden_scale
        if generator == 'conv':
            # A 1x1-conv MLP over positions is a per-position linear map.
            self.body = nn.Sequential(
                SineLinear(1, hidden, omega_0, first=True, weight_norm=weight_norm),
                SineLinear(hidden, hidden, omega_0, first=False, weight_norm=weight_norm),
            )
        else:
            self.body = nn.Sequential(
                SineLinear(1, hidden, omega_0, first=True, weight_norm=weight_norm),
                KANLayer(hidden, hidden, grid_size=kan_grid),
            )
        self.head = nn.Linear(hidden, out_values)
        bound = math.sqrt(6.0 / hidden)
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound)
            self.head.bias.zero_()

    def forward(self, positions):
        return self.head(self.body(positions))


def mix_spectra(x_real: torch.Tensor, x_imag: torch.Tensor, kernel_real: torch.Tensor, kernel_imag: torch.Tensor):
    """Per-frequency channel mix Y = X K in real arithmetic (complex bmm is slow on CPU).

    x_* (F, B, I); kernel_* (F, I, O), K's real and imaginary parts. The real and imaginary inputs
    share one matmul per kernel part, so each weight is read once: at batch 1 this step is bound by
    memory bandwidth, not arithmetic.
    """
    batch = x_real.shape[1]
    stacked = torch.cat([x_real, x_imag], dim=1)                    # (F, 2B, I)
    by_real = torch.matmul(stacked, kernel_real)                    # [Xr Kr ; Xi Kr]
    by_imag = torch.matmul(stacked, kernel_imag)                    # [Xr Ki ; Xi Ki]
    y_real = by_real[:, :batch] - by_imag[:, batch:]
    y_imag = by_imag[:, :batch] + by_real[:, batch:]
    return y_real, y_imag


class SpectralMixNode(torch.autograd.Function):
    """mix_spectra, traced for ONNX as one node SPECTRAL_MIX_DOMAIN::SpectralMix.

    The exporter adds the node's body as a model-local ONNX function (ser_models.export), which
    onnxruntime inlines; with the native library registered (ser_models.native) its kernel runs instead.
    """

    @staticmethod
    def forward(ctx, x_real, x_imag, kernel_real, kernel_imag):
        return mix_spectra(x_real, x_imag, kernel_real, kernel_imag)

    @staticmethod
    def symbolic(g, x_real, x_imag, kernel_real, kernel_imag):
        outputs = g.op(f'{SPECTRAL_MIX_DOMAIN}::SpectralMix', x_real, x_imag, kernel_real, kernel_imag, outputs=2)
        frequencies, batch, _ = x_real.type().varyingSizes()
        for output in outputs:   # (F, B, O), for the exporter's shape inference
            output.setType(x_real.type().with_sizes([frequencies, batch, kernel_real.type().varyingSizes()[-1]]))
        return outputs


def causal_fft_conv(x: torch.Tensor, kernel_parts: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Causal convolution of x (B, I, T) with a kernel given by its spectrum parts (2, F, I, O)."""
    length = x.shape[-1]
    x_spec = torch.fft.rfft(x, n=n_fft).permute(2, 0, 1)             # (F, B, I)
    y_real, y_imag = mix_spectra(x_spec.real, x_spec.imag, kernel_parts[0], kernel_parts[1])
    y_spec = torch.complex(y_real, y_imag).permute(1, 2, 0)         # (B, O, F)
    return torch.fft.irfft(y_spec, n=n_fft)[..., :length]


@functools.lru_cache(maxsize=8)
def dft_matrices(length: int, n_fft: int):
    """Real DFT of a length-T signal zero-padded to n_fft, and its inverse cropped to T samples.

    Returns forward cos and sin (T, F), inverse cos and sin (F, T), float32. The same tensor
    objects come back for the same sizes, so an export can share one copy across all layers.
    """
    n_freq = n_fft // 2 + 1
    angle = 2 * math.pi * torch.outer(torch.arange(length, dtype=torch.float64),
                                      torch.arange(n_freq, dtype=torch.float64)) / n_fft
    fold = torch.full((n_freq, 1), 2.0, dtype=torch.float64)
    fold[0] = 1.0                                  # DC (and Nyquist, if n_fft is even) appear once
    if n_fft % 2 == 0:
        fold[-1] = 1.0
    return (torch.cos(angle).float(), (-torch.sin(angle)).float(),
            (torch.cos(angle).t() * fold / n_fft).float(), (-torch.sin(angle).t() * fold / n_fft).float())


class CKConv(nn.Module):
    """Causal continuous-kernel Conv1d whose kernel length equals the input length."""

    def __init__(self, in_channels: int, out_channels: int, generator: str = 'conv', hidden_scale: int = 1,
                 omega_0: float = 25.0, weight_norm: bool = True, mask_width: float | None = None):
        super().__init__()
        self.in_channels, self.out_channels, self.omega_0 = in_channels, out_channels, omega_0
        self.generator = KernelGenerator(in_channels * out_channels, generator, hidden_scale, omega_0, weight_norm)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if mask_width is not None and not mask_width > 0:
            raise ValueError(f'mask_width must be positive, got {mask_width}')
        # Log of the Gaussian mask's standard deviation, as a fraction of the input length.
        self.mask_log_width = None if mask_width is None else nn.Parameter(torch.tensor(math.log(mask_width)))
        self._cache_key = None
        self._cache = None
        # ONNX has no FFT we can use: the exporter switches this on to run the same
        # convolution as DFT matmuls with the cached kernel spectrum.
        self.use_dft_matmul = False

    def kernel(self, length: int) -> torch.Tensor:
        """The generated kernel (O, I, L); index L-1 weighs the current sample."""
        device = self.bias.device
        positions = torch.linspace(-1.0, 1.0, length, device=device).unsqueeze(-1)
        values = self.generator(positions)                     # (L, O*I)
        if self.mask_log_width is None:
            # Fixed fan-in scale keeps the output variance near the input's whatever L is.
            values = values * (1.0 / math.sqrt(self.in_channels * length))
        else:
            lag = (1.0 - positions) / 2                        # 0 at the current sample, 1 at the oldest
            mask = torch.exp(-0.5 * (lag / self.mask_log_width.exp()).square())
            # The same fan-in scale, counting the taps the mask lets through.
            values = values * mask * torch.rsqrt(self.in_channels * mask.square().sum())
        return values.t().reshape(self.out_channels, self.in_channels, length)

    @staticmethod
    def dft_size(length: int) -> int:
        """Shortest DFT for an exact causal convolution of length samples with a length-tap kernel.

        The exported DFT matmuls need no power of two: this odd size has no Nyquist bin, so 121
        frequencies at 3 s against the FFT path's 129.
        """
        return 2 * length - 1

    @classmethod
    def fft_size(cls, length: int) -> int:
        """The torch FFT path's size: the power of two at or above dft_size."""
        return 1 << (cls.dft_size(length) - 1).bit_length()

    def kernel_spectrum(self, length: int) -> torch.Tensor:
        """Real and imaginary parts of the kernel's rfft, (2, F, I, O); cached in eval mode."""
        if self.training:
            return self._spectrum(length)
        key = (length, self.bias.device, tuple(p._version for p in self.parameters()))
        if key != self._cache_key:
            with torch.no_grad():
                self._cache = self._spectrum(length)
            self._cache_key = key
        return self._cache

    def _spectrum(self, length: int) -> torch.Tensor:
        # Time-reverse so that tap L-1 multiplies the current sample (causal, lag 0).
        kernel = self.kernel(length).flip(-1)
        spectrum = torch.fft.rfft(kernel, n=self.fft_size(length)).permute(2, 1, 0)   # (F, I, O)
        return torch.stack([spectrum.real, spectrum.imag]).contiguous()

    def train(self, mode: bool = True):
        if mode:  # entering training: cached kernels go stale with the first step
            self._cache_key = self._cache = None
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = int(x.shape[-1])  # a plain int even while tracing: the kernel is built per length
        if self.use_dft_matmul:
            y = self._dft_matmul_conv(x)
        else:
            y = causal_fft_conv(x, self.kernel_spectrum(length), self.fft_size(length))
        return y + self.bias[:, None]

    def _dft_matmul_conv(self, x: torch.Tensor) -> torch.Tensor:
        """causal_fft_conv with the FFTs written as real DFT matmuls (exportable to ONNX)."""
        length = int(x.shape[-1])
        forward_cos, forward_sin, inverse_cos, inverse_sin = dft_matrices(length, self.dft_size(length))
        # The kernel is generated inside the graph from the generator's weights, so the ONNX file
        # stays as small as the weights; onnxruntime folds this constant subgraph once at load.
        kernel = self.kernel(length).flip(-1)                             # (O, I, L)
        kernel_real = (kernel @ forward_cos).permute(2, 1, 0)        # (F, I, O)
        kernel_imag = (kernel @ forward_sin).permute(2, 1, 0)
        x_real = (x @ forward_cos).permute(2, 0, 1)                  # (F, B, I)
        x_imag = (x @ forward_sin).permute(2, 0, 1)
        y_real, y_imag = SpectralMixNode.apply(x_real, x_imag, kernel_real, kernel_imag)   # (F, B, O)
        return y_real.permute(1, 2, 0) @ inverse_cos + y_imag.permute(1, 2, 0) @ inverse_sin
