"""Classical speech-emotion baselines: whole-clip feature vectors and scikit-learn classifiers."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ser_models.features import FeatureConfig, MfccExtractor
from ser_models.functionals import FunctionalsExtractor, mfcc_statistics

from .data import load_audio

SAMPLE_RATE = 16000
FEATURE_KINDS = ('mfcc_stats', 'egemaps', 'compare')


def extract(kind: str, paths: Sequence, jobs: int = 1) -> np.ndarray:
    """(len(paths), dims) float32 features of each clip, read at 16 kHz; jobs > 1: that many processes,
    each extracting a contiguous share of the clips."""
    if jobs > 1 and len(paths) > jobs:
        from concurrent.futures import ProcessPoolExecutor
        shares = [list(share) for share in np.array_split(np.array(paths, dtype=object), jobs)]
        with ProcessPoolExecutor(jobs) as pool:
            return np.concatenate(list(pool.map(extract, [kind] * jobs, shares)))
    if kind == 'mfcc_stats':
        extractor = MfccExtractor(FeatureConfig(normalize='none'))
        compute = lambda audio: mfcc_statistics(audio, extractor)  # noqa: E731  (39 MFCCs: 156 values)
    elif kind in ('egemaps', 'compare'):
        compute = FunctionalsExtractor(kind, SAMPLE_RATE)
    else:
        raise ValueError(f'unknown feature kind {kind!r}; choose one of {FEATURE_KINDS}')
    return np.stack([compute(load_audio(path, SAMPLE_RATE)) for path in paths]).astype(np.float32)


def cached_features(kind: str, paths: Sequence, cache_dir: Path | None, jobs: int = 1) -> np.ndarray:
    """extract(kind, paths, jobs), taking clips already extracted from cache_dir/<kind>.npz (keyed by
    resolved path) and adding the rest to it; no cache_dir: extract all."""
    keys = np.array([str(Path(path).resolve()) for path in paths])
    cache = Path(cache_dir) / f'{kind}.npz' if cache_dir else None
    known: dict[str, np.ndarray] = {}
    if cache and cache.is_file():
        with np.load(cache) as stored:
            known = dict(zip(stored['paths'], stored['features'], strict=True))
    missing = [key for key in dict.fromkeys(keys) if key not in known]
    if missing:
        known.update(zip(missing, extract(kind, missing, jobs), strict=True))
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_name(f'{cache.stem}.{os.getpid()}.npz')
            np.savez(partial, paths=np.array(list(known)), features=np.stack(list(known.values())))
            os.replace(partial, cache)    # a reader never sees half a file
    return np.stack([known[key] for key in keys]).astype(np.float32)


def standardise_per_speaker(features: np.ndarray, speakers: Sequence[str], fit=None) -> np.ndarray:
    """Each speaker's features to zero mean and unit variance over that speaker's clips (no labels used);
    with `fit` (a boolean per clip), the statistics come from the speaker's clips marked True."""
    out = np.empty_like(features)
    speakers = np.asarray(speakers)
    fit = np.ones(len(speakers), bool) if fit is None else np.asarray(fit)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        source = features[rows & fit] if np.any(rows & fit) else features[rows]
        out[rows] = (features[rows] - source.mean(axis=0)) / (source.std(axis=0) + 1e-6)
    return out


SVM_C = 10.0    # the RBF SVM's margin penalty unless a row sets its own


def make_classifier(kind: str, probabilities: bool = False, svm_c: float = SVM_C, calibration_folds=None):
    """A scikit-learn pipeline (standardisation, then the classifier) with a decision_function; with
    probabilities, the SVM's scores mapped to probabilities by Platt scaling fitted in an internal 5-fold
    cross-validation (predict_proba), or over calibration_folds ((train, held-out) row indices) where
    given. svm_c: the RBF SVM's C."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    if kind == 'svm':
        svm = SVC(kernel='rbf', C=svm_c, gamma='scale', class_weight='balanced')
        calibrated = CalibratedClassifierCV(svm, ensemble=False, cv=calibration_folds or 5)
        return make_pipeline(StandardScaler(), calibrated if probabilities else svm)
    if kind == 'logreg':
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight='balanced'))
    raise ValueError(f'unknown classifier {kind!r}; choose svm or logreg')


def out_of_speaker_probabilities(features: np.ndarray, targets: np.ndarray, speakers: Sequence[str],
                                 groups: list[list[str]], n_classes: int) -> np.ndarray:
    """Each clip's class probabilities from the speaker-standardised RBF SVM (the speaker-normalised
    classical rows' classifier) fitted on the clips of the other speaker groups only, so they say how a
    clip sounds to a model that never heard its speaker. groups: a partition of the speakers.
    (clips, n_classes)."""
    speakers = np.asarray(speakers)
    standardised = standardise_per_speaker(features, speakers)
    probabilities = np.zeros((len(speakers), n_classes), np.float32)
    for group in groups:
        held = np.isin(speakers, group)
        if not held.any():
            continue
        if len(np.unique(targets[~held])) < 2:
            raise ValueError('out-of-speaker probabilities need at least two classes outside every speaker group')
        model = make_classifier('svm', probabilities=True).fit(standardised[~held], targets[~held])
        probabilities[np.ix_(held, model.classes_)] = model.predict_proba(standardised[held])
    return probabilities


CALIBRATIONS = ('windows', 'speakers')


def fit_options(settings: dict) -> dict:
    """fit_on_windows's keyword options as a fused row's settings give them (defaults where they are silent)."""
    return {'svm_c': settings.get('svm_c', SVM_C), 'calibration': settings.get('calibration', 'windows'),
            'weigh_corpora': settings.get('weigh_corpora', False)}


def with_virtual_speakers(vectors: Sequence[np.ndarray], speakers: Sequence[str], targets: Sequence[int],
                          virtual: dict[float, Sequence[np.ndarray]]):
    """The clips' window functionals, speakers and targets, followed by each virtual speaker's: the same
    clips played at a speed (virtual: speed -> their functionals so), every speaker then a new one,
    '<speaker>@<speed>', standardised over its own windows."""
    vectors, speakers, targets = list(vectors), list(speakers), list(targets)
    for speed, played in sorted(virtual.items()):
        vectors += list(played)
        speakers += [f'{s}@{speed:g}' for s in speakers[:len(played)]]
        targets += targets[:len(played)]
    return vectors, speakers, targets


def early_stream_statistics(prior: dict, vectors: Sequence[np.ndarray], index: int, same_speaker: Sequence[int],
                            clips: int, weight: float, rng):
    """Statistics as a stream holds them early on, to standardise clip `index`'s windows with: the prior
    (a summary, its frames counted in windows), then up to clips - 1 other clips of its speaker
    (same_speaker, drawn at random) and the clip itself, each window counted `weight` (hop / window)."""
    from ser_models.features import SpeakerNormalizer
    from ser_models.functionals import as_frames
    others = [i for i in same_speaker if i != index]
    count = min(int(rng.integers(0, clips)), len(others))
    heard = [vectors[i] for i in rng.choice(others, size=count, replace=False)] if count else []
    normalizer = SpeakerNormalizer(len(prior['mean']), prior=prior)
    normalizer.update(as_frames(np.concatenate([*heard, vectors[index]])), weight=weight)
    return normalizer


def fit_on_windows(classifier: str, vectors: Sequence[np.ndarray], speakers: Sequence[str], targets: Sequence[int],
                   svm_c: float = SVM_C, calibration: str = 'windows', weigh_corpora: bool = False,
                   virtual: dict[float, Sequence[np.ndarray]] | None = None, early: dict | None = None):
    """A classifier (make_classifier, with probabilities) on every window's functionals of the clips
    (vectors: one (windows, dims) array a clip), each speaker's windows standardised over that speaker's
    own; and the raw windows' pooled statistics, a stream's prior. Returns (model, SpeakerNormalizer).
    calibration: what the SVM's Platt scaling holds out, windows at random ('windows') or whole speakers
    ('speakers', 5 folds stratified by class), so its probabilities say how sure it is of new voices.
    weigh_corpora: each corpus's windows (speakers '<corpus>:<name>') weigh as much in all, as the
    networks draw them, on top of the balanced class weights. virtual: the same clips' functionals played
    at other speeds (with_virtual_speakers), fitted on as speakers of their own; the prior stays the
    clips' as heard. early: {'share', 'clips', 'prior_windows', 'weight'}: that share of the clips
    standardised as a stream's statistics stand early on (early_stream_statistics, from the pooled
    prior worth prior_windows windows), as the node's first seconds of a voice are, not over all of
    their speaker's windows."""
    from sklearn.model_selection import StratifiedGroupKFold

    from ser_models.functionals import as_frames, speaker_statistics
    if calibration not in CALIBRATIONS:
        raise ValueError(f'unknown calibration {calibration!r}; choose one of {CALIBRATIONS}')
    prior = speaker_statistics(np.concatenate(list(vectors)))
    stream_prior = prior.summary(early['prior_windows']) if early else None
    vectors, speakers, targets = with_virtual_speakers(vectors, speakers, targets, virtual or {})
    rng = np.random.default_rng(0)
    inputs, window_targets, window_speakers = [], [], []
    for speaker in sorted(set(speakers)):
        own = [i for i, s in enumerate(speakers) if s == speaker]
        stacked = np.concatenate([vectors[i] for i in own])
        whole = speaker_statistics(stacked)
        if not early:
            inputs.append(whole(as_frames(stacked))[..., 0])
        else:
            for i in own:
                statistics = (early_stream_statistics(stream_prior, vectors, i, own, early['clips'], early['weight'],
                                                      rng) if rng.random() < early['share'] else whole)
                inputs.append(statistics(as_frames(vectors[i]))[..., 0])
        window_targets += [targets[i] for i in own for _ in range(len(vectors[i]))]
        window_speakers += [speaker] * len(stacked)
    inputs = np.concatenate(inputs)
    folds = (list(StratifiedGroupKFold(5, shuffle=True, random_state=0).split(inputs, window_targets, window_speakers))
             if calibration == 'speakers' else None)
    model = make_classifier(classifier, probabilities=True, svm_c=svm_c, calibration_folds=folds)
    weights = {}
    if weigh_corpora:
        corpora = np.array([speaker.split(':')[0] for speaker in window_speakers])
        names, index, counts = np.unique(corpora, return_inverse=True, return_counts=True)
        weights[f'{model.steps[-1][0]}__sample_weight'] = (len(corpora) / (len(names) * counts))[index]
    return model.fit(inputs, window_targets, **weights), prior


def probabilities_in_label_order(model, n_labels: int):
    """standardised functionals -> (N, n_labels) probabilities of a fitted classifier whose classes are
    label indices (a class it never saw gets 0)."""
    def classify(standardised: np.ndarray) -> np.ndarray:
        probabilities = np.zeros((len(standardised), n_labels), np.float32)
        probabilities[:, model.classes_] = model.predict_proba(standardised)
        return probabilities
    return classify


def export_functionals(model, directory: Path, kind: str, labels: Sequence[str], prior: dict,
                       weight: float, one_pass: bool = False, fusion: str = 'mean') -> dict:
    """The classifier as directory/functionals.onnx (skl2onnx) and its model.json 'functionals' entry."""
    from skl2onnx import to_onnx

    from ser_models.artifact import sha256_of
    dims = len(prior['mean'])
    graph = to_onnx(model, np.zeros((1, dims), np.float32), options={id(model): {'zipmap': False}},
                    target_opset=17)
    path = Path(directory) / 'functionals.onnx'
    path.write_bytes(graph.SerializeToString())
    return {'kind': kind, 'onnx': {'file': path.name, 'sha256': sha256_of(path)},
            'classes': [labels[int(c)] for c in model.classes_], 'weight': weight, 'one_pass': one_pass,
            'fusion': fusion,
            'speaker_normalization': {key: prior[key] for key in ('mean', 'std', 'frames')}}
