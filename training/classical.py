"""Classical speech-emotion baselines: whole-clip feature vectors and scikit-learn classifiers."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ser_models.features import FeatureConfig, MfccExtractor

from .data import load_audio

SAMPLE_RATE = 16000
FEATURE_KINDS = ('mfcc_stats', 'egemaps', 'compare')


def mfcc_statistics(audio: np.ndarray, extractor: MfccExtractor) -> np.ndarray:
    """Mean and standard deviation over time of 39 MFCCs and their deltas: 156 values."""
    import librosa
    mfcc = extractor(audio)                                  # (39, frames), not normalised
    stacked = np.concatenate([mfcc, librosa.feature.delta(mfcc, width=9, mode='nearest')])
    return np.concatenate([stacked.mean(axis=1), stacked.std(axis=1)])


def extract(kind: str, paths: Sequence) -> np.ndarray:
    """(len(paths), dims) float32 features of each clip, read at 16 kHz."""
    if kind == 'mfcc_stats':
        extractor = MfccExtractor(FeatureConfig(normalize='none'))
        compute = lambda audio: mfcc_statistics(audio, extractor)  # noqa: E731
    elif kind in ('egemaps', 'compare'):
        import opensmile
        smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02 if kind == 'egemaps' else opensmile.FeatureSet.ComParE_2016,
            feature_level=opensmile.FeatureLevel.Functionals)
        compute = lambda audio: smile.process_signal(audio, SAMPLE_RATE).to_numpy()[0]  # noqa: E731
    else:
        raise ValueError(f'unknown feature kind {kind!r}; choose one of {FEATURE_KINDS}')
    return np.stack([compute(load_audio(path, SAMPLE_RATE)) for path in paths]).astype(np.float32)


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


def make_classifier(kind: str):
    """A scikit-learn pipeline (standardisation, then the classifier) with a decision_function."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    if kind == 'svm':
        return make_pipeline(StandardScaler(), SVC(kernel='rbf', C=10.0, gamma='scale', class_weight='balanced'))
    if kind == 'logreg':
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight='balanced'))
    raise ValueError(f'unknown classifier {kind!r}; choose svm or logreg')
