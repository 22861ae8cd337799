"""The classical half of a fused model: acoustic functionals of each window (openSMILE's eGeMAPS v02),
standardised with the speaker's statistics as a speaker-normalised network's features are, and a
classifier on them whose probabilities are averaged with the network's, window by window.

ROS-free; openSMILE is imported when an extractor is made.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .features import SpeakerNormalizer

FUNCTIONAL_SETS = {'egemaps': 'eGeMAPSv02', 'compare': 'ComParE_2016'}
STREAM_LOOKAHEAD = 0.25    # seconds: a window's functionals need about 80 ms of audio after its end (F0 smoothing)


class FunctionalsExtractor:
    """(dims,) float32 functionals of a mono waveform at sample_rate."""

    def __init__(self, kind: str, sample_rate: int = 16000):
        if kind not in FUNCTIONAL_SETS:
            raise ValueError(f'unknown functionals {kind!r}; choose one of {sorted(FUNCTIONAL_SETS)}')
        try:
            import opensmile
        except ImportError as error:
            raise ImportError(f'{kind} functionals need openSMILE: pip install opensmile') from error
        self.kind, self.sample_rate = kind, sample_rate
        self._sliding: dict[tuple[float, float], object] = {}
        self._config_dir = None
        self._smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, FUNCTIONAL_SETS[kind]),
                                      feature_level=opensmile.FeatureLevel.Functionals)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        signal = np.asarray(waveform, dtype=np.float32)
        return self._smile.process_signal(signal, self.sample_rate).to_numpy()[0].astype(np.float32)

    def windows(self, windows: np.ndarray) -> np.ndarray:
        """(N, dims) functionals of (N, samples) windows."""
        return np.stack([self(window) for window in windows])

    def sliding(self, waveform: np.ndarray, window_seconds: float, hop_seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """(starts in seconds, (N, dims) functionals) of window_seconds windows every hop_seconds, from one
        openSMILE pass over the waveform: each sample's low-level descriptors are computed once, where
        windows() computes them again for every window that holds the sample. A window's descriptors near
        its start see the audio before it, so its functionals differ a little from windows()'s of the same
        samples (bench/bench.py --sections functionals measures how much)."""
        import tempfile

        import opensmile
        key = (window_seconds, hop_seconds)
        if key not in self._sliding:
            if self._config_dir is None:    # openSMILE reads the frame settings from a file on every call
                self._config_dir = tempfile.TemporaryDirectory(prefix='ser_functionals_')
            frames = Path(self._config_dir.name) / f'sliding_{window_seconds:g}_{hop_seconds:g}.conf.inc'
            frames.write_text(f'frameMode = fixed\nframeSize = {window_seconds}\nframeStep = {hop_seconds}\n'
                              'frameCenterSpecial = left\n')
            self._sliding[key] = opensmile.Smile(feature_set=self._smile.feature_set,
                                                 feature_level=opensmile.FeatureLevel.Functionals,
                                                 options={'frameModeFunctionalsConf': str(frames)})
        table = self._sliding[key].process_signal(np.asarray(waveform, dtype=np.float32), self.sample_rate)
        starts = np.array([start.total_seconds() for start in table.index.get_level_values('start')])
        return starts, table.to_numpy().astype(np.float32)

    def stream_windows(self, waveform: np.ndarray, window: int, hop: int) -> np.ndarray:
        """(N, dims) functionals of the windows a stream of this clip cuts (window samples every hop from its
        start, while they fit), from one pass (sliding), as StreamFunctionals computes them live; a clip no
        longer than a window is centre-padded to one, as clip_windows does. Silence follows the clip, as it
        would on a stream: a window's last descriptors wait for STREAM_LOOKAHEAD seconds after it."""
        from .predictor import fit_to_length
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.shape[-1] < window:
            waveform = fit_to_length(waveform, window)
        count = 1 + (waveform.shape[-1] - window) // hop
        silence = np.zeros(int(round(STREAM_LOOKAHEAD * self.sample_rate)), np.float32)
        vectors = self.sliding(np.concatenate([waveform, silence]), window / self.sample_rate,
                               hop / self.sample_rate)[1][:count]
        if len(vectors) < count or not np.all(np.isfinite(vectors)):
            raise RuntimeError(f'openSMILE gave {len(vectors)} finite windows of {count}')
        return vectors


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
    (dims,) functionals (None where they come precomputed).
    """

    def __init__(self, extractor: Callable[[np.ndarray], np.ndarray] | None,
                 classify: Callable[[np.ndarray], np.ndarray], prior: dict, weight: float = 0.5):
        if not 0.0 < weight <= 1.0:
            raise ValueError(f'functionals weight must be in (0, 1], got {weight}')
        self.extractor, self.classify, self.prior, self.weight = extractor, classify, prior, weight

    def stream_normalizer(self) -> SpeakerNormalizer:
        return SpeakerNormalizer(len(self.prior['mean']), prior=self.prior)

    def fuse(self, network: np.ndarray, functionals: np.ndarray) -> np.ndarray:
        """Window probabilities of the network and of the classifier, averaged with the weight."""
        return ((1.0 - self.weight) * network + self.weight * functionals).astype(np.float32)

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
    return Functionals(extractor, classify, spec['speaker_normalization'], spec['weight'])
