"""The node's whole audio-to-emotion path without ROS: stream in, timed windows, classifications out.

ser_node wraps it with subscriptions and publishers; the offline bag evaluator drives it directly,
so both produce the same windows, stamps and labels from the same messages.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .predictor import Predictor, fit_to_length
from .stream import AudioStream, EnergyGate, Smoother, StreamFormat

NS = 1_000_000_000
GAP_RESYNC_NS = 200_000_000   # unstamped input: resync the sample clock after a gap of 0.2 s


@dataclass
class PipelineSettings:
    window: float = 0.0                 # seconds; 0 = the model's window
    hop: float = 0.5
    channel: int = -1
    vad_threshold_db: float = -45.0
    vad_min_voiced_fraction: float = 0.1
    publish_unvoiced: bool = True
    smoothing: float = 0.0


@dataclass
class PendingWindow:
    samples: np.ndarray
    voiced: bool
    level_db: float
    start_ns: int                       # time of the window's first sample
    end_ns: int                         # time of its last sample
    duration: float


@dataclass
class WindowResult:
    start_ns: int
    end_ns: int
    duration: float
    voiced: bool
    labels: list[str]
    probabilities: np.ndarray | None = None     # None when not classified (unvoiced)
    label: str = ''
    confidence: float = 0.0
    inference_time: float = 0.0
    model_id: str = ''
    extra: dict = field(default_factory=dict)


class EmotionPipeline:
    def __init__(self, predictor: Predictor, fmt: StreamFormat, settings: PipelineSettings | None = None):
        self.predictor = predictor
        self.settings = settings or PipelineSettings()
        self.check_window(self.settings.window, self.settings.hop)
        self.stream = self._make_stream(fmt)
        self.smoother = Smoother(self.settings.smoothing)
        self.windows_skipped_unvoiced = 0
        self._anchor: tuple[float, int] | None = None    # (stream seconds, time in ns) of one instant

    # ------------------------------------------------------------------ settings
    @property
    def window_seconds(self) -> float:
        return self.settings.window or self.predictor.window_seconds

    def check_window(self, window: float, hop: float, predictor: Predictor | None = None) -> None:
        model_window = (predictor or self.predictor).window_seconds
        if window < 0 or window > model_window + 1e-9:
            raise ValueError(f'window {window} s: must be 0 (the model window) or up to the model window '
                             f'of {model_window} s (shorter windows are zero-padded)')
        if hop <= 0:
            raise ValueError(f'hop must be positive, got {hop}')

    def _make_stream(self, fmt: StreamFormat) -> AudioStream:
        s, rate = self.settings, self.predictor.sample_rate
        window, hop = self._window_samples()
        return AudioStream(fmt, rate, window, hop, s.channel, EnergyGate(rate, s.vad_threshold_db,
                                                                         s.vad_min_voiced_fraction))

    def _window_samples(self) -> tuple[int, int]:
        rate = self.predictor.sample_rate
        return int(round(self.window_seconds * rate)), int(round(self.settings.hop * rate))

    def update(self, predictor: Predictor | None = None, **changes) -> None:
        """Apply new settings (and possibly a new model) keeping the buffered stream where possible."""
        proposed = PipelineSettings(**{**self.settings.__dict__, **changes})
        self.check_window(proposed.window, proposed.hop, predictor)
        old_rate = self.predictor.sample_rate
        if predictor is not None:
            self.predictor = predictor
            self.smoother.reset()
        self.settings = proposed
        if predictor is not None and predictor.sample_rate != old_rate:
            self.stream = self._make_stream(self.stream.format)
            self._anchor = None
        else:
            self.stream.buffer.reconfigure(*self._window_samples())
        self.stream.gate.threshold_db = proposed.vad_threshold_db
        self.stream.gate.min_voiced_fraction = proposed.vad_min_voiced_fraction
        self.smoother.factor = proposed.smoothing

    def set_format(self, fmt: StreamFormat) -> None:
        self.stream.set_format(fmt, self.settings.channel)

    # ------------------------------------------------------------------ audio in
    def push(self, data, stamp_ns: int | None = None, arrival_ns: int | None = None) -> list[PendingWindow]:
        """One message of PCM bytes. stamp_ns marks its first sample (AudioDataStamped); without it
        the arrival time marks its last. Raises AudioFormatError for messages it cannot use."""
        chunk_start = self.stream.input_seconds
        windows = self.stream.push(data)
        if stamp_ns:
            self._anchor = (chunk_start, stamp_ns)
        else:
            self._anchor_by_arrival(time.time_ns() if arrival_ns is None else arrival_ns)
        rate = self.predictor.sample_rate
        window_samples = self.stream.buffer.window
        anchor_seconds, anchor_ns = self._anchor
        pending = []
        for window in windows:
            if not window.voiced and not self.settings.publish_unvoiced:
                self.windows_skipped_unvoiced += 1
                continue
            end_ns = anchor_ns + round(((window.end_index - 1) / rate - anchor_seconds) * NS)
            start_ns = anchor_ns + round(((window.end_index - window_samples) / rate - anchor_seconds) * NS)
            pending.append(PendingWindow(window.samples, window.voiced, window.level_db, start_ns, end_ns,
                                         window_samples / rate))
        return pending

    def _anchor_by_arrival(self, arrival_ns: int) -> None:
        """Unstamped audio runs on a sample clock started at the first arrival, so stamps are evenly
        spaced and monotonic. It resyncs forward after a gap (arrival ahead of the clock by more
        than 0.2 s) and never steps back: input faster than real time stays on the sample clock."""
        end_seconds = self.stream.input_seconds
        if self._anchor is not None:
            anchor_seconds, anchor_ns = self._anchor
            if arrival_ns - (anchor_ns + (end_seconds - anchor_seconds) * NS) <= GAP_RESYNC_NS:
                return
        self._anchor = (end_seconds, arrival_ns)

    # ------------------------------------------------------------------ classification
    def classify(self, pending: list[PendingWindow]) -> list[WindowResult]:
        """Classify the voiced windows in one batched call; results in the order given."""
        predictor = self.predictor
        voiced = [item for item in pending if item.voiced]
        per_window = 0.0
        rows = iter(())
        if voiced:
            batch = np.stack([fit_to_length(item.samples, predictor.window_samples) for item in voiced])
            started = time.perf_counter()
            rows = iter(predictor.predict_windows(batch))
            per_window = (time.perf_counter() - started) / len(voiced)
        results = []
        for item in pending:
            result = WindowResult(item.start_ns, item.end_ns, item.duration, item.voiced, list(predictor.labels),
                                  model_id=predictor.model_id)
            if item.voiced:
                probabilities = self.smoother(next(rows))
                best = int(np.argmax(probabilities))
                result.probabilities = probabilities
                result.label = predictor.labels[best]
                result.confidence = float(probabilities[best])
                result.inference_time = per_window
            results.append(result)
        return results
