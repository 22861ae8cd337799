"""Knowledge distillation (Hinton et al., 2015): a student learns from the averaged class probabilities
of trained artifacts on the very windows it trains on, beside the labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from ser_models import FeatureConfig
from ser_models.ensemble import AveragedPredictor
from ser_models.predictor import load


def allowed_log_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over each row's allowed classes only; the others read 0, so a target that gives
    them no mass adds nothing to a cross-entropy or KL divergence."""
    log_probs = functional.log_softmax(logits.masked_fill(~allowed, float('-inf')), dim=-1)
    return log_probs.masked_fill(~allowed, 0.0)


class Teacher:
    """Trained artifacts averaged, checked to share the student's labels and features and to have seen
    none of the speakers the student is tested or validated on; and/or fixed per-clip probabilities
    (clip_probabilities, (clips, classes), rows indexed like the student's clips), averaged with the
    artifacts' mean, half each."""

    def __init__(self, artifacts: list[str], labels: list[str], features: FeatureConfig,
                 test_speakers: set[str], validation_speakers: set[str], temperature: float,
                 clip_probabilities: np.ndarray | None = None):
        if temperature <= 0:
            raise ValueError(f'training.distill_temperature must be positive, got {temperature}')
        if not artifacts and clip_probabilities is None:
            raise ValueError('a teacher needs artifacts or clip probabilities')
        if clip_probabilities is not None and clip_probabilities.shape[1] != len(labels):
            raise ValueError(f'clip probabilities have {clip_probabilities.shape[1]} classes, the student '
                             f'{len(labels)}')
        self.clip_probabilities = clip_probabilities
        self.temperature = temperature
        self.ensemble = None
        if not artifacts:
            return
        members = [load(Path(artifact)) for artifact in artifacts]
        self.ensemble = AveragedPredictor(members)     # refuses members that disagree among themselves
        if self.ensemble.labels != labels:
            raise ValueError(f'the teachers have labels {self.ensemble.labels}, the student {labels}')
        if self.ensemble.features.config != features:
            raise ValueError('the teachers have other feature settings than the student')
        for artifact, member in zip(artifacts, members, strict=True):
            data = member.meta.get('provenance', {}).get('data', {})
            unseen = set(data.get('test_speakers', []))
            if not test_speakers <= unseen:
                raise ValueError(f'teacher {artifact} trained on speakers this run tests on: '
                                 f'{sorted(test_speakers - unseen)}')
            if validation_speakers and set(data.get('validation_speakers', [])) != validation_speakers:
                raise ValueError(f'teacher {artifact} validated on other speakers than the student, so it '
                                 f'may have trained on the clips that choose the student\'s epoch')

    def targets(self, mfcc: torch.Tensor, clips: np.ndarray | None = None, share: float = 1.0,
                partner: np.ndarray | None = None) -> torch.Tensor:
        """The teachers' mean probabilities for a batch of windows of these clips, softened by the
        temperature. Mixed windows (share of each, its partner in the batch) mix the clip probabilities too."""
        members = []
        if self.ensemble:
            members.append(self.ensemble.predict_features(np.ascontiguousarray(mfcc.detach().cpu().numpy())))
        if self.clip_probabilities is not None:
            if clips is None:
                raise ValueError('a clip teacher needs the clips of the batch')
            own = self.clip_probabilities[np.asarray(clips)]
            if partner is not None:     # the mixup partners, possibly a tensor on the training device
                partner = partner.cpu().numpy() if isinstance(partner, torch.Tensor) else np.asarray(partner)
                own = share * own + (1 - share) * own[partner]
            members.append(own)
        probabilities = np.mean(members, axis=0)
        softened = torch.from_numpy(np.log(np.maximum(probabilities, 1e-8)) / self.temperature)
        return torch.softmax(softened, dim=-1).to(mfcc.device)

    def loss(self, student_logits: torch.Tensor, targets: torch.Tensor,
             allowed: torch.Tensor | None = None) -> torch.Tensor:
        """KL divergence of the softened student from the softened teachers, scaled by T^2 so its
        gradients keep their size whatever the temperature. allowed: (batch, classes) booleans; both
        distributions then cover each window's allowed classes only, the teachers' renormalised over them."""
        scaled = student_logits / self.temperature
        if allowed is None:
            log_student = functional.log_softmax(scaled, dim=-1)
        else:
            targets = targets * allowed
            targets = targets / targets.sum(dim=-1, keepdim=True).clamp_min(1e-12)
            log_student = allowed_log_softmax(scaled, allowed)
        return functional.kl_div(log_student, targets, reduction='batchmean') * self.temperature ** 2
