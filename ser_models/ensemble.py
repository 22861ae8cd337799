"""Several predictors on one front end, their class probabilities averaged."""
from __future__ import annotations

import numpy as np

from .predictor import Predictor


class AveragedPredictor(Predictor):
    """The mean of the members' probabilities for the same features.

    The members must agree on what a window is and means: labels in the same order, feature
    settings, sample rate, window length and, for speaker-normalised models, the training prior
    (members trained on the same speakers share it), so one front end serves them all.
    """

    def __init__(self, members: list[Predictor]):
        if not members:
            raise ValueError('an ensemble needs at least one member')
        first = members[0]
        fused = [m.model_id for m in members if getattr(m, 'functionals', None) is not None]
        if fused:
            raise ValueError(f'{fused} fuse a classical half, which an ensemble would leave out')
        for member in members[1:]:
            for what, mine, theirs in (('labels', first.labels, member.labels),
                                       ('features', first.features.config, member.features.config),
                                       ('sample rate', first.sample_rate, member.sample_rate),
                                       ('window', first.window_samples, member.window_samples)):
                if mine != theirs:
                    raise ValueError(f'{member.model_id} differs from {first.model_id} in its {what}')
            prior, other = (m.meta.get('speaker_normalization') for m in (first, member))
            if bool(prior) != bool(other) or (prior and not all(
                    np.allclose(prior[key], other[key], rtol=1e-4, atol=1e-4) for key in ('mean', 'std'))):
                raise ValueError(f'{member.model_id} and {first.model_id} start streams from different '
                                 f'speaker statistics')
            if prior and any(prior[key] != other[key] for key in ('frames', 'memory_frames')):
                raise ValueError(f'{member.model_id} and {first.model_id} weigh the speaker statistics differently '
                                 f'(stream prior or memory)')
        super().__init__(first.meta)
        self.members = list(members)
        self.model_id = '+'.join(m.model_id for m in members)
        self.backend = first.backend

    def predict_features(self, mfcc: np.ndarray) -> np.ndarray:
        return np.mean([member.predict_features(mfcc) for member in self.members], axis=0).astype(np.float32)
