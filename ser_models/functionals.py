"""The classical half of a fused model: acoustic functionals of each window (openSMILE's eGeMAPS v02 or
ComParE 2016, optionally followed by MFCC statistics of the same window), standardised with the speaker's
statistics as a speaker-normalised network's features are, and a classifier on them whose probabilities
are averaged with the network's, window by window.

ROS-free; openSMILE is imported when an extractor is made.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .features import FeatureConfig, MfccExtractor, SpeakerNormalizer

FUNCTIONAL_SETS = {'egemaps': 'eGeMAPSv02', 'compare': 'ComParE_2016'}
MFCC_STATISTICS = 'mfcc_stats'   # '<set>+mfcc_stats': the set's functionals, then mfcc_statistics of the window
KINDS = (*FUNCTIONAL_SETS, *(f'{name}+{MFCC_STATISTICS}' for name in FUNCTIONAL_SETS))
# How the two halves' probabilities join: their weighted mean, or their weighted geometric mean
# (log-probabilities averaged, renormalised), where one half's near-zero vetoes a label.
FUSION_RULES = ('mean', 'geometric')
PROBABILITY_FLOOR = 1e-6
STREAM_LOOKAHEAD = 0.25    # seconds: a window's functionals need about 80 ms of audio after its end (F0 smoothing)


def mfcc_statistics(waveform: np.ndarray, extractor: MfccExtractor) -> np.ndarray:
    """Mean and standard deviation over time of the extractor's MFCCs and their deltas (9-frame
    Savitzky-Golay slopes, as librosa.feature.delta computes them): 4 values a coefficient."""
    from scipy.signal import savgol_filter
    mfcc = extractor(np.asarray(waveform, dtype=np.float32))
    stacked = np.concatenate([mfcc, savgol_filter(mfcc, 9, 1, deriv=1, axis=-1, mode='nearest')])
    return np.concatenate([stacked.mean(axis=-1), stacked.std(axis=-1)]).astype(np.float32)


class FunctionalsExtractor:
    """(dims,) float32 functionals of a mono waveform at sample_rate: kind one of KINDS."""

    def __init__(self, kind: str, sample_rate: int = 16000):
        if kind not in KINDS:
            raise ValueError(f'unknown functionals {kind!r}; choose one of {list(KINDS)}')
        try:
            import opensmile
        except ImportError as error:
            raise ImportError(f'{kind} functionals need openSMILE: pip install opensmile') from error
        self.kind, self.sample_rate = kind, sample_rate
        opensmile_set, _, statistics = kind.partition('+')
        self._mfcc = (MfccExtractor(FeatureConfig(sample_rate=sample_rate, normalize='none'))
                      if statistics == MFCC_STATISTICS else None)
        self._sliding: dict[tuple[float, float], object] = {}
        self._config_dir = None
        self._smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, FUNCTIONAL_SETS[opensmile_set]),
                                      feature_level=opensmile.FeatureLevel.Functionals)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        signal = np.asarray(waveform, dtype=np.float32)
        return self.complete(self._smile.process_signal(signal, self.sample_rate).to_numpy()[0], signal)

    def complete(self, functionals: np.ndarray, window: np.ndarray) -> np.ndarray:
        """openSMILE's functionals of a window followed by what else the kind takes from its samples."""
        vector = np.asarray(functionals, dtype=np.float32)
        if self._mfcc is None:
            return vector
        return np.concatenate([vector, mfcc_statistics(window, self._mfcc)])

    def windows(self, windows: np.ndarray) -> np.ndarray:
        """(N, dims) functionals of (N, samples) windows."""
        return np.stack([self(window) for window in windows])

    def sliding(self, waveform: np.ndarray, window_seconds: float, hop_seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """(starts in seconds, (N, dims) openSMILE functionals, without what complete() adds) of window_seconds
        windows every hop_seconds, from one openSMILE pass over the waveform: each sample's low-level
        descriptors are computed once, where windows() computes them again for every window that holds the
        sample. A window's descriptors near its start see the audio before it, so its functionals differ a
        little from windows()'s of the same samples (bench/bench.py --sections functionals measures how much)."""
        import opensmile
        key = (window_seconds, hop_seconds)
        if key not in self._sliding:
            self._sliding[key] = opensmile.Smile(feature_set=self._smile.feature_set,
                                                 feature_level=opensmile.FeatureLevel.Functionals,
                                                 options={'frameModeFunctionalsConf': str(self._frames_config(
                                                     window_seconds, hop_seconds))})
        table = self._sliding[key].process_signal(np.asarray(waveform, dtype=np.float32), self.sample_rate)
        starts = np.array([start.total_seconds() for start in table.index.get_level_values('start')])
        return starts, table.to_numpy().astype(np.float32)

    def _config_file(self, name: str, text: str) -> Path:
        """A config include openSMILE reads by path (it reads them again on every run)."""
        import tempfile
        if self._config_dir is None:
            self._config_dir = tempfile.TemporaryDirectory(prefix='ser_functionals_')
        path = Path(self._config_dir.name) / name
        if not path.is_file():
            path.write_text(text)
        return path

    def _frames_config(self, window_seconds: float, hop_seconds: float) -> Path:
        return self._config_file(f'frames_{window_seconds:g}_{hop_seconds:g}.conf.inc',
                                 f'frameMode = fixed\nframeSize = {window_seconds}\nframeStep = {hop_seconds}\n'
                                 'frameCenterSpecial = left\n')

    def stream(self, window: int, hop: int) -> StreamFunctionals:
        """A StreamFunctionals of window samples every hop, fed as a stream's audio arrives."""
        return StreamFunctionals(self, window, hop)

    def stream_windows(self, waveform: np.ndarray, window: int, hop: int, through_end: bool = False) -> np.ndarray:
        """(N, dims) functionals of the windows a stream of this clip cuts (window samples every hop from its
        start), from one pass (sliding), as StreamFunctionals computes them live: those that fit in the clip,
        or (through_end) on until one holds its last sample, as on a stream where silence follows it. A clip
        no longer than a window is centre-padded to one, as clip_windows does. Silence follows the clip:
        a window's last descriptors wait for STREAM_LOOKAHEAD seconds after it."""
        from .predictor import fit_to_length
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.shape[-1] < window:
            waveform = fit_to_length(waveform, window)
        beyond = waveform.shape[-1] - window
        count = 1 + (-(-beyond // hop) if through_end else beyond // hop)
        silence = np.zeros(max(0, (count - 1) * hop + window - waveform.shape[-1])
                           + int(round(STREAM_LOOKAHEAD * self.sample_rate)), np.float32)
        heard = np.concatenate([waveform, silence])
        vectors = self.sliding(heard, window / self.sample_rate, hop / self.sample_rate)[1][:count]
        if len(vectors) < count or not np.all(np.isfinite(vectors)):
            raise RuntimeError(f'openSMILE gave {len(vectors)} finite windows of {count}')
        return np.stack([self.complete(vector, heard[k * hop:k * hop + window]) for k, vector in enumerate(vectors)])


class StreamFunctionals:
    """Functionals of one stream's windows (window samples every hop from the first sample written), from
    one openSMILE instance fed as the audio arrives and run on its own thread: each sample's descriptors are
    computed once, in ring buffers of fixed size, and each window's functionals equal
    FunctionalsExtractor.sliding's over the same samples (openSMILE's alone: the extractor's complete()
    adds the rest of its kind). Window k is ready once STREAM_LOOKAHEAD seconds of audio after it are
    written (ready()), or after finish()."""

    WRITE_TIMEOUT = 10.0    # seconds write() waits for room in openSMILE's input ring before it gives up
    WRITE_BLOCK = 0.25      # seconds of audio written at a time

    def __init__(self, extractor: FunctionalsExtractor, window: int, hop: int):
        import threading

        import opensmile
        from opensmile.core.lib import OpenSMILE
        rate = extractor.sample_rate
        self.window, self.hop, self.written = window, hop, 0
        self._vectors: dict[int, np.ndarray] = {}
        self._arrived = threading.Condition()
        self._failure: BaseException | None = None
        self._finished = False      # openSMILE's run() returned
        self._ended = False         # finish() ended the input
        # Ring buffers: the wave level holds a window and a second more; descriptor levels twice a window
        # of 10 ms frames. openSMILE's defaults grow without bound on a stream.
        wave = extractor._config_file(
            f'stream_wave_{rate}_{window}.conf.inc',
            '[componentInstances:cComponentManager]\ninstance[extsource].type=cExternalAudioSource\n\n'
            f'[extsource:cExternalAudioSource]\nwriter.dmLevel = wave\nwriter.levelconf.growDyn = 0\n'
            f'writer.levelconf.isRb = 1\nwriter.levelconf.nT = {window + rate}\nsampleRate = {rate}\n'
            'nBits = 16\nchannels = 1\n')
        frames = 2 * int(np.ceil(100 * window / rate)) + 100
        descriptors = extractor._config_file(f'stream_ring_{frames}.conf.inc',
                                             f'writer.levelconf.growDyn = 0\nwriter.levelconf.isRb = 1\n'
                                             f'writer.levelconf.nT = {frames}\n')
        settings = opensmile.Smile(feature_set=extractor._smile.feature_set,
                                   feature_level=opensmile.FeatureLevel.Functionals,
                                   options={'frameModeFunctionalsConf': str(extractor._frames_config(
                                       window / rate, hop / rate))})
        options = {**settings._options(), 'source': str(wave), 'bufferModeConf': str(descriptors),
                   'sampleRate': rate, 'nBits': 16}
        self._smile = OpenSMILE()
        self._smile.initialize(settings.config_path, options, loglevel=1)
        self._smile.external_sink_set_callback_ex('extsink', self._arrive)
        self._hop_seconds, self._rate = hop / rate, rate
        self._thread = threading.Thread(target=self._run, name='openSMILE stream', daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._smile.run()
        except BaseException as error:  # reported to the caller by ready()
            self._failure = error
        with self._arrived:
            self._finished = True
            self._arrived.notify_all()

    def _arrive(self, data: np.ndarray, meta) -> None:
        with self._arrived:
            self._vectors[int(round(meta.time / self._hop_seconds))] = data.reshape(-1).astype(np.float32)
            self._arrived.notify_all()

    def write(self, samples: np.ndarray) -> None:
        """Append float samples in [-1, 1) at the extractor's rate; blocks while openSMILE's input ring is
        full (it works through what it holds), raises RuntimeError if it stays full WRITE_TIMEOUT s."""
        import time
        pcm = (np.clip(np.asarray(samples, np.float32), -1.0, 32767 / 32768) * 32768).astype(np.int16)
        block = int(self.WRITE_BLOCK * self._rate)
        for start in range(0, pcm.size, block):
            data = pcm[start:start + block].tobytes()
            deadline = time.monotonic() + self.WRITE_TIMEOUT
            while not self._smile.external_audio_source_write_data('extsource', data):
                if self._finished or time.monotonic() > deadline:
                    raise RuntimeError(f'openSMILE took no audio for {self.WRITE_TIMEOUT:g} s'
                                       if not self._finished else 'openSMILE stopped')
                time.sleep(0.002)
        self.written += pcm.size

    def window_end(self, index: int) -> int:
        """The sample one past window `index`'s last."""
        return index * self.hop + self.window

    def ready(self, index: int, timeout: float = 2.0) -> np.ndarray | None:
        """Window `index`'s functionals, waiting up to timeout s for them; None if they did not come.
        Windows before it are forgotten."""
        with self._arrived:
            self._arrived.wait_for(lambda: index in self._vectors or self._finished, timeout)
            for old in [k for k in self._vectors if k < index]:
                del self._vectors[old]
            if self._finished and not self._ended and index not in self._vectors:
                raise RuntimeError(f'openSMILE stopped: {self._failure or "before the end of input"}')
            return self._vectors.pop(index, None)

    def finish(self) -> None:
        """End of input, as if STREAM_LOOKAHEAD s of silence followed (stream_windows's clips are heard so):
        every window that fits in the audio written becomes ready; no more audio is taken."""
        self._ended = True
        if not self._finished:
            try:
                self.write(np.zeros(int(round(STREAM_LOOKAHEAD * self._rate)), np.float32))
            except RuntimeError:
                pass    # it takes no audio: end with what it has
            self._smile.external_audio_source_set_eoi('extsource')
        self._thread.join(self.WRITE_TIMEOUT)

    def close(self) -> None:
        self.finish()
        self._smile.free()


def as_frames(vectors: np.ndarray) -> np.ndarray:
    """(..., dims) vectors as SpeakerNormalizer's (..., channels, frames): one frame each."""
    return np.asarray(vectors)[..., None]


def speaker_statistics(vectors: np.ndarray) -> SpeakerNormalizer:
    """Statistics of one speaker's (N, dims) window functionals, every window counted once."""
    normalizer = SpeakerNormalizer(vectors.shape[-1])
    normalizer.update(as_frames(vectors))
    return normalizer


class Functionals:
    """Window functionals, their speaker statistics and a classifier on them.

    classify: (N, dims) standardised functionals -> (N, len(labels)) probabilities in the network's
    label order. prior: the training speakers' statistics ({'mean', 'std', 'frames'}, frames counted in
    windows), where a stream's start. weight: the share of the fused probability. extractor: waveform ->
    (dims,) functionals (None where they come precomputed). one_pass: the classifier was fitted on
    functionals from one pass over each clip (FunctionalsExtractor.stream_windows), so a stream computes
    them in one pass too (StreamFunctionals); else one call a window. fusion: one of FUSION_RULES.
    """

    def __init__(self, extractor: Callable[[np.ndarray], np.ndarray] | None,
                 classify: Callable[[np.ndarray], np.ndarray], prior: dict, weight: float = 0.5,
                 one_pass: bool = False, fusion: str = 'mean'):
        if not 0.0 < weight <= 1.0:
            raise ValueError(f'functionals weight must be in (0, 1], got {weight}')
        if fusion not in FUSION_RULES:
            raise ValueError(f'fusion rule must be one of {FUSION_RULES}, got {fusion!r}')
        self.extractor, self.classify, self.prior, self.weight = extractor, classify, prior, weight
        self.one_pass, self.fusion = one_pass, fusion

    def stream_normalizer(self) -> SpeakerNormalizer:
        return SpeakerNormalizer(len(self.prior['mean']), prior=self.prior)

    def fuse(self, network: np.ndarray, functionals: np.ndarray) -> np.ndarray:
        """Probabilities of the network and of the classifier (a window's, or a clip's window means),
        joined by the fusion rule at the weight."""
        if self.fusion == 'mean':
            return ((1.0 - self.weight) * network + self.weight * functionals).astype(np.float32)
        log_joint = ((1.0 - self.weight) * np.log(np.maximum(network, PROBABILITY_FLOOR))
                     + self.weight * np.log(np.maximum(functionals, PROBABILITY_FLOOR)))
        joint = np.exp(log_joint - log_joint.max(axis=-1, keepdims=True))
        return (joint / joint.sum(axis=-1, keepdims=True)).astype(np.float32)

    def clip_probabilities(self, vectors: Sequence[np.ndarray], speakers: Sequence[str],
                           order: Sequence[int] | None = None, weight: float = 1.0) -> np.ndarray:
        """(clips, labels): each clip's classifier probabilities averaged over its windows' functionals
        (vectors: one (windows, dims) array a clip). order None: each speaker standardised over all of
        their clips' windows, as offline scoring does; else each speaker's clips heard in that order,
        every window standardised by the running statistics after it is added (each counted `weight`,
        hop / window on a stream), as a stream does."""
        if order is None:
            fitted = {s: speaker_statistics(np.concatenate([v for v, o in zip(vectors, speakers, strict=True)
                                                            if o == s])) for s in set(speakers)}
            standardised = [fitted[s](as_frames(v))[..., 0] for v, s in zip(vectors, speakers, strict=True)]
        else:
            streams: dict[str, SpeakerNormalizer] = {}
            standardised = [None] * len(vectors)
            for index in order:
                normalizer = streams.setdefault(speakers[index], self.stream_normalizer())
                rows = []
                for vector in vectors[index]:
                    normalizer.update(as_frames(vector), weight=weight)
                    rows.append(normalizer(as_frames(vector))[..., 0])
                standardised[index] = np.stack(rows)
        return np.stack([self.classify(rows).mean(axis=0) for rows in standardised]).astype(np.float32)


def load_functionals(meta: dict, threads: int = 1) -> Functionals | None:
    """A read_model_json meta's classical half (None for a network alone): openSMILE for the functionals,
    onnxruntime for the classifier graph, its classes placed in the model's label order."""
    import onnxruntime as ort

    from .artifact import ArtifactError, checked_file
    spec = meta.get('functionals')
    if not spec:
        return None
    path = checked_file(meta, 'functionals', spec['onnx'])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    except Exception as error:  # onnxruntime raises its own exception types
        raise ArtifactError(f'{path}: onnxruntime cannot load it: {error}') from None
    dims = len(spec['speaker_normalization']['mean'])
    declared = session.get_inputs()[0].shape[-1]
    if declared != dims:
        raise ArtifactError(f'{path}: the classifier reads {declared} functionals, model.json has statistics of {dims}')
    name = session.get_inputs()[0].name
    columns = [meta['labels'].index(label) for label in spec['classes']]

    def classify(standardised: np.ndarray) -> np.ndarray:
        probabilities = np.zeros((len(standardised), len(meta['labels'])), np.float32)
        probabilities[:, columns] = session.run(['probabilities'], {name: standardised.astype(np.float32)})[0]
        return probabilities
    extractor = FunctionalsExtractor(spec['kind'], meta['sample_rate'])
    return Functionals(extractor, classify, spec['speaker_normalization'], spec['weight'], spec.get('one_pass', False),
                       spec.get('fusion', 'mean'))
