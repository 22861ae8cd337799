"""Kolmogorov-Arnold layer with cubic B-spline edge functions (Liu et al., 2024), for kernel generators."""
from __future__ import annotations

import torch
from torch import nn


class KANLayer(nn.Module):
    """y_o = sum_i  w_base[o,i] * silu(x_i) + sum_k c[o,i,k] * B_k(x_i), splines on a fixed grid."""

    def __init__(self, in_features: int, out_features: int, grid_size: int = 5, spline_order: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0), init_scale: float = 0.1):
        super().__init__()
        self.in_features, self.out_features, self.spline_order = in_features, out_features, spline_order
        step = (grid_range[1] - grid_range[0]) / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float32) * step + grid_range[0]
        self.register_buffer('knots', knots)
        n_basis = grid_size + spline_order
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.base_weight, a=5 ** 0.5)
        self.spline_weight = nn.Parameter(torch.randn(out_features, in_features, n_basis) * init_scale / n_basis)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """B-spline bases of every input, (..., in_features, n_basis), by the Cox-de Boor recursion."""
        t = self.knots
        x = x.unsqueeze(-1)
        bases = ((x >= t[:-1]) & (x < t[1:])).to(x.dtype)
        for p in range(1, self.spline_order + 1):
            left = (x - t[:-(p + 1)]) / (t[p:-1] - t[:-(p + 1)]) * bases[..., :-1]
            right = (t[p + 1:] - x) / (t[p + 1:] - t[1:-p]) * bases[..., 1:]
            bases = left + right
        return bases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = nn.functional.silu(x) @ self.base_weight.t()
        spline = torch.einsum('...ik,oik->...o', self.basis(x), self.spline_weight)
        return base + spline
