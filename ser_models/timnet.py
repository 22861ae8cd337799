"""TIM-Net (Ye et al., ICASSP 2023) and CkTIM-net, its continuous-kernel variant.

Input: MFCC (B, n_mfcc, T). A forward and a time-reversed branch each start with a 1x1 input
convolution and run a stack of Temporal-Aware Blocks (TABs) with dilations 2^j. Each level's
two branch outputs are summed and average-pooled over time; a learned weighted sum over levels
(no softmax, as in the paper) feeds one linear classifier. CkTIM-net replaces the TAB
convolutions (and, by a separate switch, the input convolutions) with CKConvs. With kernel_mask
each CKConv's kernel starts local (a Gaussian over the lag, FlexConv-style) and learns its width:
about 2 frames of a 3 s window at the input and 2^(j+2) frames at TAB level j, as TIM-Net's
dilations grow, up to the whole input.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .ckconv import CKConv

# Initial Gaussian kernel-mask widths (standard deviation as a fraction of the input length).
INPUT_MASK_WIDTH = 2.0 ** -6
TAB_MASK_WIDTH = 2.0 ** -5          # at TAB level 0; doubles with each level
MAX_MASK_WIDTH = 2.0                # wider is flat over the input already


class CausalConv1d(nn.Conv1d):
    """Dilated Conv1d padded on the left only, so output t sees inputs <= t."""

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x):
        return super().forward(nn.functional.pad(x, (self.left_pad, 0)))


class TemporalAwareBlock(nn.Module):
    """x * sigmoid(2 x [conv -> BatchNorm -> ReLU -> SpatialDropout](x))."""

    def __init__(self, channels: int, make_conv, dropout: float):
        super().__init__()
        layers = []
        for _ in range(2):
            layers += [make_conv(channels, channels), nn.BatchNorm1d(channels), nn.ReLU(),
                       nn.Dropout1d(dropout)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x * torch.sigmoid(self.body(x))


class TIMNet(nn.Module):
    def __init__(self, n_classes: int, n_mfcc: int = 39, filters: int = 39, n_tab: int = 8, kernel_size: int = 2,
                 dropout: float = 0.1, ck_tab: bool = False, ck_input: bool = False, omega_0: float = 25.0,
                 generator: str = 'conv', hidden_scale: int = 1, weight_norm: bool = True,
                 kernel_mask: bool = False):
        super().__init__()
        if not 1 <= n_tab <= 10:
            raise ValueError(f'n_tab must be in 1..10, got {n_tab}')
        ckconv = partial(CKConv, generator=generator, hidden_scale=hidden_scale, omega_0=omega_0,
                         weight_norm=weight_norm)

        def mask_width(fraction: float) -> float | None:
            return min(fraction, MAX_MASK_WIDTH) if kernel_mask else None

        def input_conv():
            if ck_input:
                return ckconv(n_mfcc, filters, mask_width=mask_width(INPUT_MASK_WIDTH))
            return nn.Conv1d(n_mfcc, filters, 1)

        def tab_stack():
            blocks = []
            for level in range(n_tab):
                if ck_tab:
                    make_conv = partial(ckconv, mask_width=mask_width(TAB_MASK_WIDTH * 2 ** level))
                else:
                    make_conv = partial(CausalConv1d, kernel_size=kernel_size, dilation=2 ** level)
                blocks.append(TemporalAwareBlock(filters, make_conv, dropout))
            return nn.ModuleList(blocks)

        self.forward_input, self.backward_input = input_conv(), input_conv()
        self.forward_tabs, self.backward_tabs = tab_stack(), tab_stack()
        self.level_weights = nn.Parameter(torch.full((n_tab,), 1.0 / n_tab))
        self.classifier = nn.Linear(filters, n_classes)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC (B, n_mfcc, T) -> logits (B, n_classes)."""
        forward_x = self.forward_input(mfcc)
        backward_x = self.backward_input(mfcc.flip(-1))
        pooled = []
        for forward_tab, backward_tab in zip(self.forward_tabs, self.backward_tabs, strict=True):
            forward_x = forward_tab(forward_x)
            backward_x = backward_tab(backward_x)
            pooled.append((forward_x + backward_x).mean(dim=-1))
        fused = (torch.stack(pooled, dim=-1) * self.level_weights).sum(dim=-1)
        return self.classifier(fused)
