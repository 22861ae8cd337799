"""Legendre Memory Unit classifier (Voelker et al., NeurIPS 2019), in the parallel form of
Chilkuri & Eliasmith (ICML 2021): no hidden-to-memory feedback, so the memory is a linear
time-invariant system whose output is a convolution of its input with the impulse response.

It runs over MFCC frames (B, n_mfcc, T), not over a flattened feature vector. Each layer:
u_t = W_u x_t (memory_inputs channels), m_t = A_bar m_{t-1} + B_bar u_t per channel (order d,
window theta frames, zero-order hold), h_t = GELU(W_m m_t + W_x x_t). Layers stack; the top
layer is mean-pooled over time into a linear classifier. `step` runs the same layer recurrently,
one frame at a time, for streaming.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from torch import nn


def legendre_delay_system(order: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Continuous-time (A, B) of the Legendre delay network of the given order and window."""
    i = np.arange(order)[:, None]
    j = np.arange(order)[None, :]
    a = (2 * i + 1) * np.where(i < j, -1.0, (-1.0) ** (i - j + 1)) / theta
    b = ((2 * np.arange(order) + 1) * (-1.0) ** np.arange(order) / theta)[:, None]
    return a, b


def zero_order_hold(a: np.ndarray, b: np.ndarray, dt: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact discretisation: expm of the block matrix [[A, B], [0, 0]] * dt."""
    n, m = b.shape
    block = np.zeros((n + m, n + m))
    block[:n, :n], block[:n, n:] = a * dt, b * dt
    exp = scipy.linalg.expm(block)
    return exp[:n, :n], exp[:n, n:]


class LMULayer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, memory_inputs: int, order: int, theta: float):
        super().__init__()
        self.memory_inputs, self.order = memory_inputs, order
        a_bar, b_bar = zero_order_hold(*legendre_delay_system(order, theta))
        self.register_buffer('a_bar', torch.tensor(a_bar, dtype=torch.float32))
        self.register_buffer('b_bar', torch.tensor(b_bar[:, 0], dtype=torch.float32))
        self.encoder = nn.Conv1d(input_size, memory_inputs, 1)
        self.hidden = nn.Conv1d(memory_inputs * order + input_size, hidden_size, 1)
        self._response_cache = (None, None)

    def impulse_response(self, length: int) -> torch.Tensor:
        """[B_bar, A_bar B_bar, A_bar^2 B_bar, ...] reversed in time, as a (order, 1, length) conv kernel."""
        cached_length, cached = self._response_cache
        if cached_length == length and cached.device == self.a_bar.device:
            return cached
        a64, b64 = self.a_bar.double(), self.b_bar.double()
        taps = [b64]
        for _ in range(length - 1):
            taps.append(a64 @ taps[-1])
        response = torch.stack(taps, dim=-1).flip(-1).float().unsqueeze(1)   # (order, 1, L)
        self._response_cache = (length, response)
        return response

    def memory(self, u: torch.Tensor) -> torch.Tensor:
        """Parallel form: m (B, memory_inputs * order, T) from u (B, memory_inputs, T)."""
        batch, channels, length = u.shape
        padded = nn.functional.pad(u.reshape(batch * channels, 1, length), (length - 1, 0))
        memory = nn.functional.conv1d(padded, self.impulse_response(length))      # (B*M, order, T)
        return memory.reshape(batch, channels * self.order, length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.memory(self.encoder(x))
        return nn.functional.gelu(self.hidden(torch.cat([m, x], dim=1)))

    def step(self, x_t: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Recurrent form for one frame: x_t (B, input) and state (B, memory_inputs, order)."""
        u = self.encoder(x_t.unsqueeze(-1))[..., 0]                          # (B, memory_inputs)
        if state is None:
            state = x_t.new_zeros(x_t.shape[0], self.memory_inputs, self.order)
        state = state @ self.a_bar.t() + u.unsqueeze(-1) * self.b_bar
        features = torch.cat([state.reshape(x_t.shape[0], -1), x_t], dim=1).unsqueeze(-1)
        return nn.functional.gelu(self.hidden(features))[..., 0], state


class LMUClassifier(nn.Module):
    def __init__(self, n_classes: int, n_mfcc: int = 39, hidden_size: int = 128, memory_inputs: int = 8,
                 order: int = 64, theta: float = 121.0, layers: int = 2, dropout: float = 0.1):
        super().__init__()
        sizes = [n_mfcc] + [hidden_size] * layers
        self.layers = nn.ModuleList(
            LMULayer(sizes[k], sizes[k + 1], memory_inputs, order, theta) for k in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, n_classes)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        x = mfcc
        for layer in self.layers:
            x = self.dropout(layer(x))
        return self.classifier(x.mean(dim=-1))

    @torch.no_grad()
    def forward_recurrent(self, mfcc: torch.Tensor) -> torch.Tensor:
        """The same classifier run frame by frame with the recurrent memory (streaming form)."""
        states = [None] * len(self.layers)
        total = 0
        for t in range(mfcc.shape[-1]):
            x = mfcc[..., t]
            for k, layer in enumerate(self.layers):
                x, states[k] = layer.step(x, states[k])
            total = total + x
        return self.classifier(total / mfcc.shape[-1])
