"""MFCC front end in numpy (+ scipy.fft for batches): one implementation for training, the node and ONNX.

Framing (chosen on purpose, see docs/training.md): 16 kHz input, 50 ms Hann window (800 samples, the
frame length of the TIM-Net paper), 25 ms hop (400 samples, close to the 23.2 ms hop of TIM-Net's
code), centred frames with zero padding, 64 Slaney mel bands from 0 to 8 kHz, log power in dB with
an 80 dB floor below the window's peak, DCT-II (ortho), 39 coefficients. A 3 s window gives 121
frames. This is numerically the same as librosa.feature.mfcc with those settings (tested), but
precomputes the window, filterbank and DCT once instead of per call.

Each coefficient can be standardised over the window's frames (CMVN), which removes the
microphone's and room's fixed colouring but also the window's level and tilt relative to the rest of
the speaker's speech; or over the speaker's speech (SpeakerNormalizer), which keeps them. The
choice travels with the weights in model.json.

With pitch on, two prosodic channels follow the MFCCs (the MFCCs keep pitch only faintly): each
frame's F0 in semitones re 100 Hz, from the peak of its autocorrelation divided by the window's
(Boersma, 1993), interpolated across unvoiced frames; and its voicing strength, that peak's height
(0 in frames 30 dB below the window's loudest). The autocorrelation comes from the power spectrum
the mel bands already need, at the cost of one inverse FFT a frame.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

NORMALIZATIONS = ('cmvn', 'speaker', 'none')
SPEAKER_FRAMES = ('all', 'loud')
PITCH_CHANNELS = 2              # F0 in semitones, voicing strength
PITCH_TRACK_VALUES = 3          # per frame, before a window's gating: raw F0, voicing strength, energy
VOICING_THRESHOLD = 0.45        # Praat's default: a frame whose autocorrelation peak is lower is unvoiced
SILENCE_DB = 30.0               # frames this far below the window's loudest count as silent
OCTAVE_COST = 0.01              # per octave, favouring the shorter of two near-equal periods (Praat's default)
F0_REFERENCE = 100.0            # Hz, 0 semitones


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
    # 'cmvn': each coefficient standardised over the window's frames; 'speaker': left as is here and
    # standardised with the statistics of the speaker (SpeakerNormalizer); 'none': left as is.
    normalize: str = 'cmvn'
    # Which frames speaker statistics count: 'all', or 'loud' (within SILENCE_DB of the window's or
    # clip's loudest), so the share of pauses and padding in a stream does not move them.
    speaker_frames: str = 'all'
    # Two prosodic channels after the MFCCs (module docstring), F0 searched between f0_min and f0_max Hz.
    pitch: bool = False
    f0_min: float = 60.0
    f0_max: float = 500.0

    def __post_init__(self):
        if self.sample_rate <= 0 or self.hop_length <= 0 or self.win_length <= 0:
            raise ValueError('sample_rate, hop_length and win_length must be positive')
        if self.win_length > self.n_fft:
            raise ValueError(f'win_length {self.win_length} exceeds n_fft {self.n_fft}')
        if not 0 < self.n_mfcc <= self.n_mels:
            raise ValueError(f'n_mfcc must be in 1..n_mels ({self.n_mels}), got {self.n_mfcc}')
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f'normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}')
        if self.speaker_frames not in SPEAKER_FRAMES:
            raise ValueError(f'speaker_frames must be one of {SPEAKER_FRAMES}, got {self.speaker_frames!r}')
        if self.pitch and not 0 < self.f0_min < self.f0_max < self.sample_rate / 4:
            raise ValueError(f'need 0 < f0_min < f0_max < sample_rate / 4, got {self.f0_min} and {self.f0_max}')
        if self.pitch and self.sample_rate / self.f0_min > self.win_length / 2:
            raise ValueError(f'f0_min {self.f0_min} Hz: a {self.win_length}-sample frame holds fewer than two '
                             f'of its periods')

    @property
    def channels(self) -> int:
        """Feature channels a window has: the MFCCs, then the prosodic ones."""
        return self.n_mfcc + (PITCH_CHANNELS if self.pitch else 0)

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


def batch_fft():
    """The FFT module for whole windows: scipy's transforms a window's 121 frames about five times
    faster than numpy's. Imported here, so a node that only streams never loads scipy (about 26 MB of
    resident memory with the scipy.special it pulls in)."""
    import scipy.fft
    return scipy.fft


# The FFT module for the few new frames of a streamed window (the same pocketfft algorithm).
STREAM_FFT = np.fft


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) orthonormal DCT-II, as scipy.fft.dct(..., type=2, norm='ortho') computes it."""
    k = np.arange(n_out)[:, None]
    matrix = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * np.arange(n_in) + 1) / (2 * n_in))
    matrix[0] /= np.sqrt(2.0)
    return matrix


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
    """Waveform (..., samples) float32 at config.sample_rate -> features (..., channels, frames) float32:
    the MFCCs, then the prosodic channels if config.pitch."""

    def __init__(self, config: FeatureConfig | None = None):
        self.config = config or FeatureConfig()
        c = self.config
        window = np.zeros(c.n_fft)
        offset = (c.n_fft - c.win_length) // 2
        # Periodic Hann, as scipy.signal.get_window('hann', N) and librosa use.
        window[offset:offset + c.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(c.win_length) / c.win_length)
        self._window = window.astype(np.float32)
        self._offsets = np.arange(c.n_fft)
        f_max = c.f_max if c.f_max is not None else c.sample_rate / 2.0
        mel_basis_t = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.f_min, f_max).T.astype(np.float32)
        # Each bin's row twice, to apply to a complex spectrum viewed as interleaved (re, im) floats
        # after squaring in place: |X|^2 @ M == (re^2, im^2) @ M' with no temporaries.
        self._mel_basis_pairs = np.ascontiguousarray(np.repeat(mel_basis_t, 2, axis=0))
        self._dct_t = np.ascontiguousarray(dct_matrix(c.n_mels, c.n_mfcc).T.astype(np.float32))
        if c.pitch:
            # Autocorrelations from the spectrum below a quarter of the sample rate: at half the rate,
            # so half the inverse FFT (a parabola refines the peak between lags).
            self._acf_rate = c.sample_rate / 2
            self._acf_bins = c.n_fft // 4 + 1
            self._lags = (int(self._acf_rate // c.f0_max), int(np.ceil(self._acf_rate / c.f0_min)))
            # Circular, as the frames' own: the same wrap-around divides out.
            window_power = np.abs(np.fft.rfft(window)[:self._acf_bins]) ** 2
            window_acf = np.fft.irfft(window_power, n=c.n_fft // 2)[:self._lags[1] + 2]
            self._window_acf = (window_acf / window_acf[0]).astype(np.float32)
            lags = np.arange(self._lags[0], self._lags[1] + 1)
            self._octave_costs = (OCTAVE_COST * np.log2(c.f0_min * lags / self._acf_rate)).astype(np.float32)

    @property
    def frame_width(self) -> int:
        """Values analyse() keeps per frame: mel band powers, then F0, voicing strength and energy."""
        return self.config.n_mels + (PITCH_TRACK_VALUES if self.config.pitch else 0)

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

    def frames_at(self, padded: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Windowed frames number `indices` (1-D) of one centre-padded signal: (len(indices), n_fft)."""
        frames = padded[indices[:, None] * self.config.hop_length + self._offsets]
        frames *= self._window
        return frames

    def analyse(self, frames: np.ndarray, fft=None) -> np.ndarray:
        """Windowed frames (..., frames, n_fft) -> (..., frames, frame_width) float32: each frame's
        mel band power, then with pitch its raw F0 (semitones), voicing strength and energy."""
        fft = fft or batch_fft()
        spectrum = fft.rfft(frames, axis=-1)
        if spectrum.dtype != np.complex64:
            spectrum = spectrum.astype(np.complex64)
        pairs = spectrum.view(np.float32)
        np.square(pairs, out=pairs)
        mel = pairs @ self._mel_basis_pairs
        if not self.config.pitch:
            return mel
        low_band = pairs[..., :2 * self._acf_bins]
        return np.concatenate((mel, self._track_pitch(low_band[..., 0::2] + low_band[..., 1::2], fft)), axis=-1)

    def _track_pitch(self, power: np.ndarray, fft) -> np.ndarray:
        """Power spectra below sample_rate / 4 (..., frames, bins) -> (..., frames, 3): F0 in semitones
        at the highest peak of the normalised autocorrelation (each peak refined by a parabola, then
        an octave cost applied), that peak's height, and the frame's energy."""
        low, high = self._lags
        acf = fft.irfft(power, n=self.config.n_fft // 2, axis=-1)[..., :high + 2]
        energy = acf[..., 0]
        normalised = acf / np.maximum(energy, 1e-12)[..., None] / self._window_acf
        left, centre, right = (normalised[..., low - 1 + step:high + step] for step in range(3))
        curvature = left - 2 * centre + right
        peak = (centre >= left) & (centre >= right) & (curvature < 0)
        offset = np.clip(0.5 * (left - right) / np.where(peak, curvature, -1.0), -0.5, 0.5)
        height = np.where(peak, centre - 0.25 * (left - right) * offset, -np.inf)
        best = np.argmax(height - self._octave_costs, axis=-1)[..., None]
        strength = np.clip(np.take_along_axis(height, best, axis=-1)[..., 0], 0.0, 1.0)
        lag = low + best[..., 0] + np.take_along_axis(offset, best, axis=-1)[..., 0]
        semitones = 12 * np.log2(self._acf_rate / lag / F0_REFERENCE)
        return np.stack((semitones, strength, energy), axis=-1).astype(np.float32)

    def _prosody(self, tracked: np.ndarray) -> np.ndarray:
        """(..., frames, 3) from _track_pitch over whole windows -> (..., frames, 2): F0 of the voiced
        frames interpolated across the others, and voicing strength, 0 in silent frames."""
        semitones, strength, energy = np.moveaxis(tracked, -1, 0)
        loud = energy >= energy.max(axis=-1, keepdims=True) * 10 ** (-SILENCE_DB / 10)
        voiced = loud & (strength >= VOICING_THRESHOLD)            # silent frames have no peak: strength 0
        f0 = np.empty_like(semitones).reshape(-1, semitones.shape[-1])
        fill = 6 * np.log2(self.config.f0_min * self.config.f0_max / F0_REFERENCE ** 2)   # mid-range, in semitones
        positions = np.arange(semitones.shape[-1])
        for row, (track, keep) in enumerate(zip(semitones.reshape(f0.shape), voiced.reshape(f0.shape), strict=True)):
            f0[row] = np.interp(positions, positions[keep], track[keep]) if keep.any() else fill
        return np.stack((f0.reshape(semitones.shape), np.where(loud, strength, 0.0)), axis=-1).astype(np.float32)

    def finish(self, analysed: np.ndarray) -> np.ndarray:
        """analyse()'s output (..., frames, frame_width) for whole windows -> features (..., channels,
        frames) float32: the MFCCs, then with pitch the two prosodic channels."""
        c = self.config
        log_mel = np.log10(np.maximum(analysed[..., :c.n_mels], 1e-10, dtype=np.float32))
        log_mel *= 10.0
        peak = log_mel.max(axis=(-2, -1), keepdims=True)
        np.maximum(log_mel, peak - c.top_db, out=log_mel)
        mfcc = log_mel @ self._dct_t                                  # (..., frames, n_mfcc)
        if c.pitch:
            mfcc = np.concatenate((mfcc, self._prosody(analysed[..., c.n_mels:])), axis=-1)
        if c.normalize == 'cmvn':
            mean = mfcc.mean(axis=-2, keepdims=True)
            std = mfcc.std(axis=-2, keepdims=True)
            mfcc = (mfcc - mean) / (std + 1e-5)
        return np.ascontiguousarray(np.swapaxes(mfcc, -1, -2), dtype=np.float32)

    def warped(self, warp) -> MfccExtractor:
        """A copy whose mel filters read the spectrum at warp(frequency in Hz) (training's VTLP)."""
        c = self.config
        bins = np.fft.rfftfreq(c.n_fft, 1.0 / c.sample_rate)
        basis = self._mel_basis_pairs[::2]                            # (bins, n_mels)
        positions = np.clip(warp(bins), 0.0, bins[-1])
        warped_basis = np.stack([np.interp(positions, bins, band) for band in basis.T], axis=1)
        copy = object.__new__(MfccExtractor)
        copy.__dict__.update(self.__dict__)
        copy._mel_basis_pairs = np.ascontiguousarray(np.repeat(warped_basis.astype(np.float32), 2, axis=0))
        return copy

    def pad(self, x: np.ndarray) -> np.ndarray:
        pad = self.config.n_fft // 2
        return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)])

    def __call__(self, waveform: np.ndarray, fft=None) -> np.ndarray:
        x = np.asarray(waveform, dtype=np.float32)
        if x.shape[-1] == 0:
            raise ValueError('empty waveform')
        return self.finish(self.analyse(self._windowed_frames(self.pad(x)), fft))


class StreamingMfcc:
    """MFCCs of successive overlapping windows of one stream, computing each shared frame once.

    A frame that lies wholly inside a window has the same samples in every window that contains
    it, so the analysis (mel power, and with pitch the F0 track) of the frames shared with the
    previous window is copied from it; only
    the new frames and the two zero-padded edge frames are transformed. The result equals
    MfccExtractor on each window to float rounding (tested; the streamed frames take numpy's FFT,
    the batch scipy's). At 0.5 s hop a 3 s window needs 22 of its 121 frames.
    """

    def __init__(self, extractor: MfccExtractor):
        self.extractor = extractor
        self._previous: tuple[int, np.ndarray] | None = None    # (absolute start, mel power)
        self.frames_computed = 0
        self.frames_reused = 0

    def reset(self) -> None:
        self._previous = None

    def __call__(self, window: np.ndarray, end_index: int) -> np.ndarray:
        """window (samples,) float32 ending at absolute sample end_index -> features (channels, frames)."""
        c = self.extractor.config
        half, n, hop = c.n_fft // 2, window.shape[-1], c.hop_length
        n_frames, start = c.num_frames(n), end_index - n
        first = -(-half // hop)                     # interior frames (no padding): first .. last - 1
        last = (n - half) // hop + 1
        mel = np.empty((n_frames, self.extractor.frame_width), dtype=np.float32)
        reuse_end = first
        if self._previous is not None:
            previous_start, previous_mel = self._previous
            shift, misaligned = divmod(start - previous_start, hop)
            if not misaligned and 0 <= shift < last - first and previous_mel.shape == mel.shape:
                reuse_end = last - shift
                mel[first:reuse_end] = previous_mel[first + shift:last]
        todo = np.concatenate((np.arange(first), np.arange(reuse_end, n_frames)))
        mel[todo] = self.extractor.analyse(self.extractor.frames_at(self.extractor.pad(window), todo), STREAM_FFT)
        self.frames_computed += todo.size
        self.frames_reused += n_frames - todo.size
        self._previous = (start, mel)
        return self.extractor.finish(mel)


class SpeakerNormalizer:
    """Standardises MFCC windows with one speaker's per-coefficient mean and standard deviation.

    Offline the statistics come from all of a speaker's clips (fit). On a stream they accumulate
    window by window (update), starting from a prior (the training speakers' statistics, counted as
    prior_frames frames) so the first windows are usable, and forgetting beyond memory_frames so a
    new voice takes over slowly; reset() starts again from the prior. No label is ever used. A stream
    that holds one emotion only skews the statistics (docs/results.md measures the worst case).
    """

    def __init__(self, channels: int, prior: dict | None = None, memory_frames: float = np.inf,
                 loud_margin: float | None = None):
        self.prior = prior
        self.memory_frames = memory_frames
        self.channels = channels
        self.loud_margin = loud_margin      # in units of the first MFCC; None: every frame counts
        self.reset()

    @classmethod
    def for_features(cls, config: FeatureConfig, prior: dict | None = None,
                     memory_frames: float = np.inf) -> SpeakerNormalizer:
        """Statistics of the frames config.speaker_frames names. The first orthonormal MFCC is
        sqrt(n_mels) times the frame's mean log-mel level, so a level margin in dB scales by that."""
        margin = SILENCE_DB * np.sqrt(config.n_mels) if config.speaker_frames == 'loud' else None
        return cls(config.channels, prior, memory_frames, margin)

    def reset(self) -> None:
        self.count = 0.0
        self.sum = np.zeros(self.channels)
        self.sum_squares = np.zeros(self.channels)
        if self.prior:
            mean, std = np.asarray(self.prior['mean']), np.asarray(self.prior['std'])
            self.count = float(self.prior['frames'])
            self.sum = mean * self.count
            self.sum_squares = (np.square(std) + np.square(mean)) * self.count

    def update(self, mfcc: np.ndarray, weight: float = 1.0) -> None:
        """Add the frames of features (..., channels, frames), each counted `weight` times (overlapping
        windows of a stream count each frame once with weight hop / window)."""
        frames = np.moveaxis(mfcc, -2, -1)
        if self.loud_margin is not None:
            level = mfcc[..., 0, :]
            frames = frames[level >= level.max(axis=-1, keepdims=True) - self.loud_margin]
        frames = frames.reshape(-1, mfcc.shape[-2]).astype(np.float64)
        added = weight * len(frames)
        if self.count + added > self.memory_frames:
            keep = max(self.memory_frames - added, 0.0) / max(self.count, 1.0)
            self.count *= keep
            self.sum *= keep
            self.sum_squares *= keep
        self.count += added
        self.sum += weight * frames.sum(axis=0)
        self.sum_squares += weight * np.square(frames).sum(axis=0)

    @classmethod
    def fit(cls, mfccs, config: FeatureConfig | None = None) -> SpeakerNormalizer:
        """Statistics of several feature arrays (channels, frames), e.g. one speaker's clips: of every
        frame, or of the frames config.speaker_frames names."""
        mfccs = list(mfccs)
        normalizer = cls.for_features(config) if config else cls(mfccs[0].shape[-2])
        for mfcc in mfccs:
            normalizer.update(mfcc)
        return normalizer

    @classmethod
    def merged(cls, parts) -> SpeakerNormalizer:
        """The statistics of several sets of frames together (e.g. a speaker's clips, or a prior and
        the clips a stream has heard)."""
        parts = list(parts)
        merged = cls(parts[0].channels, memory_frames=parts[0].memory_frames, loud_margin=parts[0].loud_margin)
        for part in parts:
            merged.count += part.count
            merged.sum += part.sum
            merged.sum_squares += part.sum_squares
        return merged

    def summary(self, prior_frames: float) -> dict:
        """These statistics as a prior for streams, worth prior_frames frames (stored in model.json)."""
        return {'mean': self.mean.tolist(), 'std': self.std.tolist(), 'frames': float(prior_frames)}

    @property
    def mean(self) -> np.ndarray:
        return self.sum / max(self.count, 1.0)

    @property
    def std(self) -> np.ndarray:
        variance = self.sum_squares / max(self.count, 1.0) - np.square(self.mean)
        return np.sqrt(np.maximum(variance, 0.0)) + 1e-3

    def standardise_each(self, windows: np.ndarray, weight: float) -> np.ndarray:
        """Windows (batch, channels, frames), each standardised as a stream that has heard it: these
        statistics plus its own frames counted `weight` times (0: these statistics alone). Nothing is kept."""
        if weight == 0:
            return self(windows)
        standardised = np.empty(windows.shape, dtype=np.float32)
        for index, window in enumerate(windows):
            heard = SpeakerNormalizer.merged([self])
            heard.update(window, weight=weight)
            standardised[index] = heard(window)
        return standardised

    def __call__(self, mfcc: np.ndarray) -> np.ndarray:
        """Features (..., channels, frames) standardised with the statistics so far."""
        return ((mfcc - self.mean[:, None]) / self.std[:, None]).astype(np.float32)
