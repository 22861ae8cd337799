"""Train / validation / test splits. Speaker-independent by default: a speaker's clips never
appear on two sides. The paper's random clip-level k-fold exists only for comparison."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from .datasets import Clip

MIN_SPEAKERS_FOR_SPEAKER_VALIDATION = 4


@dataclass
class Split:
    name: str
    train: list[Clip]
    validation: list[Clip]
    test: list[Clip]


def speaker_folds(clips: list[Clip], folds: int, seed: int = 0) -> list[list[str]]:
    """Partition speaker keys into folds, every corpus spread over the folds as evenly as it allows."""
    by_dataset = defaultdict(set)
    for clip in clips:
        by_dataset[clip.dataset].add(clip.speaker_key)
    rng = np.random.default_rng(seed)
    assignment: list[list[str]] = [[] for _ in range(folds)]
    offset = 0
    for dataset in sorted(by_dataset):
        speakers = sorted(by_dataset[dataset])
        rng.shuffle(speakers)
        for index, speaker in enumerate(speakers):
            assignment[(index + offset) % folds].append(speaker)
        offset += len(speakers)
    return assignment


def carve_validation(train: list[Clip], fraction: float, seed: int,
                     min_speakers: int = MIN_SPEAKERS_FOR_SPEAKER_VALIDATION) -> tuple[list[Clip], list[Clip]]:
    """Validation from the training side only: whole speakers of corpora with at least min_speakers
    of them there, otherwise a stratified share of that corpus's clips. Corpora below the default
    MIN_SPEAKERS_FOR_SPEAKER_VALIDATION draw their speakers apart, so the others' carve stays the default's."""
    rng = np.random.default_rng(seed + 1)
    below_default = np.random.default_rng([seed + 1, 1])
    keep, validation = [], []
    by_dataset = defaultdict(list)
    for clip in train:
        by_dataset[clip.dataset].append(clip)
    for dataset in sorted(by_dataset):
        clips = by_dataset[dataset]
        speakers = sorted({c.speaker_key for c in clips})
        if len(speakers) >= MIN_SPEAKERS_FOR_SPEAKER_VALIDATION:
            held = held_speakers(speakers, fraction, rng)
        else:
            held = held_speakers(speakers, fraction, below_default) if len(speakers) >= min_speakers else None
            by_label = defaultdict(list)
            for clip in clips:
                by_label[clip.emotion].append(clip)
            for label in sorted(by_label):     # drawn even when speakers are held, to keep rng's sequence
                group = by_label[label]
                order = rng.permutation(len(group))
                cut = max(1, round(fraction * len(group)))
                if held is None:
                    validation += [group[i] for i in order[:cut]]
                    keep += [group[i] for i in order[cut:]]
        if held is not None:
            for clip in clips:
                (validation if clip.speaker_key in held else keep).append(clip)
    return keep, validation


def held_speakers(speakers: list[str], fraction: float, rng) -> set[str]:
    count = max(1, round(fraction * len(speakers)))
    return set(rng.choice(speakers, size=count, replace=False))


def make_splits(clips: list[Clip], protocol: str, folds: int, validation_fraction: float, seed: int = 0,
                min_validation_speakers: int = MIN_SPEAKERS_FOR_SPEAKER_VALIDATION,
                validation_into_training: bool = False) -> list[Split]:
    """The protocol's splits; validation_into_training: the clips carved for validation train too,
    leaving none to validate on (a refit for an epoch count chosen before), the test side unchanged."""
    splits = protocol_splits(clips, protocol, folds, validation_fraction, seed, min_validation_speakers)
    if validation_into_training:
        return [Split(s.name, s.train + s.validation, [], s.test) for s in splits]
    return splits


def protocol_splits(clips: list[Clip], protocol: str, folds: int, validation_fraction: float, seed: int,
                    min_validation_speakers: int) -> list[Split]:
    if protocol == 'speaker_kfold':
        splits = []
        for index, test_speakers in enumerate(speaker_folds(clips, folds, seed)):
            held = set(test_speakers)
            train = [c for c in clips if c.speaker_key not in held]
            test = [c for c in clips if c.speaker_key in held]
            train, validation = carve_validation(train, validation_fraction, seed + index, min_validation_speakers)
            splits.append(Split(f'fold{index}', train, validation, test))
        return splits
    if protocol == 'paper_random_kfold':
        labels = [c.emotion for c in clips]
        folder = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return [Split(f'fold{index}', [clips[i] for i in train_idx], [], [clips[i] for i in test_idx])
                for index, (train_idx, test_idx) in enumerate(folder.split(np.zeros(len(clips)), labels))]
    if protocol == 'all_speakers':
        train, validation = carve_validation(list(clips), validation_fraction, seed, min_validation_speakers)
        return [Split('all', train, validation, [])]
    raise ValueError(f'unknown split protocol {protocol!r}')
