"""Audio in memory and batches of MFCC windows, augmented for training only."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr

from ser_models.features import MfccExtractor, SpeakerNormalizer
from ser_models.windowing import change_speed

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
        self.pause_samples, self.paused_statistics = 0, None

    def fit_speaker_normalizers(self, features: MfccExtractor, virtual_speeds=(), pause_seconds: float = 0.0) -> None:
        """Each clip gets its speaker's MFCC statistics, taken over all of that speaker's clips; each
        clip's own statistics are kept too (clip_statistics), for statistics of a few clips.

        Each of virtual_speeds makes every speaker a second, virtual one: its clips played that many times
        as fast (tempo, pitch and formants together), with statistics of their own (statistics_at).
        pause_seconds > 0: statistics of every clip followed by that much silence are kept too
        (paused_statistics), as a stream's statistics count the pause after each utterance."""
        self.speaker_clips: dict[str, list[int]] = {}
        for index, clip in enumerate(self.clips):
            self.speaker_clips.setdefault(clip.speaker_key, []).append(index)
        self.statistics_at = {speed: self._statistics(features, speed) for speed in (1.0, *virtual_speeds)}
        self.clip_statistics, self.normalizers = self.statistics_at[1.0]
        self.pause_samples = int(round(pause_seconds * features.config.sample_rate))
        self.paused_statistics = self._statistics(features, 1.0, self.pause_samples) if self.pause_samples else None

    def _statistics(self, features: MfccExtractor, speed: float, pause_samples: int = 0) -> tuple[list, list]:
        """(each clip's statistics, each clip's speaker statistics) with every clip played at `speed`, then
        pause_samples of silence."""
        rate = features.config.sample_rate
        clip_statistics = [SpeakerNormalizer.fit([features(self.heard(index, speed, rate, pause_samples))],
                                                 features.config) for index in range(len(self.clips))]
        normalizers = [None] * len(self.clips)
        for indices in self.speaker_clips.values():
            normalizer = SpeakerNormalizer.merged(clip_statistics[i] for i in indices)
            for index in indices:
                normalizers[index] = normalizer
        return clip_statistics, normalizers

    def played_at(self, index: int, speed: float, sample_rate: int) -> np.ndarray:
        audio = self.audio[index]
        return audio if speed == 1.0 else change_speed(audio, speed, sample_rate)

    def heard(self, index: int, speed: float, sample_rate: int, pause_samples: int = 0) -> np.ndarray:
        """Clip `index` played at `speed`, then pause_samples of silence."""
        played = self.played_at(index, speed, sample_rate)
        return np.concatenate([played, np.zeros(pause_samples, played.dtype)]) if pause_samples else played

    def pooled_statistics(self, indices) -> SpeakerNormalizer:
        """The statistics of the speakers of these clips together (e.g. the training side)."""
        return SpeakerNormalizer.merged({id(self.normalizers[i]): self.normalizers[i] for i in indices}.values())

    def partial_speaker_statistics(self, index: int, prior: SpeakerNormalizer, max_clips: int,
                                   rng, speed: float = 1.0, paused: bool = False) -> SpeakerNormalizer:
        """Statistics as a stream might hold them after a few of a speaker's clips: the prior, clip
        `index` and up to max_clips - 1 other clips of its speaker drawn at random (all played at speed,
        for a virtual speaker; each followed by its pause where paused)."""
        clip_statistics = self.paused_statistics[0] if paused else self.statistics_at[speed][0]
        others = [i for i in self.speaker_clips[self.clips[index].speaker_key] if i != index]
        count = min(int(rng.integers(0, max_clips)), len(others))
        heard = rng.choice(others, size=count, replace=False) if count else []
        return SpeakerNormalizer.merged([prior, clip_statistics[index], *(clip_statistics[i] for i in heard)])

    def __len__(self):
        return len(self.clips)


class WindowBatcher:
    """Turns clip indices into (MFCC windows, targets) batches."""

    def __init__(self, features: MfccExtractor, window_samples: int, augment: dict | None = None,
                 speaker_prior: SpeakerNormalizer | None = None):
        self.features = features
        self.speaker_prior = speaker_prior   # where a stream's statistics start (partial speaker statistics)
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
        speeds = np.ones(len(indices))
        virtual = [self._virtual_speed(rng) for _ in indices]
        paused = [self._paused(clip_set, speed, rng) for speed in virtual]
        for row, index in enumerate(indices):
            wave = clip_set.heard(index, virtual[row], self.sample_rate, clip_set.pause_samples if paused[row] else 0)
            shift = 0
            if self.augmenter:
                wave, speeds[row] = self.augmenter.augment(wave, rng)
                shift = int(self.augmenter.shift_seconds(rng) * self.sample_rate)
            windows[row] = self._random_window(wave, shift, rng)
        mfcc = self.vtlp(windows, rng) if self.vtlp else self.features(windows)
        if self.augment_settings and self.augment_settings.get('speed_keeps_f0') and self.features.config.pitch:
            # Resampling by a factor moves F0 by 12 log2(factor) semitones; take it back out.
            mfcc[:, self.features.config.n_mfcc] -= 12 * np.log2(speeds)[:, None].astype(np.float32)
        if clip_set.normalizers is not None:
            for row, index in enumerate(indices):
                mfcc[row] = self._speaker_normalizer(clip_set, index, rng, virtual[row], paused[row])(mfcc[row])
        if self.augment_settings:
            spec_augment(mfcc, self.augment_settings, rng)
        return mfcc, clip_set.targets[np.asarray(indices)]

    def _virtual_speed(self, rng) -> float:
        """1.0, or for a share augment.virtual_speaker_prob of windows one of the virtual speakers' speeds."""
        settings = self.augment_settings or {}
        speeds = settings.get('virtual_speaker_speeds') or []
        if speeds and rng.random() < settings['virtual_speaker_prob']:
            return float(speeds[int(rng.integers(len(speeds)))])
        return 1.0

    def _paused(self, clip_set: ClipSet, speed: float, rng) -> bool:
        """Whether a window (of a clip as heard, not a virtual speaker's) comes from its clip followed by a
        pause, for a share augment.stream_pause_prob of windows."""
        share = (self.augment_settings or {}).get('stream_pause_prob', 0.0)
        return bool(share and speed == 1.0 and clip_set.paused_statistics and rng.random() < share)

    def _speaker_normalizer(self, clip_set: ClipSet, index: int, rng, speed: float = 1.0,
                            paused: bool = False) -> SpeakerNormalizer:
        """The clip's speaker statistics (its virtual speaker's at another speed; over clips each followed
        by a pause, for a paused window), or, for a share augment.partial_speaker_prob of windows, the
        statistics of the stream prior and a few of the speaker's clips, as the node holds them early on."""
        share = (self.augment_settings or {}).get('partial_speaker_prob', 0.0)
        if share and self.speaker_prior is not None and rng.random() < share:
            return clip_set.partial_speaker_statistics(index, self.speaker_prior,
                                                       self.augment_settings['partial_speaker_clips'], rng, speed,
                                                       paused)
        return (clip_set.paused_statistics if paused else clip_set.statistics_at[speed])[1][index]

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
