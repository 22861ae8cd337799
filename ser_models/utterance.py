"""Utterances: a stream's speech from one pause to the next, scored as the benchmark scores a clip.

Each window the node publishes also holds up to 2.5 s of what came before it (silence, or the last
utterance when the pause was short). A listener wants one estimate per utterance, and the benchmark's
figures are of clips: windows cut from the clip's own start, probabilities averaged. UtteranceTracker
cuts a stream at pauses: an utterance opens with the first window whose newest hop holds speech and
closes once `end_silence` seconds pass with no speech in a newest hop (or `max_duration` seconds after
it opened, so continuous talk still gets estimates). It keeps the utterance's audio, from the start of
its first speech hop (the whole first window of a stream) on through the pause that ended it, to the
end of the window that closed it: a clip keeps its recorded silence too, and on the unseen-speaker
validation speakers this scored 0.6226 against 0.6072 for the speech hops alone (docs/results.md).
EmotionPipeline then scores it as a clip (ser_models.windowing.clip_windows) with the stream's speaker
statistics as the window that closed it leaves them. ROS-free.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NS = 1_000_000_000


@dataclass
class PendingUtterance:
    start_ns: int               # time of its first sample: the start of the hop its speech began in
    end_ns: int                 # the end of the last hop that held speech
    samples: np.ndarray         # its audio at the model rate, on through its pause (through_pause)


@dataclass
class Utterance:
    start_ns: int
    end_ns: int
    labels: list[str]
    duration: float             # seconds of audio scored
    probabilities: np.ndarray   # the mean over its clip windows, unsmoothed
    windows: int                # clip windows scored
    inference_time: float       # seconds spent on its features and model
    model_id: str
    voiced = True               # as a window that held speech

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probabilities))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probabilities))


def check_utterance_settings(end_silence: float, max_duration: float) -> None:
    if end_silence <= 0:
        raise ValueError(f'utterance_end_silence must be positive, got {end_silence}')
    if max_duration <= end_silence:
        raise ValueError(f'utterance_max_duration ({max_duration} s) must be longer than utterance_end_silence '
                         f'({end_silence} s)')


class UtteranceTracker:
    """Feed it every window of one stream in order (add); it returns the utterances they close."""

    def __init__(self, end_silence: float = 1.0, max_duration: float = 10.0, through_pause: bool = True):
        self.configure(end_silence, max_duration)
        self.through_pause = through_pause      # False: its audio stops at its last speech hop
        self._open: PendingUtterance | None = None
        self._pieces: list[np.ndarray] = []      # the open utterance's audio, newest hop by newest hop
        self._spoken = 0                         # pieces up to the last that held speech
        self._last_index = None                  # stream sample one past the audio taken so far

    def configure(self, end_silence: float, max_duration: float) -> None:
        check_utterance_settings(end_silence, max_duration)
        self.end_silence_ns, self.max_duration = round(end_silence * NS), max_duration

    @property
    def is_open(self) -> bool:
        return self._open is not None

    def add(self, window: np.ndarray, end_index: int, end_ns: int, hop: int, sample_rate: int,
            speech_at_end: bool) -> list[PendingUtterance]:
        """One window: its samples, the stream sample one past its last, the time of its last sample, the
        hop in samples, and whether its newest hop holds speech."""
        first = self._last_index is None
        fresh = window.size if first else int(np.clip(end_index - self._last_index, 0, window.size))
        self._last_index = end_index
        if self._open is None:
            if not speech_at_end:
                return []
            fresh = fresh if first else min(fresh, hop)     # the hops before it were newest once, and silent
            self._open = PendingUtterance(end_ns - round((fresh - 1) / sample_rate * NS), end_ns, window[:0])
        self._pieces.append(window[window.size - fresh:].copy())     # not a view that keeps the whole window
        if speech_at_end:
            self._open.end_ns, self._spoken = end_ns, len(self._pieces)
        if (end_ns - self._open.end_ns >= self.end_silence_ns
                or sum(piece.size for piece in self._pieces) >= self.max_duration * sample_rate):
            return self.finish()
        return []

    def finish(self) -> list[PendingUtterance]:
        """The open utterance, closed (its speech ended, or the stream's input did)."""
        utterance, pieces, spoken = self._open, self._pieces, self._spoken
        self._open, self._pieces, self._spoken = None, [], 0
        if utterance is None:
            return []
        utterance.samples = np.concatenate(pieces if self.through_pause else pieces[:spoken])
        return [utterance]
