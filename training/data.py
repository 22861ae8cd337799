"""Audio in memory and batches of MFCC windows, augmented for training only."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr

from ser_models.features import MfccExtractor, SpeakerNormalizer

from .augment import VtlpFeatures, WaveAugmenter, spec_augment
from .datasets import Clip


def load_audio(path, sample_rate: int) -> np.ndarray:
    """Mono float32 at sample_rate from .wav or .flac (channels averaged, resampled with soxr)."""
    audio, rate = sf.read(str(path), dtype='float32', always_2d=True)
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate).astype(np.float32)
    return audio


class ClipSet:
    """Clips with their audio decoded once and label indices for one label list."""

    def __init__(self, clips: list[Clip], labels: list[str], sample_rate: int):
        self.clips = clips
        self.labels = labels
        self.targets = np.array([labels.index(c.emotion) for c in clips], dtype=np.int64)
        self.audio = [load_audio(c.path, sample_rate) for c in clips]
        self.normalizers: list[SpeakerNormalizer] | None = None

    def fit_speaker_normalizers(self, features: MfccExtractor) -> None:
        """Each clip gets its speaker's MFCC statistics, taken over all of that speaker's clips."""
        by_speaker: dict[str, list[int]] = {}
        for index, clip in enumerate(self.clips):
            by_speaker.setdefault(clip.speaker_key, []).append(index)
        self.normalizers = [None] * len(self.clips)
        for indices in by_speaker.values():
            normalizer = SpeakerNormalizer.fit((features(self.audio[i]) for i in indices), features.config)
            for index in indices:
                self.normalizers[index] = normalizer

    def pooled_statistics(self, indices) -> SpeakerNormalizer:
        """The statistics of the speakers of these clips together (e.g. the training side)."""
        speakers = {id(self.normalizers[i]): self.normalizers[i] for i in indices}.values()
        pooled = SpeakerNormalizer(self.normalizers[indices[0]].channels)
        for normalizer in speakers:
            pooled.count += normalizer.count
            pooled.sum += normalizer.sum
            pooled.sum_squares += normalizer.sum_squares
        return pooled

    def __len__(self):
        return len(self.clips)


class WindowBatcher:
    """Turns clip indices into (MFCC windows, targets) batches."""

    def __init__(self, features: MfccExtractor, window_samples: int, augment: dict | None = None):
        self.features = features
        self.window = window_samples
        self.sample_rate = features.config.sample_rate
        self.augment_settings = augment
        if augment and features.config.normalize == 'cmvn':
            # Per-window CMVN removes any gain, so drawing one would only cost time.
            augment = {**augment, 'gain_db': [0.0, 0.0]}
        self.augmenter = WaveAugmenter(augment, self.sample_rate) if augment else None
        self.vtlp = (VtlpFeatures(features, augment['vtlp_prob'], augment['vtlp_range'])
                     if augment and augment.get('vtlp_prob') else None)

    def training_batch(self, clip_set: ClipSet, indices, rng) -> tuple[np.ndarray, np.ndarray]:
        windows = np.empty((len(indices), self.window), dtype=np.float32)
        for row, index in enumerate(indices):
            wave = clip_set.audio[index]
            shift = 0
            if self.augmenter:
                wave = self.augmenter(wave, rng)
                shift = int(self.augmenter.shift_seconds(rng) * self.sample_rate)
            windows[row] = self._random_window(wave, shift, rng)
        mfcc = self.vtlp(windows, rng) if self.vtlp else self.features(windows)
        if clip_set.normalizers is not None:
            for row, index in enumerate(indices):
                mfcc[row] = clip_set.normalizers[index](mfcc[row])
        if self.augment_settings:
            spec_augment(mfcc, self.augment_settings, rng)
        return mfcc, clip_set.targets[np.asarray(indices)]

    def _random_window(self, wave: np.ndarray, shift: int, rng) -> np.ndarray:
        """A window-long crop (long clips) or a zero-padded placement (short ones), jittered by shift."""
        n = len(wave)
        if n >= self.window:
            start = int(rng.integers(0, n - self.window + 1))
            return wave[start:start + self.window]
        out = np.zeros(self.window, dtype=np.float32)
        offset = int(np.clip((self.window - n) // 2 + shift, 0, self.window - n))
        out[offset:offset + n] = wave
        return out
