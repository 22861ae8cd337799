"""Augmentation, applied to training windows only: waveform effects, then SpecAugment masks."""
from __future__ import annotations

import numpy as np

from ser_models.windowing import change_speed


def add_noise(wave: np.ndarray, snr_db: float, rng) -> np.ndarray:
    power = float(np.mean(wave ** 2)) + 1e-10
    noise = rng.standard_normal(wave.shape).astype(np.float32)
    return wave + noise * np.float32(np.sqrt(power / 10 ** (snr_db / 10)))


def shift_pitch(wave: np.ndarray, semitones: float, sample_rate: int) -> np.ndarray:
    import librosa
    return librosa.effects.pitch_shift(wave, sr=sample_rate, n_steps=semitones).astype(np.float32)


def vtlp_warp(alpha: float, nyquist: float, boundary: float = 4800.0):
    """Vocal tract length perturbation (Jaitly and Hinton, 2013): frequencies scale by alpha up to a
    boundary, then map linearly so that Nyquist stays put."""
    cut = boundary * min(alpha, 1.0) / alpha

    def warp(frequencies: np.ndarray) -> np.ndarray:
        above = nyquist - (nyquist - alpha * cut) / (nyquist - cut) * (nyquist - frequencies)
        return np.where(frequencies <= cut, frequencies * alpha, above)
    return warp


class VtlpFeatures:
    """MFCC of training windows, some with their mel filters warped by a random alpha (VTLP).

    Alphas are drawn on a 0.01 grid so that each warped filterbank is built once."""

    def __init__(self, features, probability: float, alpha_range):
        self.features = features
        self.probability = probability
        self.low, self.high = alpha_range
        self._warped = {}

    def __call__(self, windows: np.ndarray, rng) -> np.ndarray:
        mfcc = self.features(windows)
        warped = np.flatnonzero(rng.random(len(windows)) < self.probability)
        alphas = np.round(rng.uniform(self.low, self.high, size=len(warped)), 2)
        for alpha in np.unique(alphas):
            if alpha not in self._warped:
                nyquist = self.features.config.sample_rate / 2
                self._warped[alpha] = self.features.warped(vtlp_warp(float(alpha), nyquist))
            rows = warped[alphas == alpha]
            mfcc[rows] = self._warped[alpha](windows[rows])
        return mfcc


class WaveAugmenter:
    def __init__(self, settings: dict, sample_rate: int):
        self.s = settings
        self.sample_rate = sample_rate

    def __call__(self, wave: np.ndarray, rng) -> np.ndarray:
        return self.augment(wave, rng)[0]

    def augment(self, wave: np.ndarray, rng) -> tuple[np.ndarray, float]:
        """The augmented wave and the speed factor it was played at (1.0: none)."""
        s = self.s
        speed = 1.0
        if s['speed_prob'] and rng.random() < s['speed_prob']:
            speed = rng.uniform(*s['speed_range'])
            wave = change_speed(wave, speed, self.sample_rate)
        if s['pitch_prob'] and rng.random() < s['pitch_prob']:
            wave = shift_pitch(wave, rng.uniform(-s['pitch_semitones'], s['pitch_semitones']), self.sample_rate)
        if s['reverse_prob'] and rng.random() < s['reverse_prob']:
            wave = wave[::-1].copy()
        low, high = s['gain_db']
        if high > low or low:
            wave = wave * np.float32(10 ** (rng.uniform(low, high) / 20))
        if s['noise_prob'] and rng.random() < s['noise_prob']:
            wave = add_noise(wave, rng.uniform(*s['noise_snr_db']), rng)
        return wave, speed

    def shift_seconds(self, rng) -> float:
        limit = self.s['shift_max_seconds']
        return rng.uniform(-limit, limit) if limit else 0.0


def spec_augment(features: np.ndarray, settings: dict, rng) -> np.ndarray:
    """Zero random time and frequency bands of MFCC windows (B, coefficients, frames), in place."""
    batch, n_coeff, n_frames = features.shape
    for row in range(batch):
        for _ in range(settings['spec_time_masks']):
            width = rng.integers(0, settings['spec_time_width'] + 1)
            start = rng.integers(0, max(1, n_frames - width))
            features[row, :, start:start + width] = 0.0
        for _ in range(settings['spec_freq_masks']):
            width = rng.integers(0, settings['spec_freq_width'] + 1)
            start = rng.integers(0, max(1, n_coeff - width))
            features[row, start:start + width, :] = 0.0
    return features
