"""Several predictors on one front end, their class probabilities averaged."""
from __future__ import annotations

import time

import numpy as np

from .predictor import Predictor


def front_end(predictor: Predictor) -> dict:
    """What a window is and means to a predictor: what an ensemble's members must share."""
    return {'labels': predictor.labels, 'features': predictor.features.config, 'sample rate': predictor.sample_rate,
            'window': predictor.window_samples}


def same_statistics(meta: dict, other: dict) -> bool:
    """Whether two model.json metas start streams from the same speaker statistics (or neither has any)."""
    prior, theirs = meta.get('speaker_normalization'), other.get('speaker_normalization')
    return bool(prior) == bool(theirs) and (not prior or all(
        np.allclose(prior[key], theirs[key], rtol=1e-4, atol=1e-4) for key in ('mean', 'std')))


class AveragedPredictor(Predictor):
    """The mean of the members' probabilities for the same features.

    The members must agree on what a window is and means: labels in the same order, feature
    settings, sample rate, window length and, for speaker-normalised models, the training prior
    (members trained on the same speakers share it), so one front end serves them all.

    meta: a shipped ensemble's own model.json (its id, and how its streams start), which must describe
    the members' front end; None: the first member's, the members' ids joined as the id.
    """

    def __init__(self, members: list[Predictor], meta: dict | None = None):
        if not members:
            raise ValueError('an ensemble needs at least one member')
        first = members[0]
        fused = [m.model_id for m in members if getattr(m, 'functionals', None) is not None]
        if fused:
            raise ValueError(f'{fused} fuse a classical half, which an ensemble would leave out')
        nested = [m.model_id for m in members if isinstance(m, AveragedPredictor)]
        if nested:
            raise ValueError(f'{nested} are ensembles themselves; list their members instead')
        for member in members[1:]:
            self._check_agreement(first, member)
            prior, other = (m.meta.get('speaker_normalization') for m in (first, member))
            if prior and any(prior[key] != other[key] for key in ('frames', 'memory_frames')):
                raise ValueError(f'{member.model_id} and {first.model_id} weigh the speaker statistics differently '
                                 f'(stream prior or memory)')
        super().__init__(meta or first.meta)
        if meta is not None:
            self._check_agreement(self, first)
        self.members = list(members)
        self.model_id = meta['model_id'] if meta else '+'.join(m.model_id for m in members)
        self.backend, self.device = first.backend, first.device
        mixes = {getattr(m, 'spectral_mix', None) for m in members}
        if None not in mixes:
            self.spectral_mix = '+'.join(sorted(mixes))
        self.native_problem, self.folding_problem = (
            '; '.join(sorted({problem for m in members if (problem := getattr(m, what, ''))}))
            for what in ('native_problem', 'folding_problem'))

    @staticmethod
    def _check_agreement(first: Predictor, member: Predictor) -> None:
        for (what, mine), theirs in zip(front_end(first).items(), front_end(member).values(), strict=True):
            if mine != theirs:
                raise ValueError(f'{member.model_id} differs from {first.model_id} in its {what}')
        if not same_statistics(first.meta, member.meta):
            raise ValueError(f'{member.model_id} and {first.model_id} start streams from different '
                             f'speaker statistics')

    def predict_features(self, mfcc: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        probabilities = np.mean([member.predict_features(mfcc) for member in self.members], axis=0)
        self.last_inference_seconds = time.perf_counter() - start
        return probabilities.astype(np.float32)
