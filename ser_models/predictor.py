"""Predictors: waveform -> class probabilities, on onnxruntime (no torch import) or torch."""
from __future__ import annotations

import time

import numpy as np

from .artifact import ArtifactError, checked_file, member_directories, read_model_json, window_samples
from .features import FeatureConfig, MfccExtractor, SpeakerNormalizer
from .folding import folded_model
from .functionals import load_functionals
from .native import PRECISIONS

BACKENDS = ('onnxruntime', 'torch')
# CkTIM's spectral mix on onnxruntime: the native kernel with float16 or float32 kernel spectra, or
# the graph's own exact float32 operators ('onnx'). Models without CKConvs ignore it.
SPECTRAL_MIX = (*PRECISIONS, 'onnx')
# What load() and the node accept: 'auto' runs the spectral mix the model's model.json declares
# (float16 where it declares none); the others override it.
SPECTRAL_MIX_CHOICES = ('auto', *SPECTRAL_MIX)
# The largest gap from the torch model's probabilities a spectral mix may make on real speech.
SPECTRAL_MIX_ATOL = 1e-3
# Speaker-normalised models, a lone call (no stream): each window is standardised with the training
# prior plus its own frames counted this many times (0: the prior alone), where model.json names no
# lone_window_weight of its own. Chosen on the validation speakers of the unseen-speaker carve
# (docs/results.md, lone calls).
LONE_WINDOW_WEIGHT = 1.0
# The same for a fused model's classical half, whose window is one functionals vector (no spread of its own).
LONE_FUNCTIONALS_WEIGHT = 1.0


def declared_spectral_mix(meta: dict) -> str:
    """The spectral mix 'auto' runs for a model: the one its model.json declares, else float16."""
    return meta.get('spectral_mix', PRECISIONS[0])


def parity_promised(meta: dict, spectral_mix: str) -> bool:
    """Whether a model promises SPECTRAL_MIX_ATOL at this spectral mix: true for the mix it declares,
    the more exact ones after it in SPECTRAL_MIX and models without CKConvs; not for a faster mix. An
    ensemble promises it where each of its members does."""
    if 'members' in meta:
        return all(parity_promised(read_model_json(member), spectral_mix) for member in member_directories(meta))
    if not has_ckconvs(meta['architecture']):
        return True
    return SPECTRAL_MIX.index(spectral_mix) >= SPECTRAL_MIX.index(declared_spectral_mix(meta))


def has_ckconvs(architecture: dict) -> bool:
    """Whether a model's graph has CKConvs, so SpectralMix nodes."""
    return bool(architecture.get('ck_tab') or architecture.get('ck_input'))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def fit_to_length(waveform: np.ndarray, length: int) -> np.ndarray:
    """Centre-crop or centre-pad (zeros) the last axis to length."""
    n = waveform.shape[-1]
    if n >= length:
        start = (n - length) // 2
        return waveform[..., start:start + length]
    before = (length - n) // 2
    return np.pad(waveform, [(0, 0)] * (waveform.ndim - 1) + [(before, length - n - before)])


def release_freed_heap() -> None:
    """Hand heap memory freed so far back to the OS (glibc only; elsewhere nothing happens).

    Folding CkTIM's kernel generators at session load (where the folded copy in ser_models.folding
    could not be made) frees temporaries that glibc would otherwise keep mapped.
    """
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Predictor:
    """Shared front end; subclasses implement _logits(mfcc batch)."""

    backend = ''

    def __init__(self, meta: dict):
        self.meta = meta
        self.labels: list[str] = list(meta['labels'])
        self.model_id: str = meta['model_id']
        self.sample_rate: int = meta['sample_rate']
        self.window_samples: int = window_samples(meta)
        self.window_seconds: float = meta['window_seconds']
        self.features = MfccExtractor(FeatureConfig.from_dict(meta['features']))
        self.lone_functionals_weight = LONE_FUNCTIONALS_WEIGHT
        self.device = 'cpu'
        self.last_inference_seconds = 0.0
        self.functionals = None     # a fused model's classical half (ser_models.functionals), set by load()

    @property
    def test_time_speeds(self) -> tuple[float, ...]:
        """Speeds each window is also heard at, probabilities averaged (model.json; (1.0,): as it is)."""
        return tuple(float(speed) for speed in self.meta.get('test_time_speeds', [1.0]))

    @property
    def logit_offsets(self) -> np.ndarray | None:
        """What predict_features adds to the logits (model.json label_prior), or None."""
        prior = self.meta.get('label_prior')
        if not prior:
            return None
        return -prior['correction'] * np.log(np.asarray(prior['shares'], dtype=np.float64))

    @property
    def lone_window_weight(self) -> float:
        """How many times a lone call counts its window's own frames beside the training prior (model.json,
        else LONE_WINDOW_WEIGHT)."""
        return float(self.meta.get('lone_window_weight', LONE_WINDOW_WEIGHT))

    @lone_window_weight.setter
    def lone_window_weight(self, weight: float) -> None:
        self.meta = {**self.meta, 'lone_window_weight': float(weight)}

    @property
    def population(self) -> SpeakerNormalizer | None:
        """Speaker-normalised models: the training speakers' statistics, worth the stream prior model.json
        states now. A lone call standardises each window with them plus the window itself counted
        lone_window_weight times; streams (EmotionPipeline) and speakers' clip sets
        (windowing.predict_clips) adapt to the voice. None for models on per-window CMVN or without them."""
        statistics = self.meta.get('speaker_normalization')
        if self.features.config.normalize != 'speaker' or not statistics:
            return None
        return SpeakerNormalizer.for_features(self.features.config, prior=statistics)

    def stream_normalizer(self) -> SpeakerNormalizer | None:
        """A new stream's speaker statistics (the training speakers' as its prior, with the stored memory);
        None for models on per-window CMVN."""
        if self.features.config.normalize != 'speaker':
            return None
        settings = self.meta.get('speaker_normalization')
        if not settings:
            raise ValueError(f'{self.model_id}: speaker-normalised features but model.json has no '
                             f'speaker_normalization statistics to start a stream from')
        return SpeakerNormalizer.for_features(self.features.config, prior=settings,
                                              memory_frames=settings['memory_frames'])

    def predict(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono waveform of any length -> probabilities (n_classes,), fitted to one model window."""
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim != 1:
            raise ValueError(f'expected a mono 1-D waveform, got shape {waveform.shape}')
        if sample_rate != self.sample_rate:
            import soxr
            waveform = soxr.resample(waveform, sample_rate, self.sample_rate).astype(np.float32)
        return self.predict_windows(fit_to_length(waveform, self.window_samples)[None])[0]

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        """Batch of windows (B, window_samples) at the model rate -> probabilities (B, n_classes), each
        window a lone call (model_inputs). A fused model adds its classical half, each window's functionals
        standardised with the training windows' statistics plus the window itself counted
        lone_functionals_weight times."""
        start = time.perf_counter()
        probabilities = self.network_windows(windows)
        if self.functionals is not None:
            from .functionals import as_frames
            standardised = self.functionals.stream_normalizer().standardise_each(
                as_frames(self.functionals.extractor.windows(windows)), self.lone_functionals_weight)
            probabilities = self.functionals.fuse(probabilities, self.functionals.classify(standardised[..., 0]))
        self.last_inference_seconds = time.perf_counter() - start
        return probabilities

    def network_windows(self, windows: np.ndarray) -> np.ndarray:
        """predict_windows by the network alone (a fused model's classical half left out)."""
        if not np.all(np.isfinite(windows)):
            raise ValueError('waveform contains NaN or Inf')
        return self.predict_features(self.model_inputs(windows))

    def model_inputs(self, windows: np.ndarray) -> np.ndarray:
        """Windows (B, window_samples) -> the model's input (B, channels, frames), speaker-normalised
        models standardised as a lone call is (the training speakers' statistics and lone_window_weight)."""
        mfcc = self.features(windows)
        if self.features.config.normalize == 'speaker':
            population = self.population
            if population is None:
                raise ValueError(f'{self.model_id}: speaker-normalised features but model.json has no '
                                 f'speaker_normalization statistics')
            mfcc = population.standardise_each(mfcc, self.lone_window_weight)
        return mfcc

    def predict_features(self, mfcc: np.ndarray) -> np.ndarray:
        """Batch of MFCC (B, n_mfcc, frames) from self.features -> probabilities (B, n_classes)."""
        start = time.perf_counter()
        logits = self._logits(mfcc).astype(np.float64)
        if not np.all(np.isfinite(logits)):
            raise ValueError('the model produced non-finite outputs for this audio')
        offsets = self.logit_offsets
        if offsets is not None:
            logits = logits + offsets
        probabilities = softmax(logits).astype(np.float32)
        self.last_inference_seconds = time.perf_counter() - start
        return probabilities

    def _logits(self, mfcc: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxPredictor(Predictor):
    backend = 'onnxruntime'

    def __init__(self, meta: dict, threads: int = 1, device: str = 'cpu', spectral_mix: str = 'auto'):
        super().__init__(meta)
        import onnxruntime as ort

        from . import native
        if spectral_mix not in SPECTRAL_MIX_CHOICES:
            raise ValueError(f'spectral_mix must be one of {", ".join(SPECTRAL_MIX_CHOICES)}, got {spectral_mix!r}')
        if spectral_mix == 'auto':
            spectral_mix = declared_spectral_mix(meta)
        path = checked_file(meta, 'onnx')
        checked_file(meta, 'weights')  # the graph reads its weights from model.safetensors
        # Only graphs with CKConvs have SpectralMix nodes; the others never look for the library.
        has_spectral_mix = has_ckconvs(meta['architecture'])
        wanted = has_spectral_mix and spectral_mix != 'onnx'
        library, self.native_problem = native.library() if wanted else (None, '')
        # The spectral mix in effect: 'onnx' where the native kernel was asked for but is missing.
        if not has_spectral_mix:
            self.spectral_mix = 'none'
        else:
            self.spectral_mix = spectral_mix if library or not wanted else 'onnx'
        folded, self.folding_problem = folded_model(path, meta['onnx']['sha256'], meta['weights']['sha256'], library,
                                                    spectral_mix)
        options = ort.SessionOptions()
        if library:
            options.add_session_config_entry(native.PRECISION_KEY, spectral_mix)
            options.register_custom_ops_library(str(library))
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ['CUDAExecutionProvider', 'CPUExecutionProvider'] if device == 'cuda' else ['CPUExecutionProvider']
        try:
            self.session = ort.InferenceSession(str(folded or path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise ArtifactError(f'{path}: onnxruntime cannot load it: {error}') from None
        self.device = 'cuda' if self.session.get_providers()[0] == 'CUDAExecutionProvider' else 'cpu'
        release_freed_heap()
        self._input = self.session.get_inputs()[0].name

    def _logits(self, mfcc):
        return self.session.run(None, {self._input: mfcc})[0]


class TorchPredictor(Predictor):
    backend = 'torch'

    def __init__(self, meta: dict, threads: int = 1, device: str = 'cpu', model=None):
        """model: an in-memory torch model to serve instead of the artifact's weights (training
        validation); meta then needs only labels, model_id, sample_rate, window_seconds and features."""
        super().__init__(meta)
        import torch
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = device
        self.model = model if model is not None else self._load_model(meta).to(device).eval()

    @staticmethod
    def _load_model(meta: dict):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from .registry import build
        path = checked_file(meta, 'weights')
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ArtifactError(f'{path}: not a readable safetensors file: {error}') from None
        model = build(meta['architecture'])
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ArtifactError(f'{path}: weights do not fit the architecture in model.json: '
                                f'{str(error).splitlines()[0]}') from None
        return model

    def _logits(self, mfcc):
        torch = self._torch
        with torch.inference_mode():
            return self.model(torch.from_numpy(mfcc).to(self.device)).cpu().numpy()


DEVICES = ('auto', 'cpu', 'cuda', 'mps')


def resolve_device(device: str, backend: str = 'torch') -> tuple[str, str | None]:
    """The device a backend will run on for a requested one, and a warning when it falls back to cpu.

    The one device choice of the node, the predictors and training. 'auto' takes a GPU when the
    backend can use one here; onnxruntime is asked for its providers (torch is never imported for it).
    """
    if device not in DEVICES:
        raise ValueError(f'device must be one of {", ".join(DEVICES)}, got {device!r}')
    if device == 'cpu':
        return 'cpu', None
    fallback = None if device == 'auto' else f'{device} requested but not available to {backend} here; using cpu'
    if backend == 'onnxruntime':
        import onnxruntime
        if device in ('auto', 'cuda') and 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
            return 'cuda', None
        return 'cpu', fallback
    try:
        import torch
    except ImportError:
        return 'cpu', fallback
    if device in ('auto', 'cuda') and torch.cuda.is_available():
        return 'cuda', None
    if device in ('auto', 'mps') and getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available():
        return 'mps', None
    return 'cpu', fallback


def load(directory, backend: str = 'onnxruntime', device: str = 'cpu', threads: int = 1,
         spectral_mix: str = 'auto') -> Predictor:
    """Load an artifact directory as a predictor on `device` (any of DEVICES; see resolve_device); an
    ensemble's as an AveragedPredictor of its members, each loaded so.
    spectral_mix (onnxruntime only): see SPECTRAL_MIX_CHOICES. Raises ArtifactError naming the bad file."""
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    device, _ = resolve_device(device, backend)
    meta = read_model_json(directory)
    if 'members' in meta:
        from .ensemble import AveragedPredictor
        members = [load(member, backend, device, threads, spectral_mix) for member in member_directories(meta)]
        try:
            predictor = AveragedPredictor(members, meta)
        except ValueError as error:
            raise ArtifactError(f"{meta['_directory']}: {error}") from None
    elif backend == 'onnxruntime':
        predictor = OnnxPredictor(meta, threads=threads, device=device, spectral_mix=spectral_mix)
    else:
        predictor = TorchPredictor(meta, threads=threads, device=device)
    predictor.functionals = load_functionals(meta, threads)
    return predictor


def spectral_mix_gaps(directory, windows: np.ndarray) -> dict[str, float]:
    """Per spectral mix in SPECTRAL_MIX, the largest gap between the probabilities onnxruntime gives
    for these waveform windows (n, samples) and the torch model's."""
    reference = load(directory, backend='torch')
    mfcc = reference.model_inputs(windows)
    expected = reference.predict_features(mfcc)
    gaps = {}
    for mix in SPECTRAL_MIX:
        predictor = load(directory, spectral_mix=mix)
        if predictor.spectral_mix != mix:
            raise RuntimeError(f'{predictor.model_id}: cannot measure the {mix} spectral mix here: '
                               f'{predictor.native_problem or "the model has no CKConvs"}')
        gaps[mix] = float(np.abs(predictor.predict_features(mfcc) - expected).max())
    return gaps


def fastest_faithful_spectral_mix(gaps: dict[str, float], atol: float = SPECTRAL_MIX_ATOL) -> str:
    """The first (fastest) spectral mix in SPECTRAL_MIX whose gap is within atol."""
    return next(mix for mix in SPECTRAL_MIX if gaps[mix] <= atol or mix == 'onnx')
