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


class Teacher:
    """Trained artifacts averaged, checked to share the student's labels and features and to have seen
    none of the speakers the student is tested or validated on."""

    def __init__(self, artifacts: list[str], labels: list[str], features: FeatureConfig,
                 test_speakers: set[str], validation_speakers: set[str], temperature: float):
        if temperature <= 0:
            raise ValueError(f'training.distill_temperature must be positive, got {temperature}')
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
            if set(data.get('validation_speakers', [])) != validation_speakers:
                raise ValueError(f'teacher {artifact} validated on other speakers than the student, so it '
                                 f'may have trained on the clips that choose the student\'s epoch')
        self.temperature = temperature

    def targets(self, mfcc: torch.Tensor) -> torch.Tensor:
        """The teachers' mean probabilities for a batch, softened by the temperature."""
        probabilities = self.ensemble.predict_features(np.ascontiguousarray(mfcc.detach().cpu().numpy()))
        softened = torch.from_numpy(np.log(np.maximum(probabilities, 1e-8)) / self.temperature)
        return torch.softmax(softened, dim=-1).to(mfcc.device)

    def loss(self, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """KL divergence of the softened student from the softened teachers, scaled by T^2 so its
        gradients keep their size whatever the temperature."""
        log_student = functional.log_softmax(student_logits / self.temperature, dim=-1)
        return functional.kl_div(log_student, targets, reduction='batchmean') * self.temperature ** 2
