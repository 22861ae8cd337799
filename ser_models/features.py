"""MFCC front end in numpy + scipy.fft: one implementation for training, the node and ONNX.

Framing (chosen on purpose, see README): 16 kHz input, 50 ms Hann window (800 samples, the
frame length of the TIM-Net paper), 25 ms hop (400 samples, close to the 23.2 ms hop of TIM-Net's
code), centred frames with zero padding, 64 Slaney mel bands from 0 to 8 kHz, log power in dB with
an 80 dB floor below the window's peak, DCT-II (ortho), 39 coefficients. A 3 s window gives 121
frames. This is numerically the same as librosa.feature.mfcc with those settings (tested), but
precomputes the window, filterbank and DCT once instead of per call.

Optionally each coefficient is standardised over the window's frames (CMVN), which removes the
microphone's and room's fixed colouring; the choice travels with the weights in model.json.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import scipy.fft


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    n_mfcc: int = 39
    n_fft: int = 800
    win_length: int = 800
    hop_length: int = 400
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    top_db: float = 80.0
    normalize: str = 'cmvn'  # 'cmvn' (per-window mean/variance per coefficient) or 'none'

    def __post_init__(self):
        if self.sample_rate <= 0 or self.hop_length <= 0 or self.win_length <= 0:
            raise ValueError('sample_rate, hop_length and win_length must be positive')
        if self.win_length > self.n_fft:
            raise ValueError(f'win_length {self.win_length} exceeds n_fft {self.n_fft}')
        if not 0 < self.n_mfcc <= self.n_mels:
            raise ValueError(f'n_mfcc must be in 1..n_mels ({self.n_mels}), got {self.n_mfcc}')
        if self.normalize not in ('cmvn', 'none'):
            raise ValueError(f"normalize must be 'cmvn' or 'none', got {self.normalize!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FeatureConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f'unknown feature settings: {sorted(unknown)}')
        return cls(**values)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of num_samples (centred framing)."""
        return 1 + num_samples // self.hop_length


def _hz_to_mel(hz):
    """Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    log_step = np.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= 1000.0
    return np.where(above, 1000.0 / f_sp + np.log(np.maximum(hz, 1e-12) / 1000.0) / log_step, mel)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    log_step = np.log(6.4) / 27.0
    min_log_mel = 1000.0 / f_sp
    return np.where(mel >= min_log_mel, 1000.0 * np.exp(log_step * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangular Slaney-normalised mel filters, shape (n_mels, n_fft // 2 + 1)."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights


class MfccExtractor:
    """Waveform (..., samples) float32 at config.sample_rate -> MFCC (..., n_mfcc, frames) float32."""

    def __init__(self, config: FeatureConfig | None = None):
        self.config = config or FeatureConfig()
        c = self.config
        window = np.zeros(c.n_fft)
        offset = (c.n_fft - c.win_length) // 2
        # Periodic Hann, as scipy.signal.get_window('hann', N) and librosa use.
        window[offset:offset + c.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(c.win_length) / c.win_length)
        self._window = window.astype(np.float32)
        f_max = c.f_max if c.f_max is not None else c.sample_rate / 2.0
        self._mel_basis_t = np.ascontiguousarray(
            mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.f_min, f_max).T.astype(np.float32))
        self._dct_t = np.ascontiguousarray(
            scipy.fft.dct(np.eye(c.n_mels), type=2, norm='ortho', axis=0)[:c.n_mfcc].T.astype(np.float32))

    def _windowed_frames(self, padded: np.ndarray) -> np.ndarray:
        """(..., frames, n_fft) windowed frames of the centre-padded signal."""
        c = self.config
        n_frames = 1 + (padded.shape[-1] - c.n_fft) // c.hop_length
        if c.n_fft == 2 * c.hop_length:
            # Half-overlapping frames are two hop-long blocks each: two contiguous multiplies
            # instead of one over a strided view (7x faster here, identical values).
            blocks = padded[..., :(n_frames + 1) * c.hop_length].reshape(*padded.shape[:-1], n_frames + 1,
                                                                          c.hop_length)
            frames = np.empty((*padded.shape[:-1], n_frames, c.n_fft), dtype=np.float32)
            np.multiply(blocks[..., :-1, :], self._window[:c.hop_length], out=frames[..., :c.hop_length])
            np.multiply(blocks[..., 1:, :], self._window[c.hop_length:], out=frames[..., c.hop_length:])
            return frames
        strided = np.lib.stride_tricks.sliding_window_view(padded, c.n_fft, axis=-1)[..., ::c.hop_length, :]
        return strided * self._window

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        c = self.config
        x = np.asarray(waveform, dtype=np.float32)
        if x.shape[-1] == 0:
            raise ValueError('empty waveform')
        pad = c.n_fft // 2
        padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)])
        spectrum = scipy.fft.rfft(self._windowed_frames(padded), axis=-1)
        power = spectrum.real ** 2 + spectrum.imag ** 2
        mel = power.astype(np.float32) @ self._mel_basis_t            # (..., frames, n_mels)
        log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
        peak = log_mel.max(axis=(-2, -1), keepdims=True)
        log_mel = np.maximum(log_mel, peak - c.top_db)
        mfcc = log_mel @ self._dct_t                                  # (..., frames, n_mfcc)
        if c.normalize == 'cmvn':
            mean = mfcc.mean(axis=-2, keepdims=True)
            std = mfcc.std(axis=-2, keepdims=True)
            mfcc = (mfcc - mean) / (std + 1e-5)
        return np.ascontiguousarray(np.swapaxes(mfcc, -1, -2), dtype=np.float32)
