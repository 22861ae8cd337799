"""The node's whole audio-to-emotion path without ROS: stream in, timed windows, classifications out.

ser_node wraps it with subscriptions and publishers; the offline bag evaluator drives it directly,
so both produce the same windows, stamps and labels from the same messages.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .features import STREAM_FFT, StreamingMfcc
from .predictor import Predictor, fit_to_length
from .stream import AudioStream, EnergyGate, Smoother, StreamFormat
from .utterance import PendingUtterance, Utterance, UtteranceTracker, check_utterance_settings

NS = 1_000_000_000
GAP_RESYNC_NS = 200_000_000   # unstamped input: resync the sample clock after a gap of 0.2 s


@dataclass
class PipelineSettings:
    window: float = 0.0                 # seconds; 0 = the model's window
    hop: float = 0.5
    channel: int = -1
    vad_threshold_db: float = -45.0
    vad_min_voiced_fraction: float = 0.1
    smoothing: float = 0.0
    speaker_reset_silence: float = 30.0  # seconds without a voiced window that start speaker statistics anew
    utterance_end_silence: float = 1.0   # seconds without speech that end an utterance (UtteranceTracker)
    utterance_max_duration: float = 10.0  # seconds after which an utterance ends though speech goes on


@dataclass
class PendingWindow:
    samples: np.ndarray
    voiced: bool
    level_db: float
    start_ns: int                       # time of the window's first sample
    end_ns: int                         # time of its last sample
    duration: float
    end_index: int = 0                  # absolute model-rate sample one past its last
    new_speaker: bool = False           # first voiced window after a long silence: speaker statistics restart
    functionals: np.ndarray | None = None   # a fused model's openSMILE functionals, from one pass over the stream
    speech_at_end: bool = False         # its newest hop holds speech: an utterance goes on
    utterances: list[PendingUtterance] = field(default_factory=list)   # the utterances it closes


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
    error: str = ''                     # set when this window could not be classified
    utterances: list[Utterance] = field(default_factory=list)   # the utterances this window closed


class EmotionPipeline:
    def __init__(self, predictor: Predictor, fmt: StreamFormat, settings: PipelineSettings | None = None):
        """fmt is the stream's format until set_format says otherwise; until then, MP3 bytes in a
        stream declared as PCM are recognised and decoded as MP3 (audio_capture's default)."""
        self.check_model(predictor)
        self.predictor = predictor
        self.settings = settings or PipelineSettings()
        self.check_window(self.settings.window, self.settings.hop)
        self.stream = self._make_stream(fmt)
        self.smoother = Smoother(self.settings.smoothing)
        self.utterances = UtteranceTracker(self.settings.utterance_end_silence, self.settings.utterance_max_duration)
        self.features = StreamingMfcc(predictor.features)
        self._start_speaker_statistics()
        self._one_pass = None           # StreamFunctionals over this stream, for models fitted on one-pass functionals
        self._one_pass_origin = 0       # the model-rate sample it started at
        self._held: list[PendingWindow] = []    # cut windows waiting for their one-pass functionals
        self._held_done: list[PendingWindow] = []   # held windows released by a settings change
        self.functionals_fallbacks = 0  # voiced windows whose one-pass functionals did not come: computed alone
        self.one_pass_problem = ''      # why the one-pass functionals last stopped, if they failed
        self.utterances_dropped = 0     # utterances not scored: their audio held NaN or Inf
        self.utterances_wanted = True   # score the utterances windows close (a node: while someone listens)
        self._last_voiced_index = 0
        self._silence_restart = False
        self._anchor: tuple[float, int] | None = None    # (stream seconds, time in ns) of one instant

    # ------------------------------------------------------------------ settings
    @property
    def window_seconds(self) -> float:
        return self.settings.window or self.predictor.window_seconds

    @staticmethod
    def check_model(predictor: Predictor) -> None:
        """Refuses models the stream cannot serve as model.json asks."""
        if predictor.test_time_speeds != (1.0,):
            raise ValueError(f'{predictor.model_id}: model.json asks for test_time_speeds '
                             f'{list(predictor.test_time_speeds)}, which only offline scoring '
                             f'(ser_models.windowing) plays; a stream hears each window as it is')

    def check_window(self, window: float, hop: float, predictor: Predictor | None = None) -> None:
        model_window = (predictor or self.predictor).window_seconds
        if window < 0 or window > model_window + 1e-9:
            raise ValueError(f'window {window} s: must be 0 (the model window) or up to the model window '
                             f'of {model_window} s (shorter windows are zero-padded)')
        if hop <= 0:
            raise ValueError(f'hop must be positive, got {hop}')
        if hop > (window or model_window) + 1e-9:
            raise ValueError(f'hop {hop} s is longer than the window of {window or model_window} s: the audio '
                             f'between windows would never be classified')

    def _make_stream(self, fmt: StreamFormat) -> AudioStream:
        s, rate = self.settings, self.predictor.sample_rate
        window, hop = self._window_samples()
        stream = AudioStream(fmt, rate, window, hop, s.channel,
                             EnergyGate(rate, s.vad_threshold_db, s.vad_min_voiced_fraction), detect_mp3=True)
        stream.listener = self._feed_one_pass
        return stream

    def _window_samples(self) -> tuple[int, int]:
        rate = self.predictor.sample_rate
        return int(round(self.window_seconds * rate)), int(round(self.settings.hop * rate))

    def update(self, predictor: Predictor | None = None, **changes) -> None:
        """Apply new settings (and possibly a new model) keeping the buffered stream where possible."""
        proposed = PipelineSettings(**{**self.settings.__dict__, **changes})
        if predictor is not None:
            self.check_model(predictor)
        self.check_window(proposed.window, proposed.hop, predictor)
        check_utterance_settings(proposed.utterance_end_silence, proposed.utterance_max_duration)
        old_rate = self.predictor.sample_rate
        grid = (proposed.window or (predictor or self.predictor).window_seconds, proposed.hop)
        if predictor is not None or grid != (self.window_seconds, self.settings.hop):
            self._held_done += self._end_one_pass()     # on the old grid; handed out with the next windows
        if predictor is not None:
            self.predictor = predictor
            self.smoother.reset()
            self.features = StreamingMfcc(predictor.features)
        self.settings = proposed
        if predictor is not None:
            self._start_speaker_statistics()
        if predictor is not None and predictor.sample_rate != old_rate:
            self.stream = self._make_stream(self.stream.format)
            self._anchor = None
            self.utterances = UtteranceTracker(proposed.utterance_end_silence, proposed.utterance_max_duration)
        else:
            self.stream.buffer.reconfigure(*self._window_samples())
        self.stream.gate.threshold_db = proposed.vad_threshold_db
        self.stream.gate.min_voiced_fraction = proposed.vad_min_voiced_fraction
        self.smoother.factor = proposed.smoothing
        self.utterances.configure(proposed.utterance_end_silence, proposed.utterance_max_duration)

    def _start_speaker_statistics(self) -> None:
        """The stream's speaker statistics from the model's prior: of the network's features and, for a
        fused model, of the window functionals."""
        self.normalizer = self.predictor.stream_normalizer()
        functionals = self.predictor.functionals
        self.functionals_normalizer = functionals.stream_normalizer() if functionals else None

    def set_format(self, fmt: StreamFormat) -> None:
        self.stream.set_format(fmt, self.settings.channel)

    # ------------------------------------------------------------------ one-pass functionals
    @property
    def _computes_one_pass(self) -> bool:
        functionals = self.predictor.functionals
        return bool(functionals and functionals.one_pass and self.stream.buffer.window == self.predictor.window_samples)

    def _feed_one_pass(self, samples: np.ndarray) -> None:
        """AudioStream's listener: model-rate samples before they are buffered. Starts the one-pass
        functionals at the next window's first sample, from the audio buffered since."""
        if self._one_pass is None:
            if not self._computes_one_pass:
                return
            buffer = self.stream.buffer
            self._one_pass_origin = buffer.next_end - buffer.window
            self._one_pass = self.predictor.functionals.extractor.stream(buffer.window, buffer.hop)
            if buffer.total > self._one_pass_origin:
                self._write_one_pass(buffer.read_range(self._one_pass_origin, buffer.total))
        self._write_one_pass(samples)

    def _write_one_pass(self, samples: np.ndarray) -> None:
        """Feeds the one-pass functionals; if openSMILE fails, its windows fall back to one call each."""
        if self._one_pass is None:
            return
        try:
            self._one_pass.write(samples)
        except RuntimeError as error:
            self.one_pass_problem = str(error)
            self._held_done += self._end_one_pass()

    def _one_pass_index(self, item: PendingWindow) -> int | None:
        """The one-pass window that is this window, if any."""
        if self._one_pass is None or not item.voiced or item.samples.size != self._one_pass.window:
            return None
        index, offset = divmod(item.end_index - self._one_pass_origin - self._one_pass.window, self._one_pass.hop)
        return index if offset == 0 and index >= 0 else None

    def _release(self, final: bool = False) -> list[PendingWindow]:
        """Held windows, in order, whose one-pass functionals are in: STREAM_LOOKAHEAD s of audio after a
        window is written and openSMILE done with it (a short wait; the next push looks again), or all of
        them when final, after the input ended."""
        from .functionals import STREAM_LOOKAHEAD
        released = []
        lookahead = int(round(STREAM_LOOKAHEAD * self.predictor.sample_rate))
        while self._held:
            item = self._held[0]
            index = self._one_pass_index(item)
            if index is not None:
                if not final and self._one_pass.window_end(index) + lookahead > self._one_pass.written:
                    break
                try:
                    item.functionals = self._one_pass.ready(index, timeout=2.0 if final else 0.05)
                except RuntimeError as error:    # it failed: this window and those after get a call each
                    self.one_pass_problem, item.functionals, final = str(error), None, True
                if item.functionals is None and not final:
                    break
                self.functionals_fallbacks += item.functionals is None
            released.append(self._held.pop(0))
        return released

    def _end_one_pass(self) -> list[PendingWindow]:
        """Ends the one-pass functionals (the next audio starts them afresh): every held window, released."""
        if self._one_pass is None:
            return self._release(final=True)
        self._one_pass.finish()
        released = self._release(final=True)
        self._one_pass.close()
        self._one_pass = None
        return released

    @property
    def holding(self) -> bool:
        """Whether windows wait for audio after them (their one-pass functionals); flush() hands them out."""
        return bool(self._held)

    def flush(self) -> list[PendingWindow]:
        """The windows held for one-pass functionals, as at the end of the input (a stream that stopped)."""
        return self._take_held_done() + self._end_one_pass()

    def _take_held_done(self) -> list[PendingWindow]:
        released, self._held_done = self._held_done, []
        return released

    def close(self) -> None:
        self._end_one_pass()

    def end_utterance(self) -> list[Utterance]:
        """The open utterance, closed and scored: call once the stream's input has ended or gone quiet,
        after its windows are classified."""
        return self.score_utterances(self.utterances.finish())

    def score_utterances(self, pending: list[PendingUtterance]) -> list[Utterance]:
        """score_utterance of each; one whose audio is not finite is dropped and counted."""
        finite = [utterance for utterance in pending if np.all(np.isfinite(utterance.samples))]
        self.utterances_dropped += len(pending) - len(finite)
        return [self.score_utterance(utterance) for utterance in finite]

    def score_utterance(self, utterance: PendingUtterance) -> Utterance:
        """An utterance's audio scored as the benchmark scores a clip: the network's mean over windows from
        its start every hop (ser_models.windowing.clip_windows) and, for a fused model, the classifier's
        mean over the windows one openSMILE pass cuts (on past its end until one holds its last sample,
        as the benchmark's fused rows), averaged. Both halves are standardised with the stream's
        statistics as the window that closed the utterance left them; nothing is smoothed."""
        from .windowing import clip_windows
        started = time.perf_counter()
        predictor, hop = self.predictor, self.stream.buffer.hop
        windows = clip_windows(utterance.samples, predictor.window_samples, hop)
        mfcc = predictor.features(windows, STREAM_FFT)      # numpy's FFT, as streamed windows: no scipy in the node
        probabilities = predictor.predict_features(mfcc if self.normalizer is None else self.normalizer(mfcc))
        probabilities = probabilities.mean(axis=0)
        functionals = predictor.functionals
        if functionals is not None:
            from .functionals import as_frames
            extractor = functionals.extractor
            vectors = (extractor.stream_windows(utterance.samples, predictor.window_samples, hop, through_end=True)
                       if functionals.one_pass else extractor.windows(windows))
            classical = functionals.classify(self.functionals_normalizer(as_frames(vectors))[..., 0])
            probabilities = functionals.fuse(probabilities, classical.mean(axis=0))
        return Utterance(utterance.start_ns, utterance.end_ns, list(predictor.labels),
                         utterance.samples.size / predictor.sample_rate, probabilities.astype(np.float32),
                         len(windows), time.perf_counter() - started, predictor.model_id)

    # ------------------------------------------------------------------ audio in
    def push(self, data, stamp_ns: int | None = None, arrival_ns: int | None = None) -> list[PendingWindow]:
        """One message of audio bytes. stamp_ns marks its first sample (AudioDataStamped); without it
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
            new_speaker = self._track_speaker(window.voiced, window.end_index)
            end_ns = anchor_ns + round(((window.end_index - 1) / rate - anchor_seconds) * NS)
            start_ns = anchor_ns + round(((window.end_index - window_samples) / rate - anchor_seconds) * NS)
            closed = self.utterances.add(window.samples, window.end_index, end_ns, self.stream.buffer.hop, rate,
                                         window.speech_at_end)
            pending.append(PendingWindow(window.samples, window.voiced, window.level_db, start_ns, end_ns,
                                         window_samples / rate, window.end_index, new_speaker,
                                         speech_at_end=window.speech_at_end, utterances=closed))
        released = self._take_held_done()
        if self._one_pass is None and not self._held:
            return released + pending
        self._held += pending
        return released + self._release()

    def _track_speaker(self, voiced: bool, end_index: int) -> bool:
        """Whether this window starts a new speaker: the first voiced one after speaker_reset_silence
        seconds without voice. The restart is applied when the window is classified, in order."""
        limit = self.settings.speaker_reset_silence
        if not voiced:
            silent = (end_index - self._last_voiced_index) / self.predictor.sample_rate
            self._silence_restart |= limit > 0 and silent >= limit
            return False
        self._last_voiced_index = end_index
        restart, self._silence_restart = self._silence_restart, False
        return restart

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
    def mfcc(self, item: PendingWindow) -> np.ndarray:
        """The network's input for one window; full-length windows reuse the frames of the last one.
        A new speaker's first window restarts the stream's statistics."""
        if item.new_speaker:
            self._start_speaker_statistics()
        if item.samples.size == self.predictor.window_samples:
            mfcc = self.features(item.samples, item.end_index)
        else:
            mfcc = self.predictor.features(fit_to_length(item.samples, self.predictor.window_samples), STREAM_FFT)
        if self.normalizer is None:
            return mfcc
        self.normalizer.update(mfcc, weight=self._stream_weight)
        return self.normalizer(mfcc)

    @property
    def _stream_weight(self) -> float:
        """How much of a window is new audio: each sample counts once in the stream statistics."""
        return min(1.0, self.settings.hop / self.window_seconds)

    def functionals(self, item: PendingWindow) -> np.ndarray:
        """A fused model's standardised functionals of one window (after mfcc() for the same window)."""
        from .functionals import as_frames
        extractor = self.predictor.functionals.extractor
        window = fit_to_length(item.samples, self.predictor.window_samples)
        raw = extractor.complete(item.functionals, window) if item.functionals is not None else extractor(window)
        vector = as_frames(raw)
        self.functionals_normalizer.update(vector, weight=self._stream_weight)
        return self.functionals_normalizer(vector)[..., 0]

    def classify(self, pending: list[PendingWindow]) -> list[WindowResult]:
        """Classify the voiced windows in one batched call; results in the order given."""
        return classify_streams([(self, pending)])[0]

    def result(self, item: PendingWindow, probabilities: np.ndarray | None = None, seconds: float = 0.0,
               error: str = '') -> WindowResult:
        predictor = self.predictor
        result = WindowResult(item.start_ns, item.end_ns, item.duration, item.voiced, list(predictor.labels),
                              model_id=predictor.model_id, error=error)
        if probabilities is not None:
            probabilities = self.smoother(probabilities)
            best = int(np.argmax(probabilities))
            result.probabilities = probabilities
            result.label = predictor.labels[best]
            result.confidence = float(probabilities[best])
            result.inference_time = seconds
        return result


def classify_streams(jobs: list[tuple[EmotionPipeline, list[PendingWindow]]]) -> list[list[WindowResult]]:
    """Classify the voiced windows of several streams sharing one predictor in one batched call.

    Returns each stream's results in the order given. A window that cannot be classified (audio
    that is not finite) gets a result with `error` set; the others are unaffected. A window that closes
    utterances carries them, scored where its pipeline wants them (utterances_wanted).
    """
    predictors = {id(pipeline.predictor) for pipeline, _ in jobs}
    if len(predictors) > 1:
        raise ValueError('classify_streams needs pipelines that share one predictor')
    started = time.perf_counter()
    predictor = jobs[0][0].predictor if jobs else None
    fused = predictor is not None and predictor.functionals is not None
    inputs, functionals, errors, utterances = [], [], {}, {}
    utterance_seconds = 0.0
    for pipeline, pending in jobs:
        for item in pending:
            if item.voiced and not np.all(np.isfinite(item.samples)):
                errors[id(item)] = 'waveform contains NaN or Inf'
            elif item.voiced:
                inputs.append(pipeline.mfcc(item))
                if fused:
                    functionals.append(pipeline.functionals(item))
            if item.utterances and pipeline.utterances_wanted:   # with the statistics its last window leaves
                utterances[id(item)] = pipeline.score_utterances(item.utterances)
                utterance_seconds += sum(u.inference_time for u in utterances[id(item)])
    rows = iter(())
    per_window = 0.0
    if inputs:
        probabilities = predictor.predict_features(np.stack(inputs))
        if fused:
            classical = predictor.functionals.classify(np.stack(functionals))
            probabilities = predictor.functionals.fuse(probabilities, classical)
        rows = iter(probabilities)
        per_window = (time.perf_counter() - started - utterance_seconds) / len(inputs)
    results = []
    for pipeline, pending in jobs:
        stream_results = []
        for item in pending:
            if not item.voiced:
                stream_results.append(pipeline.result(item))
            elif id(item) in errors:
                stream_results.append(pipeline.result(item, error=errors[id(item)]))
            else:
                stream_results.append(pipeline.result(item, next(rows), per_window))
            stream_results[-1].utterances = utterances.get(id(item), [])
        results.append(stream_results)
    return results
