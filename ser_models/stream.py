"""Streaming audio front of the node, free of ROS: PCM or MP3 decoding, resampling, a ring buffer
that cuts windows at a fixed hop, an energy voice-activity gate and probability smoothing.

Sample accounting is exact: every decoded sample is either buffered or reported dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import soxr

from .mp3 import Mp3Decoder, Mp3Error, looks_like_mp3

# sample_format (GStreamer / audio_common naming) -> (bytes per sample, numpy dtype, scale, offset)
PCM_FORMATS = {
    'U8': (1, np.dtype('u1'), 1 / 128.0, -128.0),
    'S8': (1, np.dtype('i1'), 1 / 128.0, 0.0),
    'S16LE': (2, np.dtype('<i2'), 1 / 32768.0, 0.0),
    'S32LE': (4, np.dtype('<i4'), 1 / 2147483648.0, 0.0),
    'F32LE': (4, np.dtype('<f4'), 1.0, 0.0),
    'F64LE': (8, np.dtype('<f8'), 1.0, 0.0),
    'S24LE': (3, None, 1 / 8388608.0, 0.0),
}
PCM_CODINGS = ('wave', 'pcm', 'raw', '')
SUPPORTED_CODINGS = (*PCM_CODINGS, 'mp3')


# Float PCM is nominally within [-1, 1]; far beyond it, the bytes are almost surely another format.
MAX_FLOAT_AMPLITUDE = 16.0


class AudioFormatError(ValueError):
    """A message or stream description that cannot be decoded; the text says why."""


@dataclass(frozen=True)
class StreamFormat:
    sample_rate: int = 16000
    channels: int = 1
    sample_format: str = 'S16LE'
    coding_format: str = 'wave'

    @property
    def is_mp3(self) -> bool:
        return self.coding_format.lower() == 'mp3'

    def check(self) -> None:
        if self.coding_format.lower() not in SUPPORTED_CODINGS:
            raise AudioFormatError(f'coding_format {self.coding_format!r} is not supported; use raw PCM (wave) '
                                   f'or mp3')
        if not self.is_mp3 and self.sample_format not in PCM_FORMATS:
            raise AudioFormatError(f'sample_format {self.sample_format!r} is not supported; '
                                   f'use one of {sorted(PCM_FORMATS)}')
        if not 1 <= self.channels <= 64:
            raise AudioFormatError(f'channels must be 1..64, got {self.channels}')
        if not 1000 <= self.sample_rate <= 384000:
            raise AudioFormatError(f'sample_rate must be 1000..384000 Hz, got {self.sample_rate}')

    @property
    def frame_bytes(self) -> int:
        return PCM_FORMATS[self.sample_format][0] * self.channels


class PcmDecoder:
    """Interleaved PCM bytes -> mono float32, carrying a torn trailing frame to the next message."""

    def __init__(self, fmt: StreamFormat, channel: int = -1):
        fmt.check()
        if fmt.is_mp3:
            raise AudioFormatError('MP3 is not PCM; use Mp3Decoder')
        if channel >= fmt.channels:
            raise AudioFormatError(f'channel {channel} selected but the stream has {fmt.channels} channel(s)')
        self.format, self.channel = fmt, channel
        self.width, self.dtype, self.scale, self.offset = PCM_FORMATS[fmt.sample_format]
        self._carry = b''
        self.dropped_frames = 0

    @property
    def pending_bytes(self) -> int:
        return len(self._carry)

    def decode(self, data: bytes) -> np.ndarray:
        """Mono samples of every whole frame in carry + data. On non-finite floats it raises
        AudioFormatError; those frames and the carry are discarded, counted in dropped_frames."""
        # No copy of the message unless a torn frame has to be joined to it.
        buffer = memoryview(self._carry + bytes(data) if self._carry else data).cast('B')
        frame = self.format.frame_bytes
        usable = len(buffer) - len(buffer) % frame
        if usable == 0:
            self._carry = bytes(buffer)
            return np.zeros(0, dtype=np.float32)
        samples = self._to_float(buffer[:usable])
        problem = None
        if not np.all(np.isfinite(samples)):
            bad = int(np.count_nonzero(~np.isfinite(samples)))
            problem = f'{bad} NaN/Inf sample(s) in {self.format.sample_format} data'
        elif self.dtype is not None and self.dtype.kind == 'f' and samples.size and \
                (peak := float(np.max(np.abs(samples)))) > MAX_FLOAT_AMPLITUDE:
            problem = (f'float samples reach {peak:.3g}, far beyond full scale (1.0): the data is probably not '
                       f'{self.format.sample_format} as declared')
        if problem:
            self._carry = b''
            self.dropped_frames = usable // frame
            raise AudioFormatError(problem)
        self._carry = bytes(buffer[usable:])
        frames = samples.reshape(-1, self.format.channels)
        mono = frames[:, self.channel] if self.channel >= 0 else frames.mean(axis=1, dtype=np.float32)
        return np.ascontiguousarray(mono, dtype=np.float32)

    def _to_float(self, raw) -> np.ndarray:
        if self.dtype is None:  # packed 24-bit little endian
            b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            values = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            values = np.where(values >= 1 << 23, values - (1 << 24), values)
            return values.astype(np.float32) * np.float32(self.scale)
        values = np.frombuffer(raw, dtype=self.dtype).astype(np.float32)
        if self.offset:
            values += np.float32(self.offset)
        return values * np.float32(self.scale) if self.scale != 1.0 else values


class StreamResampler:
    """Stateful polyphase resampling (soxr) from the stream rate to the model rate."""

    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype='float32',
                                                                            quality='HQ')

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if self._stream is None or samples.size == 0:
            return samples
        return self._stream.resample_chunk(samples)

    def flush(self) -> np.ndarray:
        """The output still held in the filter; the resampler is spent afterwards."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


@dataclass
class Window:
    samples: np.ndarray      # (window,) float32 at the model rate
    end_index: int           # absolute index (model rate) one past the window's last sample
    voiced: bool
    level_db: float
    speech_at_end: bool = False     # its newest hop holds speech (the gate's test on that hop alone)


class RingBuffer:
    """Fixed-capacity sample store that emits a window every `hop` samples once `window` are in."""

    def __init__(self, window: int, hop: int, capacity: int | None = None):
        if window <= 0 or hop <= 0:
            raise ValueError('window and hop must be positive')
        self.window, self.hop = window, hop
        self.capacity = max(capacity or 0, window + hop) * 2
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self.total = 0                  # samples ever written
        self.next_end = window          # absolute end index of the next window to emit

    def write(self, samples: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """Append samples; return (window copy, end index) for every window completed."""
        emitted = []
        for start in range(0, samples.size, self.capacity // 2):
            chunk = samples[start:start + self.capacity // 2]
            position = self.total % self.capacity
            first = min(chunk.size, self.capacity - position)
            self._data[position:position + first] = chunk[:first]
            self._data[:chunk.size - first] = chunk[first:]
            self.total += chunk.size
            while self.next_end <= self.total:
                emitted.append((self._read(self.next_end), self.next_end))
                self.next_end += self.hop
        return emitted

    def reconfigure(self, window: int, hop: int) -> None:
        """New window and hop, keeping the audio already buffered; the next window ends one hop from now.
        The same window and hop change nothing (a model switch keeps the grid of windows)."""
        if window <= 0 or hop <= 0:
            raise ValueError('window and hop must be positive')
        if (window, hop) == (self.window, self.hop):
            return
        if window + hop > self.capacity // 2:
            keep = min(self.total, self.capacity)
            tail = self.read_range(self.total - keep, self.total) if keep else self._data[:0]
            self.capacity = (window + hop) * 2
            self._data = np.zeros(self.capacity, dtype=np.float32)
            position = (self.total - keep) % self.capacity
            indices = (position + np.arange(keep)) % self.capacity
            self._data[indices] = tail
        self.window, self.hop = window, hop
        self.next_end = self.total + hop if self.total >= window else window

    def _read(self, end: int) -> np.ndarray:
        return self.read_range(end - self.window, end)

    def read_range(self, begin: int, end: int) -> np.ndarray:
        """Samples [begin, end) by absolute index; they must still be buffered."""
        length = end - begin
        start = begin % self.capacity
        if start + length <= self.capacity:
            return self._data[start:start + length].copy()
        split = self.capacity - start
        return np.concatenate([self._data[start:], self._data[:length - split]])


def frame_levels_db(window: np.ndarray, frame: int) -> np.ndarray:
    """RMS level in dBFS of consecutive frames."""
    usable = window[:window.size - window.size % frame].reshape(-1, frame)
    power = np.mean(usable.astype(np.float64) ** 2, axis=1)
    return 10 * np.log10(np.maximum(power, 1e-12))


class EnergyGate:
    """Voiced when enough 25 ms frames are above a dBFS threshold."""

    def __init__(self, sample_rate: int, threshold_db: float = -45.0, min_voiced_fraction: float = 0.1):
        self.frame = max(1, int(0.025 * sample_rate))
        self.threshold_db, self.min_voiced_fraction = threshold_db, min_voiced_fraction

    def __call__(self, window: np.ndarray, tail: int = 0) -> tuple[bool, float, bool]:
        """(voiced, the loudest frame's level, whether the last `tail` samples alone pass the gate)."""
        levels = frame_levels_db(window, self.frame)
        if levels.size == 0:
            return False, -120.0, False
        tail_levels = levels[-max(1, tail // self.frame):] if tail else levels[:0]
        return self._passes(levels), float(np.max(levels)), self._passes(tail_levels)

    def _passes(self, levels: np.ndarray) -> bool:
        return bool(levels.size) and float(np.mean(levels > self.threshold_db)) >= self.min_voiced_fraction


class Smoother:
    """Exponential moving average of probability vectors; factor 0 disables it."""

    def __init__(self, factor: float = 0.0):
        self.factor = factor
        self._state = None

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        if self.factor <= 0 or self._state is None or self._state.shape != probabilities.shape:
            self._state = probabilities.copy()
        else:
            self._state = self.factor * self._state + (1 - self.factor) * probabilities
            self._state /= self._state.sum()
        return self._state.copy()

    def reset(self) -> None:
        self._state = None


class AudioStream:
    """decode -> resample -> ring buffer -> gated windows, with exact sample accounting.

    With detect_mp3, a stream declared as PCM (no AudioInfo yet) whose first bytes are an ID3 tag or
    MPEG layer III frames is decoded as MP3 instead; `detected` then says so. MP3's sample rate and
    channels are taken from the decoder, not from the declared format.
    """

    def __init__(self, fmt: StreamFormat, model_rate: int, window: int, hop: int, channel: int = -1,
                 gate: EnergyGate | None = None, detect_mp3: bool = False):
        self.format = fmt
        self.model_rate = model_rate
        self.channel = channel
        self.decoder = make_decoder(fmt, channel)
        self.resampler = StreamResampler(fmt.sample_rate, model_rate)
        self.buffer = RingBuffer(window, hop)
        self.gate = gate or EnergyGate(model_rate)
        self.samples_in = 0           # taken in, at the stream rate
        self.samples_decoded = 0      # of those, decoded and passed on to the resampler
        self.samples_dropped = 0      # of those, discarded with a rejected message or a corrupt MP3 frame
        self._carried = np.zeros(0, dtype=np.float32)   # flushed from the resampler of the previous rate
        self.messages_rejected = 0
        self.mp3_frames_dropped = 0
        self.problems: list[str] = []  # frames lost inside accepted messages, since the caller last looked
        self._detecting = detect_mp3 and not fmt.is_mp3
        self._held = b''              # first bytes, held until they tell PCM from MP3
        self.detected = ''            # 'mp3' once recognised from the bytes
        # Stream time of all audio taken in; model-rate sample k sits at k / model_rate on this time
        # line (the resampler delays output, it does not shift it).
        self.input_seconds = 0.0
        self.listener = None          # called with each block of model-rate samples before it is buffered

    @property
    def describe(self) -> str:
        fmt = self.format
        if isinstance(self.decoder, Mp3Decoder):
            how = 'detected from the bytes' if self.detected else 'declared'
            if self.decoder.sample_rate is None:
                return f'mp3 ({how}), nothing decoded yet'
            return f'mp3 ({how}), {self.decoder.sample_rate} Hz, {self.decoder.channels} ch as decoded'
        return f'{fmt.sample_rate} Hz, {fmt.channels} ch, {fmt.sample_format}, {fmt.coding_format}'

    def push(self, data: bytes) -> list[Window]:
        """Decode one message. Raises AudioFormatError (message dropped, counted) on bad content."""
        if self._detecting:
            data = self._detect(data)
            if not data:
                return []
        if isinstance(self.decoder, Mp3Decoder):
            mono, rate = self._decode_mp3(data)
        else:
            mono, rate = self._decode_pcm(data), self.format.sample_rate
        self.samples_in += mono.size
        self.samples_decoded += mono.size
        if mono.size == 0:
            return []
        self.input_seconds += mono.size / rate
        if rate != self.resampler.in_rate:
            self._switch_rate(rate)
        resampled = self.resampler(mono)
        if self._carried.size:
            resampled, self._carried = np.concatenate([self._carried, resampled]), self._carried[:0]
        if self.listener is not None and resampled.size:
            self.listener(resampled)
        windows = []
        for samples, end in self.buffer.write(resampled):
            windows.append(Window(samples, end, *self.gate(samples, self.buffer.hop)))
        return windows

    def _detect(self, data) -> bytes:
        """Hold the first bytes until they are recognisably MP3 or not; then release them all."""
        held = self._held + bytes(data)
        verdict = looks_like_mp3(held)
        if verdict is None:
            self._held = held
            return b''
        self._detecting, self._held = False, b''
        if verdict:
            self.decoder = make_decoder(replace(self.format, coding_format='mp3'), self.channel)
            self.format = replace(self.format, coding_format='mp3')
            self.detected = 'mp3'
        return held

    def _decode_pcm(self, data) -> np.ndarray:
        try:
            return self.decoder.decode(data)
        except AudioFormatError:
            self.messages_rejected += 1
            self.samples_dropped += self.decoder.dropped_frames
            self.samples_in += self.decoder.dropped_frames
            raise

    def _decode_mp3(self, data) -> tuple[np.ndarray, int]:
        dropped_before = self.decoder.samples_dropped
        try:
            mono, problems = self.decoder.decode(data)
        except Mp3Error as error:
            self.messages_rejected += 1
            raise AudioFormatError(str(error)) from error
        if problems:
            self.mp3_frames_dropped += len(problems)
            lost = self.decoder.samples_dropped - dropped_before
            self.samples_in += lost
            self.samples_dropped += lost
            self.problems.extend(problems)
        return mono, self.decoder.sample_rate or self.resampler.in_rate

    def _switch_rate(self, rate: int) -> None:
        # The old rate's last few ms are still inside its filter: keep them, in order.
        self._carried = np.concatenate([self._carried, self.resampler.flush()])
        self.resampler = StreamResampler(rate, self.model_rate)

    def take_problems(self) -> list[str]:
        problems, self.problems = self.problems, []
        return problems

    def set_format(self, fmt: StreamFormat, channel: int = -1) -> int:
        """Switch decoding to a new stream format, keeping the (model-rate) audio already buffered.
        Returns the bytes of a torn frame that had to be discarded."""
        self._detecting = False   # the stream has said what it is
        if fmt.is_mp3 and isinstance(self.decoder, Mp3Decoder) and channel == self.channel:
            self.format = fmt     # the decoder, not AudioInfo, knows the rate and channels
            return 0
        decoder = make_decoder(fmt, channel)   # raises before anything changes
        discarded = len(self._held)
        if isinstance(self.decoder, Mp3Decoder):
            # The frame the MP3 parser still holds cannot join PCM audio: count it lost.
            flushed, _ = self.decoder.flush()
            self.samples_in += flushed.size
            self.samples_dropped += flushed.size
        else:
            discarded += self.decoder.pending_bytes
        self.format, self.decoder, self.channel, self._held = fmt, decoder, channel, b''
        self.detected = ''
        if not fmt.is_mp3 and fmt.sample_rate != self.resampler.in_rate:
            self._switch_rate(fmt.sample_rate)
        return discarded


def make_decoder(fmt: StreamFormat, channel: int = -1) -> PcmDecoder | Mp3Decoder:
    fmt.check()
    if not fmt.is_mp3:
        return PcmDecoder(fmt, channel)
    try:
        return Mp3Decoder(channel)
    except Mp3Error as error:
        raise AudioFormatError(str(error)) from error
