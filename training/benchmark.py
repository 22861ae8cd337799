"""The speaker-independent benchmark: every corpus in the data folder, every speaker tested once.

    python -m training.benchmark run [--only ROW ...] [--jobs 2]   # train / fit and score rows
    python -m training.benchmark report [--write]   # the tables (docs/results.md, README.md) from docs/benchmark/
    python -m training.benchmark commands [--only ROW ...]          # the exact command behind each row
    python -m training.benchmark final --only ROW                   # a network row's recipe on every speaker
    python -m training.benchmark validate [--only ROW ...]          # add validation figures to stored rows
    python -m training.benchmark rescore --only ROW --spectral-mix float16   # re-export folds, score again
    python -m training.benchmark stream-prior --only ROW            # validation node view per stream prior
                                                                    # (and per fusion weight, for fused rows)
    python -m training.benchmark utterances --only ROW [--side validation] [--stream-prior S]
                                                                    # speakers as emotion/utterance publishes
                                                                    # them, through the node's pipeline
    python -m training.benchmark lone-calls --only ROW [--side validation] [--lone-weights W ...]
                                                                    # clips as lone predict calls, no stream
    python -m training.benchmark keep --only ROW                    # store a row's fold (and final) models in git

Folds: speakers of all corpora split into FOLDS groups at once (training.splits.speaker_folds), so
EMOVO and nEMO are leave-one-speaker-out, RAVDESS is tested five actors a fold and TESS one speaker in
each of two folds. A network's validation set is carved from its training side; the test speakers
choose nothing (no epoch, early stop, recipe or default). Clips are scored the node's way (3 s
windows every 0.5 s, probabilities averaged; ser_models.windowing.predict_clips on the exported
ONNX), and the argmax runs over the corpus's own classes (RAVDESS has no disgust here, so a network
cannot lose a RAVDESS clip to a class that corpus lacks). Classical rows score whole-clip features
with the same restricted argmax. Each row's per-fold, per-corpus UAR and confusion are kept in
docs/benchmark/ROW.json, so the report is regenerated without retraining; rows that others build on
(teachers, fused rows' networks) keep their fold models in docs/benchmark/folds/ROW/, so those run on a
fresh checkout too.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets import Clip, labels_present, load_clips
from .metrics import classification_metrics
from .splits import MIN_SPEAKERS_FOR_SPEAKER_VALIDATION, Split, make_splits

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / 'shared' / 'data'
RUNS = REPO / 'runs' / 'benchmark'
FINAL = REPO / 'runs' / 'final'
FEATURE_CACHE = RUNS / 'features'    # classical features of every clip, shared by rows and clip teachers
RESULTS = REPO / 'docs' / 'benchmark'
KEPT = RESULTS / 'folds'   # fold models of rows others build on, kept with the results
KEPT_FILES = ('model.json', 'model.onnx', 'model.safetensors')   # what ser_models.load reads of a network
CORPORA = ('emovo', 'ravdess', 'tess', 'nemo')
FOLDS = 4
SEED = 0
VALIDATION_FRACTION = 0.15
NETWORK_EPOCHS = 20     # at most (early stop as the recipe says): what two cores allow for every row
BEGIN, END = '<!-- benchmark:begin -->', '<!-- benchmark:end -->'
HEADLINE_BEGIN, HEADLINE_END = '<!-- headline:begin -->', '<!-- headline:end -->'
# The node's default model first
SHIPPED = ('timnet_egemaps', 'timnet', 'lmu_egemaps', 'lmu', 'cktim_egemaps', 'cktim')
FLOOR = 'svm_mfcc'
# A stream that holds one emotion only: each test speaker's statistics from their clips of one emotion.
SKEWED = ('neutral', 'angry')
# Speaker-normalised networks as the node runs them: the training prior alone (a voice not heard
# yet), and a running per-speaker stream statistic over the speaker's clips played in random order
# or grouped by emotion (a slowly adapting normaliser's worst case).
ONLINE = {'prior': 'training prior only', 'shuffled': 'node stream, clips in random order',
          'by_emotion': 'node stream, clips grouped by emotion'}
# How many seconds of speech a stream's prior (the training speakers' statistics) is worth; `stream-prior`
# scores each on the folds' validation clips as the node hears them, the one with the highest mean ships
# with the recipe's weights, and a 'stream' row reports that choice on the test speakers.
STREAM_PRIORS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
# The classifier's share of a fused row's probabilities; `stream-prior` on a fused row scores each with
# each prior on the validation clips as the node hears them.
FUSION_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
# The stream orders `stream-prior` hears validation clips in, and the suffix of the keys they are stored
# under ('stream_prior', 'fusion_choice'; '..._by_emotion').
CHOICE_ORDERS = {'shuffled': '', 'by_emotion': '_by_emotion'}
CHOICE_TABLES = ('stream_prior', 'fusion_choice')


@dataclass(frozen=True)
class Row:
    group: str
    description: str
    kind: str    # 'classical', 'network', 'ensemble' (of network rows) or 'stream' (a network row's
                 # fold models served otherwise: streams starting from a prior worth
                 # settings['stream_prior_seconds'], windows also heard at settings['test_time_speeds'])
    settings: dict = field(default_factory=dict)


CLASSICAL = 'Classical baselines (whole-clip features)'
FUSIONS = 'A network and a classical model together (offline: the node serves networks only)'
NETWORKS = 'Networks (node windowing, ONNX)'
# Speed perturbation on 80 % of training windows over 0.85-1.15 (the default is 30 % over 0.9-1.1).
STRONG_SPEED = ['augment.speed_prob=0.8', 'augment.speed_range=[0.85,1.15]']
CKTIM3_SPEAKERNORM = ['features.normalize=speaker', 'model.n_tab=3']
TIMNET_V3 = ['features.normalize=speaker', 'training.epochs=40', *STRONG_SPEED]    # timnet-ser-v3's recipe
TIMNET_PITCH = [*TIMNET_V3, 'features.pitch=true']
CKTIM_PITCH = [*CKTIM3_SPEAKERNORM, 'training.epochs=36', *STRONG_SPEED, 'features.pitch=true']
LMU_SMALL_SPEAKERNORM = ['features.normalize=speaker', 'model.order=32', 'model.hidden_size=96']
LMU_PITCH_EMA = [*LMU_SMALL_SPEAKERNORM, *STRONG_SPEED, 'features.pitch=true', 'training.weight_average_decay=0.995']
TIMNET_V4 = ('TIM-Net, MFCCs standardised per speaker, 40 epochs at most, speed perturbation, F0 and voicing '
             'channels, and half the loss from the temperature-2 probabilities of the LMU 40-epoch row\'s model of '
             'the same speakers')
LMU_TEACHER = 'lmu_small_speakernorm_speed_pitch_ema_40'    # the LMU row the v5 TIM-Net and CkTIM learn from
TIMNET_V4_TRAINING = {'config': 'config/train/timnet.yaml', 'overrides': TIMNET_PITCH, 'teachers': [LMU_TEACHER]}
# Half the training windows standardised as a stream's statistics stand early on (augment.partial_speaker_prob).
PARTIAL_SPEAKER = ('half its training windows standardised as a stream\'s statistics stand early on: the 10 s stream '
                   'prior plus their own clip and up to 3 more of their speaker\'s, instead of all of them')
TIMNET_PARTIAL = f'TIM-Net as timnet_pitch_distilled_lmu (timnet-ser-v5\'s recipe), {PARTIAL_SPEAKER}'
TIMNET_V6 = 'TIM-Net as timnet_pitch_distilled_lmu_partial (timnet-ser-v6\'s recipe)'

CKTIM_DISTILLED = ('CkTIM, 3 TABs, MFCCs standardised per speaker, speed perturbation, 36 epochs at most, F0 and '
                   'voicing channels, and half the loss from the temperature-2 probabilities of the LMU 40-epoch '
                   'row\'s model of the same speakers')
CKTIM_V5_TRAINING = {'config': 'config/train/cktim.yaml', 'overrides': CKTIM_PITCH, 'teachers': [LMU_TEACHER]}
CKTIM_MASKED = ('CkTIM as cktim3_pitch_distilled_lmu (cktim-ser-v5\'s recipe), every kernel times a causal '
                'Gaussian over the lag with a learned width (FlexConv), starting near 2 frames at the input and 4, '
                '8 and 15 frames at TAB levels 0-2 instead of the whole window')
CKTIM_MASKED_TRAINING = {**CKTIM_V5_TRAINING, 'overrides': [*CKTIM_PITCH, 'model.kernel_mask=true']}
CKTIM_MASKED_PARTIAL = f'CkTIM as cktim3_pitch_distilled_lmu_masked (cktim-ser-v6\'s recipe), {PARTIAL_SPEAKER}'
CKTIM5 = ('CkTIM as cktim3_pitch_distilled_lmu_masked_partial (cktim-ser-v7\'s recipe), 5 TABs instead of 3 (kernel '
          'masks starting near 4, 8, 15, 30 and 60 frames at levels 0-4)')
LMU_V7 = ('LMU, order 32, hidden 96, MFCCs standardised per speaker, speed perturbation, F0 and voicing channels, a '
          'moving average of the weights (decay 0.995), 40 epochs at most')
LMU_DISTILLED = (f'{LMU_V7}, and half the loss from the temperature-2 probabilities of the TIM-Net row '
                 'timnet_pitch_distilled_lmu\'s model of the same speakers')
LMU_V9_TRAINING = {'config': 'config/train/lmu.yaml', 'overrides': [*LMU_PITCH_EMA, 'training.epochs=40'],
                   'teachers': ['timnet_pitch_distilled_lmu']}


def with_overrides(training: dict, *overrides: str) -> dict:
    """A row's training settings with more overrides after its own."""
    return {**training, 'overrides': [*training['overrides'], *overrides]}


def with_partial_speaker(training: dict) -> dict:
    """A row's training settings with PARTIAL_SPEAKER's option added."""
    return with_overrides(training, 'augment.partial_speaker_prob=0.5')


TIMNET_V6_TRAINING = with_partial_speaker(TIMNET_V4_TRAINING)
CKTIM_V7_TRAINING = with_partial_speaker(CKTIM_MASKED_TRAINING)
CKTIM_V8_TRAINING = with_overrides(CKTIM_V7_TRAINING, 'model.n_tab=5')
# Validation from whole speakers of every corpus with three or more on a fold's training side: EMOVO and
# nEMO give one of their three, as RAVDESS gives two of its fifteen (the default asks four or more).
SPEAKER_VALIDATION = 'split.min_validation_speakers=3'
SPEAKER_VALIDATION_TEXT = ('validated on whole unseen speakers of EMOVO and nEMO too (one of their three training '
                           'speakers a fold), not on clips of training speakers')
CLASSICAL_VALIDATION_SPEAKERS = int(SPEAKER_VALIDATION.split('=')[1])
# Fused rows' streams start from the training statistics worth 10 s, as their networks' fold models do.
FUSED_STREAM_PRIOR = 10.0
TEST_TIME_SPEEDS = [0.9, 1.0, 1.1]    # inside the 0.85-1.15 that STRONG_SPEED trains on


# Virtual speakers (augment.virtual_speaker_*): each training speaker also played 0.9 and 1.1 times as
# fast, Kaldi's three-way speed perturbation, each copy standardised with its own statistics.
VIRTUAL_SPEAKERS = ('augment.virtual_speaker_prob=0.5', 'augment.virtual_speaker_speeds=[0.9,1.1]')


# A recipe trained twice: (row name suffix, description suffix, overrides) of its seed-0 and seed-1 draws.
TWO_DRAWS = (('', '', ()), ('_seed1', ', seeded 1 instead of 0: its second draw', ('training.seed=1',)))


def speaker_validated(training: dict, teacher: str) -> dict:
    """A recipe validated as SPEAKER_VALIDATION asks, learning from `teacher`, a row validated so too."""
    return {**with_overrides(training, SPEAKER_VALIDATION), 'teachers': [teacher]}


LMU_TEACHER_SPEAKER_VALIDATION = {'config': 'config/train/lmu.yaml',
                                  'overrides': [*LMU_PITCH_EMA, 'training.epochs=40', SPEAKER_VALIDATION]}
TIMNET_V6_SPEAKER_VALIDATION = speaker_validated(TIMNET_V6_TRAINING, 'lmu_teacher_speaker_validation')
TIMNET_EGEMAPS_TARGETS = with_overrides(TIMNET_V6_TRAINING, 'training.feature_targets=egemaps')


def stream_row(source: str, description: str, seconds: float,
               why: str = 'the prior its validation clips chose as the node hears them') -> Row:
    """A row scoring `source`'s fold models with streams that start from a prior worth `seconds`."""
    return Row(NETWORKS, f'{description}; each node stream starts from the training statistics counted as '
                         f'{seconds:g} s of speech (10 s in {source}), {why}', 'stream',
               {'weights_of': source, 'stream_prior_seconds': seconds})


ROWS = {
    'svm_mfcc': Row(CLASSICAL, '39 MFCC + deltas, mean/std per clip, RBF SVM (C=10)', 'classical',
                    {'features': 'mfcc_stats', 'classifier': 'svm'}),
    'svm_egemaps': Row(CLASSICAL, 'eGeMAPS v02 functionals, RBF SVM (C=10)', 'classical',
                       {'features': 'egemaps', 'classifier': 'svm'}),
    'logreg_egemaps': Row(CLASSICAL, 'eGeMAPS v02 functionals, logistic regression', 'classical',
                          {'features': 'egemaps', 'classifier': 'logreg'}),
    'svm_egemaps_speakernorm': Row(CLASSICAL, 'eGeMAPS, each speaker standardised over its clips, RBF SVM',
                                   'classical', {'features': 'egemaps', 'classifier': 'svm', 'speaker_norm': True}),
    'svm_compare': Row(CLASSICAL, 'ComParE 2016 functionals (6373), RBF SVM (C=10)', 'classical',
                       {'features': 'compare', 'classifier': 'svm'}),
    'svm_compare_speakernorm': Row(CLASSICAL, 'ComParE 2016 functionals, each speaker standardised over its clips, '
                                              'RBF SVM', 'classical',
                                   {'features': 'compare', 'classifier': 'svm', 'speaker_norm': True}),
    'svm_egemaps_mfcc_speakernorm': Row(CLASSICAL, 'eGeMAPS functionals and MFCC statistics side by side, each '
                                                   'speaker standardised over its clips, RBF SVM', 'classical',
                                        {'features': 'egemaps+mfcc_stats', 'classifier': 'svm', 'speaker_norm': True}),
    'svm_mfcc_speakernorm': Row(CLASSICAL, 'MFCC statistics, each speaker standardised over its clips, RBF SVM',
                                'classical', {'features': 'mfcc_stats', 'classifier': 'svm', 'speaker_norm': True}),
    'timnet': Row(NETWORKS, 'TIM-Net, 8 TABs, v1 recipe (config/train/timnet.yaml)',
                  'network', {'config': 'config/train/timnet.yaml'}),
    'lmu': Row(NETWORKS, 'LMU, v1 recipe (config/train/lmu.yaml)', 'network',
               {'config': 'config/train/lmu.yaml'}),
    'cktim': Row(NETWORKS, 'CkTIM, 8 TABs, v1 recipe (config/train/cktim.yaml)', 'network',
                 {'config': 'config/train/cktim.yaml'}),
    'timnet_speakernorm': Row(NETWORKS, 'TIM-Net, MFCCs standardised per speaker instead of per window '
                              '(gain augmentation now live)', 'network',
                              {'config': 'config/train/timnet.yaml', 'overrides': ['features.normalize=speaker']}),
    'lmu_speakernorm': Row(NETWORKS, 'LMU, MFCCs standardised per speaker', 'network',
                           {'config': 'config/train/lmu.yaml', 'overrides': ['features.normalize=speaker']}),
    'cktim3_speakernorm': Row(NETWORKS, 'CkTIM, 3 TABs, MFCCs standardised per speaker, 12 epochs at most', 'network',
                              {'config': 'config/train/cktim.yaml',
                               'overrides': [*CKTIM3_SPEAKERNORM, 'training.epochs=12']}),
    'lmu_small_speakernorm': Row(NETWORKS, 'LMU, order 32, hidden 96, MFCCs standardised per speaker', 'network',
                                 {'config': 'config/train/lmu.yaml',
                                  'overrides': [*LMU_SMALL_SPEAKERNORM]}),
    'timnet_long': Row(NETWORKS, 'TIM-Net, v1 recipe, 40 epochs at most', 'network',
                       {'config': 'config/train/timnet.yaml', 'overrides': ['training.epochs=40']}),
    'timnet_mixup': Row(NETWORKS, 'TIM-Net, v1 recipe + mixup (Beta(0.4, 0.4))', 'network',
                        {'config': 'config/train/timnet.yaml', 'overrides': ['training.mixup=0.4']}),
    'timnet_speaker_adversary': Row(NETWORKS, 'TIM-Net, v1 recipe + gradient-reversal speaker adversary '
                                    '(weight 0.3)', 'network',
                                    {'config': 'config/train/timnet.yaml',
                                     'overrides': ['training.speaker_adversarial=0.3']}),
    'timnet_speakernorm_long': Row(NETWORKS, 'TIM-Net, MFCCs standardised per speaker, 40 epochs at most', 'network',
                                   {'config': 'config/train/timnet.yaml',
                                    'overrides': ['features.normalize=speaker', 'training.epochs=40']}),
    'timnet_speakernorm_80': Row(NETWORKS, 'TIM-Net, MFCCs standardised per speaker, 80 epochs at most', 'network',
                                 {'config': 'config/train/timnet.yaml',
                                  'overrides': ['features.normalize=speaker', 'training.epochs=80'],
                                  'continues': 'timnet_speakernorm_long'}),
    'timnet_speakernorm_speed': Row(NETWORKS, 'TIM-Net, MFCCs standardised per speaker, 40 epochs at most, speed '
                                    'perturbation on 80 % of windows (0.85-1.15) instead of 30 % (0.9-1.1)', 'network',
                                    {'config': 'config/train/timnet.yaml', 'overrides': TIMNET_V3}),
    'timnet_speakernorm_speed_pitch': Row(NETWORKS, 'TIM-Net, MFCCs standardised per speaker, 40 epochs at most, '
                                          'speed perturbation as above, and F0 and voicing channels after the '
                                          'MFCCs', 'network',
                                          {'config': 'config/train/timnet.yaml',
                                           'overrides': TIMNET_PITCH}),
    'timnet_speakernorm_speed_ema': Row(NETWORKS, 'TIM-Net as timnet_speakernorm_speed (the shipped recipe), '
                                        'validating and keeping a moving average of the weights (decay 0.995 a '
                                        'step, about 4 epochs)', 'network',
                                        {'config': 'config/train/timnet.yaml',
                                         'overrides': [*TIMNET_V3, 'training.weight_average_decay=0.995']}),
    'timnet_speakernorm_speed_cosine': Row(NETWORKS, 'TIM-Net as timnet_speakernorm_speed (the shipped recipe), '
                                           'learning rate on a cosine from 0.005 to 1e-5 over the 40 epochs instead '
                                           'of plateau steps', 'network',
                                           {'config': 'config/train/timnet.yaml',
                                            'overrides': [*TIMNET_V3, 'training.scheduler=cosine']}),
    'timnet_speakernorm_speed_loud': Row(NETWORKS, 'TIM-Net as timnet_speakernorm_speed (the shipped recipe), '
                                         'speaker statistics over loud frames only (within 30 dB of the loudest), '
                                         'so pauses and padding do not count', 'network',
                                         {'config': 'config/train/timnet.yaml',
                                          'overrides': [*TIMNET_V3, 'features.speaker_frames=loud']}),
    'timnet_pitch_distilled_lmu': Row(NETWORKS, TIMNET_V4, 'network', TIMNET_V4_TRAINING),
    'timnet_pitch_distilled_lmu_prior05': stream_row('timnet_pitch_distilled_lmu', TIMNET_V4, 0.5),
    'timnet_pitch_distilled_pair': Row(NETWORKS, 'TIM-Net as timnet_pitch_distilled_lmu, learning instead from the '
                                       'averaged probabilities of that row\'s model and the LMU 40-epoch row\'s model '
                                       'of its fold', 'network',
                                       {'config': 'config/train/timnet.yaml',
                                        'overrides': TIMNET_PITCH,
                                        'teachers': ['timnet_pitch_distilled_lmu', LMU_TEACHER]}),
    'timnet_pitch_distilled_lmu_partial': Row(NETWORKS, TIMNET_PARTIAL, 'network',
                                              TIMNET_V6_TRAINING),
    'timnet_pitch_distilled_lmu_partial_prior1': stream_row('timnet_pitch_distilled_lmu_partial', TIMNET_PARTIAL, 1.0),
    'timnet_partial_distilled_lmu_cktim': Row(NETWORKS, f'{TIMNET_V6}, learning instead from the averaged '
                                              'probabilities of the LMU 40-epoch row\'s and the masked CkTIM row '
                                              'cktim3_pitch_distilled_lmu_masked\'s models of its fold', 'network',
                                              {**TIMNET_V6_TRAINING,
                                               'teachers': [LMU_TEACHER, 'cktim3_pitch_distilled_lmu_masked']}),
    'timnet_partial_dropout03': Row(NETWORKS, f'{TIMNET_V6}, channel dropout 0.3 in every Temporal-Aware Block '
                                    'instead of 0.1', 'network',
                                    with_overrides(TIMNET_V6_TRAINING, 'model.dropout=0.3')),
    'timnet_partial_distill08': Row(NETWORKS, f'{TIMNET_V6}, 0.8 of the loss from its LMU teacher\'s temperature-2 '
                                    'probabilities instead of half', 'network',
                                    with_overrides(TIMNET_V6_TRAINING, 'training.distill_weight=0.8')),
    'timnet_partial_distill_t4': Row(NETWORKS, f'{TIMNET_V6}, its LMU teacher\'s probabilities softened at '
                                     'temperature 4 instead of 2', 'network',
                                     with_overrides(TIMNET_V6_TRAINING, 'training.distill_temperature=4')),
    'timnet_partial_adamw': Row(NETWORKS, f'{TIMNET_V6}, decoupled weight decay 0.05 (AdamW; Adam without decay '
                                'before)', 'network',
                                with_overrides(TIMNET_V6_TRAINING, 'training.optimizer=adamw',
                                               'training.weight_decay=0.05')),
    'timnet_partial_filters64': Row(NETWORKS, f'{TIMNET_V6}, 64 filters in every convolution instead of 39 (274k '
                                    'parameters instead of 105k)', 'network',
                                    with_overrides(TIMNET_V6_TRAINING, 'model.filters=64')),
    'timnet_partial_egemaps_teacher': Row(NETWORKS, f'{TIMNET_V6}, its LMU teacher\'s probabilities averaged with '
                                          'those of an eGeMAPS SVM (speaker-standardised, as svm_egemaps_speakernorm) '
                                          'fitted without the clip\'s speaker group, so the targets say how a clip '
                                          'sounds to a model that never heard its speaker', 'network',
                                          with_overrides(TIMNET_V6_TRAINING, 'training.clip_teacher=egemaps')),
    'timnet_partial_class_balanced': Row(NETWORKS, f'{TIMNET_V6}, training draws every label equally often (each '
                                         'corpus equally often within a label) instead of every corpus, so EMOVO\'s '
                                         'disgust, which no other corpus has, is 1/7 of the windows instead of 1/28',
                                         'network', with_overrides(TIMNET_V6_TRAINING, 'data.balance_classes=true')),
    'timnet_partial_no_gain': Row(NETWORKS, f'{TIMNET_V6}, no random gain on training windows (it drew -6 to +6 dB, '
                                  'moving a window\'s loudness against its speaker\'s statistics, a cue to '
                                  'arousal, while a stream\'s own statistics already remove a fixed gain)', 'network',
                                  with_overrides(TIMNET_V6_TRAINING, 'augment.gain_db=[0.0,0.0]')),
    'timnet_partial_speed_keeps_f0': Row(NETWORKS, f'{TIMNET_V6}, a sped-up training window\'s F0 channel shifted '
                                         'back by the speed\'s semitones, so speed perturbation varies tempo and '
                                         'vocal tract but not pitch against the speaker\'s statistics', 'network',
                                         with_overrides(TIMNET_V6_TRAINING, 'augment.speed_keeps_f0=true')),
    'timnet_partial_speed_keeps_f0_seed1': Row(NETWORKS, f'{TIMNET_V6}, F0 kept through speed perturbation as '
                                               'timnet_partial_speed_keeps_f0, seeded 1 instead of 0: its second draw',
                                               'network', with_overrides(TIMNET_V6_TRAINING,
                                                                         'augment.speed_keeps_f0=true',
                                                                         'training.seed=1')),
    'timnet_partial_time_masks4': Row(NETWORKS, f'{TIMNET_V6}, four SpecAugment time masks (up to 12 frames, '
                                      '0.3 s, each) on every training window instead of two', 'network',
                                      with_overrides(TIMNET_V6_TRAINING, 'augment.spec_time_masks=4')),
    'timnet_partial_time_masks4_seed1': Row(NETWORKS, f'{TIMNET_V6}, four SpecAugment time masks as '
                                            'timnet_partial_time_masks4, seeded 1 instead of 0: its second draw',
                                            'network', with_overrides(TIMNET_V6_TRAINING, 'augment.spec_time_masks=4',
                                                                      'training.seed=1')),
    'timnet_partial_egemaps_targets': Row(NETWORKS, f'{TIMNET_V6}, its embedding also regressing each training '
                                          'clip\'s eGeMAPS functionals, standardised over its speaker\'s clips (a '
                                          'linear head, not exported; 0.2 times their mean squared error added to '
                                          'the loss)', 'network', TIMNET_EGEMAPS_TARGETS),
    'timnet_partial_egemaps_targets_seed1': Row(NETWORKS, f'{TIMNET_V6}, eGeMAPS targets as '
                                                'timnet_partial_egemaps_targets, seeded 1 instead of 0: its second '
                                                'draw',
                                                'network', with_overrides(TIMNET_EGEMAPS_TARGETS, 'training.seed=1')),
    'timnet_partial_rerun': Row(NETWORKS, f'{TIMNET_V6} again, the same command and seed (training is not '
                                'bit-reproducible): how far a row moves by chance', 'network', TIMNET_V6_TRAINING),
    'timnet_partial_seed1': Row(NETWORKS, f'{TIMNET_V6} again, seeded 1 instead of 0 (weights, window draws and '
                                'augmentation; the same speakers in every fold): how far a row moves by chance',
                                'network', with_overrides(TIMNET_V6_TRAINING, 'training.seed=1')),
    **{f'{source}_speeds': Row(NETWORKS, f'{TIMNET_V6}, {source}\'s models (seed {seed}), each window also heard '
                                         'played 0.9 and 1.1 times as fast (test-time speed copies), the three '
                                         'probabilities averaged', 'stream',
                               {'weights_of': source, 'test_time_speeds': TEST_TIME_SPEEDS})
       for source, seed in (('timnet_partial_rerun', 0), ('timnet_partial_seed1', 1))},
    'lmu_teacher_speaker_validation': Row(NETWORKS, f'{LMU_V7}, {SPEAKER_VALIDATION_TEXT}', 'network',
                                          LMU_TEACHER_SPEAKER_VALIDATION),
    'lmu_teacher_loud_statistics': Row(NETWORKS, f'{LMU_V7}, validated as lmu_teacher_speaker_validation, speaker '
                                               'statistics over loud frames only (within 30 dB of the loudest in '
                                               'their window): the teacher of timnet_v6_loud_statistics', 'network',
                                         with_overrides(LMU_TEACHER_SPEAKER_VALIDATION,
                                                        'features.speaker_frames=loud')),
    'timnet_v6_speaker_validation': Row(NETWORKS, f'{TIMNET_V6}, {SPEAKER_VALIDATION_TEXT}, its LMU teacher '
                                        'lmu_teacher_speaker_validation validated so too', 'network',
                                        TIMNET_V6_SPEAKER_VALIDATION),
    'timnet_v6_speaker_validation_seed1': Row(NETWORKS, f'{TIMNET_V6}, validated as timnet_v6_speaker_validation '
                                              'and learning from the same teacher, seeded 1 instead of 0: its second '
                                              'draw', 'network',
                                              with_overrides(TIMNET_V6_SPEAKER_VALIDATION, 'training.seed=1')),
    **{f'timnet_v6_corpus_classes{suffix}': Row(
        NETWORKS, f'{TIMNET_V6}, validated as timnet_v6_speaker_validation and learning from the same teacher row, '
                  'each window\'s loss over its corpus\'s classes only (a RAVDESS, TESS or nEMO window neither '
                  'learns disgust away nor smooths into it; its teacher\'s targets renormalised over them)' + text,
        'network', with_overrides(TIMNET_V6_SPEAKER_VALIDATION, 'training.corpus_classes_only=true', *seed))
       for suffix, text, seed in TWO_DRAWS},
    **{f'timnet_v6_virtual_speakers{suffix}': Row(
        NETWORKS, f'{TIMNET_V6}, validated as timnet_v6_speaker_validation and learning from the same teacher row, '
                  'half its training windows from virtual speakers: a speaker\'s clips played 0.9 or 1.1 times as '
                  'fast, standardised with that virtual speaker\'s own statistics (all its clips played so), so '
                  'the network meets three times the voices' + text,
        'network', with_overrides(TIMNET_V6_SPEAKER_VALIDATION, *VIRTUAL_SPEAKERS, *seed))
       for suffix, text, seed in TWO_DRAWS},
    **{f'timnet_v6_loud_statistics{suffix}': Row(
        NETWORKS, f'{TIMNET_V6}, validated as timnet_v6_speaker_validation, speaker statistics (training\'s, the '
                  'prior and a stream\'s) over loud frames only (within 30 dB of the loudest in their window), so '
                  'pauses between utterances do not move them, learning from lmu_teacher_loud_statistics, which '
                  'counts them so too' + text,
        'network', with_overrides(speaker_validated(TIMNET_V6_TRAINING, 'lmu_teacher_loud_statistics'),
                                  'features.speaker_frames=loud', *seed))
       for suffix, text, seed in TWO_DRAWS},
    **{f'timnet_v6_stream_pauses{suffix}': Row(
        NETWORKS, f'{TIMNET_V6}, validated as timnet_v6_speaker_validation and learning from the same teacher row, '
                  'half its training windows cut from their clip followed by 1.5 s of silence and standardised '
                  'with statistics over its speaker\'s clips each so followed (partial ones as before), as a '
                  'stream counts the pause after each utterance' + text,
        'network', with_overrides(TIMNET_V6_SPEAKER_VALIDATION, 'augment.stream_pause_prob=0.5', *seed))
       for suffix, text, seed in TWO_DRAWS},
    **{f'{source}_speeds': Row(NETWORKS, f'{TIMNET_V6}, {source}\'s models, each window also heard played 0.9 and '
                                         '1.1 times as fast', 'stream',
                               {'weights_of': source, 'test_time_speeds': TEST_TIME_SPEEDS})
       for source in ('timnet_v6_speaker_validation', 'timnet_v6_speaker_validation_seed1')},
    'timnet_pitch_redistilled': Row(NETWORKS, 'TIM-Net as timnet_pitch_distilled_lmu, learning instead from the LMU '
                                    'row lmu_pitch_ema_distilled_timnet\'s model of its fold, itself taught by '
                                    'timnet_pitch_distilled_lmu\'s (lmu-ser-v9\'s weights in the final run)',
                                    'network',
                                    {'config': 'config/train/timnet.yaml', 'overrides': TIMNET_PITCH,
                                     'teachers': ['lmu_pitch_ema_distilled_timnet']}),
    'lmu_small_speakernorm_speed': Row(NETWORKS, 'LMU, order 32, hidden 96, MFCCs standardised per speaker, '
                                       'speed perturbation as the TIM-Net row above', 'network',
                                       {'config': 'config/train/lmu.yaml',
                                        'overrides': [*LMU_SMALL_SPEAKERNORM, *STRONG_SPEED]}),
    'lmu_small_speakernorm_speed_pitch': Row(NETWORKS, 'LMU, order 32, hidden 96, MFCCs standardised per speaker, '
                                             'speed perturbation as above, and F0 and voicing channels after the '
                                             'MFCCs', 'network',
                                             {'config': 'config/train/lmu.yaml',
                                              'overrides': [*LMU_SMALL_SPEAKERNORM, *STRONG_SPEED,
                                                            'features.pitch=true']}),
    'lmu_small_speakernorm_speed_wide': Row(NETWORKS, 'LMU, order 32, hidden 96, MFCCs standardised per speaker, '
                                            'speed perturbation on 80 % of windows over 0.8-1.2', 'network',
                                            {'config': 'config/train/lmu.yaml',
                                             'overrides': [*LMU_SMALL_SPEAKERNORM, 'augment.speed_prob=0.8',
                                                           'augment.speed_range=[0.8,1.2]']}),
    'lmu_small_speakernorm_speed_vtlp': Row(NETWORKS, 'LMU, order 32, hidden 96, MFCCs standardised per speaker, '
                                            'speed perturbation as above, and VTLP (mel filters warped by '
                                            '0.9-1.1) on half the windows', 'network',
                                            {'config': 'config/train/lmu.yaml',
                                             'overrides': [*LMU_SMALL_SPEAKERNORM, *STRONG_SPEED,
                                                           'augment.vtlp_prob=0.5']}),
    'cktim3_speakernorm_speed': Row(NETWORKS, 'CkTIM, 3 TABs, MFCCs standardised per speaker, 12 epochs at most, '
                                    'speed perturbation as the TIM-Net row above', 'network',
                                    {'config': 'config/train/cktim.yaml',
                                     'overrides': [*CKTIM3_SPEAKERNORM, 'training.epochs=12', *STRONG_SPEED]}),
    'cktim3_speakernorm_speed_24': Row(NETWORKS, 'CkTIM, 3 TABs, MFCCs standardised per speaker, speed perturbation, '
                                       '24 epochs at most', 'network',
                                       {'config': 'config/train/cktim.yaml',
                                        'overrides': [*CKTIM3_SPEAKERNORM, 'training.epochs=24', *STRONG_SPEED],
                                        'continues': 'cktim3_speakernorm_speed'}),
    'cktim3_speakernorm_speed_36': Row(NETWORKS, 'CkTIM, 3 TABs, MFCCs standardised per speaker, speed perturbation, '
                                       '36 epochs at most', 'network',
                                       {'config': 'config/train/cktim.yaml',
                                        'overrides': [*CKTIM3_SPEAKERNORM, 'training.epochs=36', *STRONG_SPEED],
                                        'continues': 'cktim3_speakernorm_speed_24'}),
    'cktim3_w32_speakernorm_speed': Row(NETWORKS, 'CkTIM, 3 TABs, 32 channels (39 above), MFCCs standardised per '
                                        'speaker, speed perturbation, 36 epochs at most', 'network',
                                        {'config': 'config/train/cktim.yaml',
                                         'overrides': [*CKTIM3_SPEAKERNORM, 'model.filters=32', 'training.epochs=36',
                                                       *STRONG_SPEED]}),
    'cktim3_speakernorm_speed_pitch': Row(NETWORKS, 'CkTIM, 3 TABs, MFCCs standardised per speaker, speed '
                                          'perturbation, 36 epochs at most, and F0 and voicing channels after the '
                                          'MFCCs', 'network',
                                          {'config': 'config/train/cktim.yaml', 'overrides': CKTIM_PITCH}),
    'cktim3_pitch_distilled_lmu': Row(NETWORKS, CKTIM_DISTILLED, 'network', CKTIM_V5_TRAINING),
    'cktim3_pitch_distilled_lmu_prior1': stream_row('cktim3_pitch_distilled_lmu', CKTIM_DISTILLED, 1.0),
    'cktim3_pitch_distilled_timnet': Row(NETWORKS, 'CkTIM as cktim3_pitch_distilled_lmu, learning instead from the '
                                         'TIM-Net row timnet_pitch_distilled_lmu\'s model of its fold '
                                         '(timnet-ser-v5\'s weights in the final run)', 'network',
                                         {'config': 'config/train/cktim.yaml', 'overrides': CKTIM_PITCH,
                                          'teachers': ['timnet_pitch_distilled_lmu']}),
    'cktim3_pitch_distilled_lmu_ema': Row(NETWORKS, 'CkTIM as cktim3_pitch_distilled_lmu (cktim-ser-v5\'s recipe), '
                                          'validating and keeping a moving average of the weights (decay 0.995 a '
                                          'step), as the LMU does', 'network',
                                          {**CKTIM_V5_TRAINING,
                                           'overrides': [*CKTIM_PITCH, 'training.weight_average_decay=0.995']}),
    'cktim3_pitch_distilled_lmu_partial': Row(NETWORKS, 'CkTIM as cktim3_pitch_distilled_lmu (cktim-ser-v5\'s '
                                              f'recipe), {PARTIAL_SPEAKER}', 'network',
                                              with_partial_speaker(CKTIM_V5_TRAINING)),
    'cktim3_pitch_distilled_lmu_masked': Row(NETWORKS, CKTIM_MASKED, 'network', CKTIM_MASKED_TRAINING),
    'cktim3_pitch_distilled_lmu_masked_prior05': stream_row('cktim3_pitch_distilled_lmu_masked', CKTIM_MASKED, 0.5),
    'cktim3_pitch_distilled_lmu_masked_partial': Row(NETWORKS, CKTIM_MASKED_PARTIAL, 'network',
                                                     CKTIM_V7_TRAINING),
    'cktim3_pitch_distilled_lmu_masked_partial_prior1': stream_row('cktim3_pitch_distilled_lmu_masked_partial',
                                                                   CKTIM_MASKED_PARTIAL, 1.0),
    'cktim3_masked_partial_distilled_pair': Row(NETWORKS, 'CkTIM as cktim3_pitch_distilled_lmu_masked_partial '
                                                '(cktim-ser-v7\'s recipe), learning instead from the averaged '
                                                'probabilities of the TIM-Net row timnet_pitch_distilled_lmu\'s and '
                                                'the LMU 40-epoch row\'s models of its fold', 'network',
                                                {**CKTIM_V7_TRAINING,
                                                 'teachers': ['timnet_pitch_distilled_lmu', LMU_TEACHER]}),
    'cktim5_pitch_distilled_lmu_masked_partial': Row(NETWORKS, CKTIM5, 'network', CKTIM_V8_TRAINING),
    'cktim5_pitch_distilled_lmu_masked_partial_prior2': stream_row('cktim5_pitch_distilled_lmu_masked_partial',
                                                                   CKTIM5, 2.0),
    'lmu_distilled_pitch': Row(NETWORKS, 'LMU as lmu_small_speakernorm_speed_pitch, also learning (half the loss, '
                               'temperature 2) from the averaged TIM-Net and LMU pitch rows\' models of its fold',
                               'network',
                               {'config': 'config/train/lmu.yaml',
                                'overrides': [*LMU_SMALL_SPEAKERNORM, *STRONG_SPEED, 'features.pitch=true'],
                                'teachers': ['timnet_speakernorm_speed_pitch', 'lmu_small_speakernorm_speed_pitch']}),
    'lmu_small_speakernorm_speed_pitch_ema': Row(NETWORKS, 'LMU as lmu_small_speakernorm_speed_pitch (lmu-ser-v4\'s '
                                                 'recipe), validating and keeping a moving average of the weights '
                                                 '(decay 0.995 a step)', 'network',
                                                 {'config': 'config/train/lmu.yaml', 'overrides': LMU_PITCH_EMA}),
    'lmu_small_speakernorm_speed_pitch_ema_30': Row(NETWORKS, 'LMU, order 32, hidden 96, MFCCs standardised per '
                                                    'speaker, speed perturbation, F0 and voicing channels, a moving '
                                                    'average of the weights (decay 0.995), 30 epochs at most',
                                                    'network',
                                                    {'config': 'config/train/lmu.yaml',
                                                     'overrides': [*LMU_PITCH_EMA, 'training.epochs=30'],
                                                     'continues': 'lmu_small_speakernorm_speed_pitch_ema'}),
    'lmu_small_speakernorm_speed_pitch_ema_40': Row(NETWORKS, LMU_V7, 'network',
                                                    {'config': 'config/train/lmu.yaml',
                                                     'overrides': [*LMU_PITCH_EMA, 'training.epochs=40'],
                                                     'continues': 'lmu_small_speakernorm_speed_pitch_ema_30'}),
    'lmu_small_speakernorm_speed_pitch_ema_40_prior1': stream_row('lmu_small_speakernorm_speed_pitch_ema_40', LMU_V7,
                                                                  1.0),
    # One change to the LMU teacher's recipe: a third LMU layer (hidden 96, as the others).
    'lmu3_pitch_ema_40': Row(NETWORKS, f'{LMU_V7}, 3 LMU layers instead of 2', 'network',
                             {'config': 'config/train/lmu.yaml',
                              'overrides': [*LMU_PITCH_EMA, 'training.epochs=40', 'model.layers=3']}),
    'lmu_pitch_ema_distilled_timnet': Row(NETWORKS, LMU_DISTILLED, 'network', LMU_V9_TRAINING),
    'lmu_pitch_ema_distilled_timnet_prior05': stream_row('lmu_pitch_ema_distilled_timnet', LMU_DISTILLED, 0.5),
    'lmu_pitch_ema_distilled_timnet_partial': Row(NETWORKS, 'LMU as lmu_pitch_ema_distilled_timnet (lmu-ser-v9\'s '
                                                  f'recipe), {PARTIAL_SPEAKER}', 'network',
                                                  with_partial_speaker(LMU_V9_TRAINING)),
    'ensemble_timnet_lmu': Row(NETWORKS, 'Mean probabilities of the 40-epoch speaker-normalised TIM-Net and the '
                               'order-32 speaker-normalised LMU (no training of its own)', 'ensemble',
                               {'members': ['timnet_speakernorm_long', 'lmu_small_speakernorm']}),
    'ensemble_timnet_lmu_pitch': Row(NETWORKS, 'Mean probabilities of the TIM-Net and LMU rows with F0 and voicing '
                                     'channels (no training of its own)', 'ensemble',
                                     {'members': ['timnet_speakernorm_speed_pitch',
                                                  'lmu_small_speakernorm_speed_pitch']}),
    'ensemble_lmu_cktim_masked': Row(NETWORKS, 'Mean probabilities of the LMU 40-epoch row (the v5 TIM-Net\'s and '
                                     'CkTIM\'s teacher) and the masked CkTIM row cktim3_pitch_distilled_lmu_masked '
                                     '(no training of its own)', 'ensemble',
                                     {'members': [LMU_TEACHER, 'cktim3_pitch_distilled_lmu_masked']}),
    'ensemble_shipped_recipes': Row(NETWORKS, 'Mean probabilities of the rows of the three shipped recipes: '
                                    'timnet_pitch_distilled_lmu_partial, lmu_pitch_ema_distilled_timnet and '
                                    'cktim3_pitch_distilled_lmu_masked_partial (no training of its own)', 'ensemble',
                                    {'members': ['timnet_pitch_distilled_lmu_partial', 'lmu_pitch_ema_distilled_timnet',
                                                 'cktim3_pitch_distilled_lmu_masked_partial']}),
    'ensemble_timnet_v6_seeds': Row(NETWORKS, 'Mean probabilities of timnet_partial_rerun and timnet_partial_seed1, '
                                    'timnet-ser-v6\'s recipe trained twice more, seeded 0 and 1 (no training of '
                                    'its own)', 'ensemble',
                                    {'members': ['timnet_partial_rerun', 'timnet_partial_seed1']}),
    'fusion_timnet_rerun_egemaps': Row(FUSIONS, 'Mean probabilities of timnet_partial_rerun\'s fold models '
                                       '(timnet-ser-v6\'s recipe) and the speaker-standardised eGeMAPS SVM of '
                                       'svm_egemaps_speakernorm fitted on the same training clips', 'fusion',
                                       {'weights_of': 'timnet_partial_rerun', 'classical': 'svm_egemaps_speakernorm'}),
    'fusion_timnet_seed1_egemaps': Row(FUSIONS, 'As fusion_timnet_rerun_egemaps with timnet_partial_seed1\'s fold '
                                       'models, the same recipe seeded 1: its second draw', 'fusion',
                                       {'weights_of': 'timnet_partial_seed1', 'classical': 'svm_egemaps_speakernorm'}),
    **{f'fusion_{source}_egemaps': Row(FUSIONS, f'As fusion_timnet_rerun_egemaps with {source}\'s fold models '
                                                '(validated on whole unseen speakers of every corpus but TESS)',
                                       'fusion', {'weights_of': source, 'classical': 'svm_egemaps_speakernorm'})
       for source in ('timnet_v6_speaker_validation', 'timnet_v6_speaker_validation_seed1')},
    **{f'fused_{source}_egemaps': Row(FUSIONS, f'{TIMNET_V6}, {source}\'s fold models, fused window by window '
                                               'with an RBF SVM on each node window\'s eGeMAPS functionals (each '
                                               'speaker standardised, a stream from the training prior on), '
                                               'probabilities averaged: servable by the node', 'fusion',
                                      {'weights_of': source, 'functionals': 'egemaps', 'classifier': 'svm',
                                       'stream_prior_seconds': FUSED_STREAM_PRIOR})
       for source in ('timnet_partial_rerun', 'timnet_partial_seed1', 'timnet_v6_speaker_validation',
                      'timnet_v6_speaker_validation_seed1')},
}
# The stream prior (seconds) and classifier share that the unseen-speaker-carve draws' fused rows chose
# together on their validation clips heard in random order only (`stream-prior`, two draws' mean); shipped
# as timnet_egemaps-ser-v2 and withdrawn before it landed (docs/results.md).
FUSED_CHOICE = (0.5, 0.6)


def chosen_fused_row(source: str) -> Row:
    """fused_<source>_egemaps with both halves' streams from the prior and the classifier's share that
    FUSED_CHOICE holds."""
    seconds, weight = FUSED_CHOICE
    fused = ROWS[f'fused_{source}_egemaps']
    return Row(FUSIONS, f'As fused_{source}_egemaps, both halves\' streams starting from the training statistics '
                        f'counted as {seconds:g} s of speech and the SVM {weight:g} of the fused probabilities '
                        f'({FUSED_STREAM_PRIOR:g} s and 0.5 there), the pair two draws\' validation clips chose as '
                        'the node hears them', 'fusion',
               {**fused.settings, 'stream_prior_seconds': seconds, 'weight': weight})


ROWS.update({f'fused_{source}_egemaps_chosen': chosen_fused_row(source)
             for source in ('timnet_partial_rerun', 'timnet_partial_seed1', 'timnet_v6_speaker_validation',
                            'timnet_v6_speaker_validation_seed1')})
UNSEEN_CARVE_DRAWS = ('timnet_v6_speaker_validation', 'timnet_v6_speaker_validation_seed1')
# The same pairs with each window's functionals from one openSMILE pass over the clip, as a stream computes
# them live (StreamFunctionals), the SVM fitted on such windows too.
ROWS.update({f'fused_{source}_egemaps_one_pass': Row(
    FUSIONS, f'As fused_{source}_egemaps, each window\'s eGeMAPS functionals from one openSMILE pass over its '
             'clip, as a stream computes them live (descriptors near a window\'s edges see the audio beside it), '
             'for the SVM\'s training windows too, instead of one call a window', 'fusion',
    {**ROWS[f'fused_{source}_egemaps'].settings, 'one_pass': 'fitting'}) for source in UNSEEN_CARVE_DRAWS})
# ...and with windows on past the clip's end until one holds its last sample (silence after it, as on a
# stream), where the rows above stop at the last window that fits, leaving up to a hop of it unheard.
ROWS.update({f'fused_{source}_egemaps_one_pass_through_end': Row(
    FUSIONS, f'As fused_{source}_egemaps_one_pass, its windows going on past the clip\'s end (silence after it, '
             'as on a stream) until one holds its last sample, instead of stopping at the last that fits',
    'fusion', {**ROWS[f'fused_{source}_egemaps'].settings, 'one_pass': 'through_end'})
    for source in UNSEEN_CARVE_DRAWS})
# The shipped default's draw served so: the figures a one-pass timnet_egemaps ships with.
ROWS['fused_timnet_partial_rerun_egemaps_one_pass_through_end'] = Row(
    FUSIONS, 'As fused_timnet_partial_rerun_egemaps (timnet_egemaps-ser-v1\'s row), each window\'s eGeMAPS '
             'functionals from one openSMILE pass over its clip, as a stream computes them live, its windows going '
             'on past the clip\'s end (silence after it) until one holds its last sample, for the SVM\'s training '
             'windows too', 'fusion',
    {**ROWS['fused_timnet_partial_rerun_egemaps'].settings, 'one_pass': 'through_end'})


def one_pass_variants(name: str, change: str, settings: dict, sources=UNSEEN_CARVE_DRAWS) -> dict[str, Row]:
    """Rows fused_<source>_<name>: each source's one-pass fused row (windows through the clip's end) with
    `settings` changed, described as that row and `change`."""
    return {f'fused_{source}_{name}': Row(
        FUSIONS, f'As fused_{source}_egemaps_one_pass_through_end, {change}', 'fusion',
        {**ROWS[f'fused_{source}_egemaps_one_pass_through_end'].settings, **settings}) for source in sources}


# ComParE 2016 functionals (6373) in eGeMAPS's place, one pass as above: the speaker-standardised ComParE
# SVM beats the eGeMAPS one on whole clips (svm_compare_speakernorm, svm_egemaps_speakernorm).
ROWS.update(one_pass_variants('compare_one_pass_through_end', 'the SVM on ComParE 2016 functionals (6373) of each '
                              'window instead of eGeMAPS (88)', {'functionals': 'compare'},
                              (*UNSEEN_CARVE_DRAWS, 'timnet_partial_rerun')))

# eGeMAPS and MFCC statistics of each window side by side, one pass as the default: on whole clips the
# speaker-standardised SVM on both (svm_egemaps_mfcc_speakernorm) beats the one on eGeMAPS alone by 0.04.
ROWS.update(one_pass_variants('egemaps_mfcc_one_pass_through_end', 'the SVM on each window\'s eGeMAPS functionals '
                              'and the mean and sd of its 39 MFCCs and their deltas side by side (244 values) instead '
                              'of eGeMAPS alone (88)', {'functionals': 'egemaps+mfcc_stats'}))

# The shipped LMU's recipe (lmu-ser-v9) and its TIM-Net teacher's, validated on whole unseen speakers,
# their fold models kept, so the LMU the node serves is judged fused on the unseen-speaker carve too.
ROWS.update({
    'timnet_v5_speaker_validation': Row(NETWORKS, f'{TIMNET_V4}, {SPEAKER_VALIDATION_TEXT}, its LMU teacher '
                                        'lmu_teacher_speaker_validation validated so too', 'network',
                                        speaker_validated(TIMNET_V4_TRAINING, 'lmu_teacher_speaker_validation')),
    'lmu_v9_speaker_validation': Row(NETWORKS, f'LMU as lmu_pitch_ema_distilled_timnet (lmu-ser-v9\'s recipe), '
                                     f'{SPEAKER_VALIDATION_TEXT}, its TIM-Net teacher timnet_v5_speaker_validation '
                                     'validated so too', 'network',
                                     speaker_validated(LMU_V9_TRAINING, 'timnet_v5_speaker_validation')),
})
ROWS.update({f'lmu_v9_virtual_speakers{suffix}': Row(
    NETWORKS, 'LMU as lmu_v9_speaker_validation (the same carve and teacher row), half its training windows from '
              'virtual speakers as timnet_v6_virtual_speakers\'s' + text, 'network',
    with_overrides(ROWS['lmu_v9_speaker_validation'].settings, *VIRTUAL_SPEAKERS, *seed))
    for suffix, text, seed in TWO_DRAWS})
ROWS['lmu_v9_speaker_validation_prior05'] = stream_row('lmu_v9_speaker_validation', ROWS[
    'lmu_v9_speaker_validation'].description, 0.5)
# The unseen-carve TIM-Net draws as timnet-ser-v8 serves its network (1 s prior): where validation
# chooses that model's lone window weight (docs/results.md, lone calls).
ROWS.update({f'{source}_prior1': stream_row(source, ROWS[source].description, 1.0, "timnet-ser-v8's prior")
             for source in UNSEEN_CARVE_DRAWS})
# The shipped CkTIM's recipe (cktim-ser-v8) likewise, on both carves, its fold models kept: the LMU
# teacher rows it learns from are kept already. On the default carve a rerun row, as the stored row's
# fold models are gone and a retrain need not reproduce it.
ROWS.update({
    'cktim_v8_speaker_validation': Row(NETWORKS, f'{CKTIM5} (cktim-ser-v8\'s recipe), {SPEAKER_VALIDATION_TEXT}, its '
                                       'LMU teacher lmu_teacher_speaker_validation validated so too', 'network',
                                       speaker_validated(CKTIM_V8_TRAINING, 'lmu_teacher_speaker_validation')),
    'cktim5_pitch_distilled_lmu_masked_partial_rerun': Row(NETWORKS, f'{CKTIM5} (cktim5_pitch_distilled_lmu_masked_'
                                                           'partial again, the same command and seed, cktim-ser-v8\'s '
                                                           'recipe)', 'network', CKTIM_V8_TRAINING),
})
ROWS.update({f'{source}_prior2': stream_row(source, ROWS[source].description, 2.0)
             for source in ('cktim_v8_speaker_validation', 'cktim5_pitch_distilled_lmu_masked_partial_rerun')})
# The same on the default carve, the carve every shipped model's test figures come from. The shipped LMU
# recipe's fold models and its TIM-Net teacher's are not kept, and a retrain of the teacher did not
# reproduce its row (fold 0 chose epoch 37, not 38), so both are rerun under rows of their own.
ROWS.update({
    'timnet_pitch_distilled_lmu_rerun': Row(NETWORKS, f'{TIMNET_V4} (timnet_pitch_distilled_lmu again, the same '
                                        'command and seed, lmu-ser-v9\'s teacher recipe)', 'network',
                                        TIMNET_V4_TRAINING),
    'lmu_pitch_ema_distilled_timnet_rerun': Row(NETWORKS, 'LMU as lmu_pitch_ema_distilled_timnet (lmu-ser-v9\'s '
                                            'recipe) again, learning from timnet_pitch_distilled_lmu_rerun\'s model '
                                            'of the same speakers', 'network',
                                            {**LMU_V9_TRAINING, 'teachers': ['timnet_pitch_distilled_lmu_rerun']}),
})
# LMU and CkTIM rows' fold models fused the same way as the default: does the classical half serve them
# as it serves the TIM-Net? First the v6 TIM-Net's teachers, then the shipped LMU's and CkTIM's recipes
# on both carves.
ROWS.update({f'fused_{source}_egemaps_one_pass_through_end': Row(
    FUSIONS, f'{network} as {source}{recipe}, its fold models fused window by window with the one-pass eGeMAPS '
             'SVM of fused_timnet_partial_rerun_egemaps_one_pass_through_end (each speaker standardised, a stream '
             'from the training prior on), probabilities averaged: servable by the node',
    'fusion', {**ROWS['fused_timnet_partial_rerun_egemaps_one_pass_through_end'].settings, 'weights_of': source})
    for network, source, recipe in (
        ('LMU', 'lmu_small_speakernorm_speed_pitch_ema_40', ''), ('LMU', 'lmu_teacher_speaker_validation', ''),
        ('LMU', 'lmu_v9_speaker_validation', ' (lmu-ser-v9\'s recipe validated on whole unseen speakers)'),
        ('LMU', 'lmu_pitch_ema_distilled_timnet_rerun', ' (lmu-ser-v9\'s recipe)'),
        ('CkTIM', 'cktim_v8_speaker_validation', ' (cktim-ser-v8\'s recipe validated on whole unseen speakers)'),
        ('CkTIM', 'cktim5_pitch_distilled_lmu_masked_partial_rerun', ' (cktim-ser-v8\'s recipe)'))})

# The mission networks' unseen-carve fold models averaged, then fused with the default's SVM as each
# alone is: does the classical half add to an ensemble what it adds to one network?
MISSION_SPEAKER_VALIDATION = ('timnet_v6_speaker_validation', 'lmu_v9_speaker_validation',
                              'cktim_v8_speaker_validation')
ROWS.update({
    'ensemble_timnet_lmu_speaker_validation': Row(
        NETWORKS, 'Mean probabilities of timnet_v6_speaker_validation and lmu_v9_speaker_validation, the TIM-Net and '
                  'LMU recipes the node serves validated on whole unseen speakers (no training of its own)', 'ensemble',
        {'members': list(MISSION_SPEAKER_VALIDATION[:2])}),
    'ensemble_mission_speaker_validation': Row(
        NETWORKS, 'Mean probabilities of timnet_v6_speaker_validation, lmu_v9_speaker_validation and '
                  'cktim_v8_speaker_validation, the three recipes the node serves validated on whole unseen speakers '
                  '(no training of its own)', 'ensemble', {'members': list(MISSION_SPEAKER_VALIDATION)}),
})
ROWS.update({f'fused_{source}_egemaps_one_pass_through_end': Row(
    FUSIONS, f'{source}\'s fold models averaged, fused window by window with the one-pass eGeMAPS SVM of '
             'fused_timnet_partial_rerun_egemaps_one_pass_through_end (each speaker standardised, a stream from the '
             'training prior on), the networks\' mean and the SVM half each', 'fusion',
    {**ROWS['fused_timnet_partial_rerun_egemaps_one_pass_through_end'].settings, 'weights_of': source})
    for source in ('ensemble_timnet_lmu_speaker_validation', 'ensemble_mission_speaker_validation')})

# The default's recipe as an ensemble of its two unseen-carve draws (seeds 0 and 1), fused with the same
# SVM: does a second seed add to the fused model what it added alone (ensemble_timnet_v6_seeds)?
ROWS['ensemble_timnet_v6_speaker_validation_seeds'] = Row(
    NETWORKS, 'Mean probabilities of timnet_v6_speaker_validation and timnet_v6_speaker_validation_seed1, the '
              'default\'s recipe on the unseen-speaker carve seeded 0 and 1 (no training of its own)', 'ensemble',
    {'members': list(UNSEEN_CARVE_DRAWS)})
# Two more draws of the same recipe (seeds 2 and 3) and their ensemble: a test of the gain the first
# ensemble showed alone, on draws that played no part in seeing it, and the baseline's third and fourth draws.
ROWS.update({f'timnet_v6_speaker_validation_seed{seed}': Row(
    NETWORKS, f'{TIMNET_V6}, validated as timnet_v6_speaker_validation and learning from the same teacher, seeded '
              f'{seed} instead of 0', 'network', with_overrides(TIMNET_V6_SPEAKER_VALIDATION, f'training.seed={seed}'))
    for seed in (2, 3)})
ROWS['ensemble_timnet_v6_speaker_validation_seeds23'] = Row(
    NETWORKS, 'Mean probabilities of timnet_v6_speaker_validation_seed2 and _seed3, as '
              'ensemble_timnet_v6_speaker_validation_seeds of two other draws (no training of its own)', 'ensemble',
    {'members': ['timnet_v6_speaker_validation_seed2', 'timnet_v6_speaker_validation_seed3']})
# The passing pair distilled into one network: the default's recipe on the unseen carve learning from
# that pair's fold models (seeds 2 and 3) instead of the LMU teacher, two draws. Can one network carry
# what two seeds averaged add, at one network's cost?
PAIR_TEACHERS = list(ROWS['ensemble_timnet_v6_speaker_validation_seeds23'].settings['members'])
ROWS.update({f'timnet_v6_distilled_pair{suffix}': Row(
    NETWORKS, f'{TIMNET_V6}, validated as timnet_v6_speaker_validation, taking half its loss from the '
              f'temperature-2 mean probabilities of the two TIM-Nets ensemble_timnet_v6_speaker_validation_seeds23 '
              f'averages (seeds 2 and 3, the same speakers) instead of the LMU\'s{note}', 'network',
    {**with_overrides(TIMNET_V6_SPEAKER_VALIDATION, *overrides), 'teachers': PAIR_TEACHERS})
    for suffix, note, overrides in TWO_DRAWS})


def fused_as_unseen_pair(network: str) -> Row:
    """Network or ensemble row `network`'s fold models fused with the unseen-carve pairs' SVM."""
    ensemble = ROWS[network].kind == 'ensemble'
    models = 'fold models averaged' if ensemble else 'fold models'
    half = "networks' mean" if ensemble else 'network'
    return Row(FUSIONS, f'{network}\'s {models}, fused window by window with the SVM of '
                        f'fused_timnet_v6_speaker_validation_egemaps_one_pass_through_end, the {half} and the SVM half '
                        'each', 'fusion',
               {**ROWS['fused_timnet_v6_speaker_validation_egemaps_one_pass_through_end'].settings,
                'weights_of': network})


# Fused as the unseen-carve pairs are: seeds 2 and 3 (the pair's third and fourth draws, measurements) and
# their ensemble (a second draw of fused_ensemble_timnet_v6_speaker_validation_seeds_...).
ROWS.update({f'fused_{network}_egemaps_one_pass_through_end': fused_as_unseen_pair(network)
             for network in ('ensemble_timnet_v6_speaker_validation_seeds', 'timnet_v6_speaker_validation_seed2',
                             'timnet_v6_speaker_validation_seed3', 'ensemble_timnet_v6_speaker_validation_seeds23')})

# The unseen-carve pairs with each window also heard at 0.9 and 1.1 times its speed (the network half):
# the copies raised both draws' unseen-speaker validation alone, but that was the carve's own check.
ROWS.update(one_pass_variants('egemaps_one_pass_through_end_speeds', 'the network also hearing each window played '
                              '0.9 and 1.1 times as fast, its three probabilities averaged before the SVM\'s join them',
                              {'test_time_speeds': TEST_TIME_SPEEDS}))

# The unseen-carve pairs with the SVM's Platt scaling fitted on whole held-out speakers, not windows at
# random (whose neighbours, from the same clip and voice, the SVM was fitted on).
ROWS.update(one_pass_variants('egemaps_one_pass_through_end_speaker_calibration', 'the SVM\'s scores mapped to '
                              'probabilities by Platt scaling fitted on whole speakers it was not fitted on (5 folds), '
                              'not on windows drawn at random', {'calibration': 'speakers'}))

REFIT = 'split.validation_into_training=true'


def refit_row(source: str) -> Row:
    """Network row `source` refitted: each fold trained again on its training and validation speakers together
    for the epoch count and learning-rate drops that fold's validation chose."""
    return Row(NETWORKS, f'As {source}, refitted: each fold trained again on its training and validation speakers '
                         'together, for the epoch count that fold\'s validation chose (its validation figures are of '
                         'clips it trained on)', 'network',
               {**with_overrides(ROWS[source].settings, REFIT), 'epochs_of': source})


def refits(name: str) -> bool:
    """Whether row `name`'s network trained on its validation speakers too (a fused row's SVM then does; an
    ensemble's, where a member did)."""
    source = ROWS[weights_row(name)]
    if source.kind == 'ensemble':
        return any(refits(member) for member in source.settings['members'])
    return REFIT in source.settings.get('overrides', [])


def refit_stream_row(network: str, refit: str, seconds: float, shipped: str, chosen_by: str) -> Row:
    """Refit row `refit` alone as the node serves it, from the stream prior the `shipped` model's recipe's
    validation clips chose (row `chosen_by`)."""
    return Row(NETWORKS, f'{network} as {refit}, each node stream starting from the training statistics counted as '
                         f'{seconds:g} s of speech (10 s there), the prior {shipped}\'s recipe\'s validation clips '
                         f'chose ({chosen_by})', 'stream', {'weights_of': refit, 'stream_prior_seconds': seconds})


# The default's recipe on the unseen-speaker carve refitted on its validation speakers too: what the
# validation carve costs a model that ships (a measurement).
ROWS['timnet_v6_speaker_validation_refit'] = refit_row('timnet_v6_speaker_validation')
ROWS['timnet_v6_speaker_validation_seed1_refit'] = refit_row('timnet_v6_speaker_validation_seed1')
# Final runs train on every speaker (decided in 2026-12-06's second session on principle, before these ran):
# the shipped default's recipe so, on its own carve, alone as `timnet` serves it and fused as the default
# ships, both halves fitted on the validation speakers too. Their test figures are what the refits ship with.
# The shipped LMU's and CkTIM's recipes under the same policy (2026-12-06, third session, before these
# ran): alone as `lmu` and `cktim` serve them and fused as `lmu_egemaps` and `cktim_egemaps` ship. All
# four ship whatever they read.
REFIT_SOURCES = ('timnet_partial_rerun', 'lmu_pitch_ema_distilled_timnet_rerun',
                 'cktim5_pitch_distilled_lmu_masked_partial_rerun')
ROWS.update({f'{source}_refit': refit_row(source) for source in REFIT_SOURCES})
# The refits fused as the default ships, the SVM fitted on the validation speakers too: the shipped
# recipes' (what the *_egemaps models ship with) and the unseen-carve draws' (a measurement).
ROWS.update({f'fused_{source}_refit_egemaps_one_pass_through_end': Row(
    FUSIONS, f'As fused_{source}_egemaps_one_pass_through_end with {source}_refit\'s fold models, the SVM fitted on '
             'the validation speakers too (its validation figures are of clips both halves trained on)', 'fusion',
    {**ROWS[f'fused_{source}_egemaps_one_pass_through_end'].settings, 'weights_of': f'{source}_refit'})
    for source in (*UNSEEN_CARVE_DRAWS, *REFIT_SOURCES)})

ROWS['timnet_partial_rerun_refit_prior1'] = refit_stream_row(
    'TIM-Net', 'timnet_partial_rerun_refit', 1.0, 'timnet-ser-v6', 'timnet_pitch_distilled_lmu_partial_prior1')
ROWS['lmu_pitch_ema_distilled_timnet_rerun_refit_prior05'] = refit_stream_row(
    'LMU', 'lmu_pitch_ema_distilled_timnet_rerun_refit', 0.5, 'lmu-ser-v9', 'lmu_pitch_ema_distilled_timnet_prior05')
ROWS['cktim5_pitch_distilled_lmu_masked_partial_rerun_refit_prior2'] = refit_stream_row(
    'CkTIM', 'cktim5_pitch_distilled_lmu_masked_partial_rerun_refit', 2.0, 'cktim-ser-v8',
    'cktim5_pitch_distilled_lmu_masked_partial_prior2')

# The shipped TIM-Net's recipe refitted a second time, seeded 1 (the same per-fold epoch counts and LR drops,
# which timnet_partial_rerun's validation chose), and the two refits averaged as the node serves timnet: the
# two-seed pair the rule of 40382bb ships.
ROWS['timnet_partial_rerun_refit_seed1'] = Row(
    NETWORKS, 'As timnet_partial_rerun_refit (each fold the epoch count and learning-rate drops '
              'timnet_partial_rerun\'s validation chose), seeded 1 instead of 0: the shipped TIM-Net\'s second '
              'refitted seed', 'network',
    with_overrides(ROWS['timnet_partial_rerun_refit'].settings, 'training.seed=1'))
ROWS['ensemble_timnet_partial_rerun_refit_seeds'] = Row(
    NETWORKS, 'Mean probabilities of timnet_partial_rerun_refit and timnet_partial_rerun_refit_seed1 (no training of '
              'its own)', 'ensemble', {'members': ['timnet_partial_rerun_refit', 'timnet_partial_rerun_refit_seed1']})
ROWS['ensemble_timnet_partial_rerun_refit_seeds_prior1'] = refit_stream_row(
    'TIM-Net', 'ensemble_timnet_partial_rerun_refit_seeds', 1.0, 'timnet-ser-v6',
    'timnet_pitch_distilled_lmu_partial_prior1')

# The unseen-carve pairs with the SVM's windows weighted so each corpus counts as much in all, as the
# networks draw them (TESS and nEMO give 78 % of the clips otherwise).
ROWS.update(one_pass_variants('egemaps_one_pass_through_end_weigh_corpora', 'each corpus\'s windows weighing as '
                              'much in all in the SVM\'s fit (sample weights, on top of the balanced class weights), '
                              'as the networks draw them, instead of each window alike', {'weigh_corpora': True}))

# The fused SVM's C (10 everywhere above) on the unseen-carve pairs, one pass as the default.
for source, c in itertools.product(UNSEEN_CARVE_DRAWS, (3.0, 30.0)):
    ROWS.update(one_pass_variants(f'egemaps_one_pass_through_end_c{c:g}', f'the SVM\'s C {c:g} instead of 10',
                                  {'svm_c': c}, (source,)))

# The unseen-carve pairs with the network's logits offset by -correction * log(each label's share of its
# training draws) (logit adjustment): EMOVO's disgust, which no other corpus here has, is drawn 1/28 of
# the time, the other labels about 1/6, and unseen EMOVO speakers' disgust clips are almost never named.
for suffix, correction in (('', 1.0), ('05', 0.5)):
    ROWS.update(one_pass_variants(
        f'egemaps_one_pass_through_end_prior_corrected{suffix}',
        f"the network's logits offset by {correction:g} x -log(each label's share of its training draws) "
        '(logit adjustment), so a label drawn rarely is not called rarely for it, instead of as they come',
        {'prior_correction': correction}))


def pairs_with_network_of(name: str, network: str, what: str) -> dict[str, Row]:
    """Rows fused_<draw>_<name>: each unseen-carve pair with its draw's network swapped for the same seed's
    draw of row `network` (`what` it changes), the SVM as it is."""
    rows = {}
    for (suffix, _, _), draw in zip(TWO_DRAWS, UNSEEN_CARVE_DRAWS, strict=True):
        rows.update(one_pass_variants(name, f'with the fold models of {network}{suffix} ({what}) instead',
                                      {'weights_of': f'{network}{suffix}'}, (draw,)))
    return rows


# The virtual-speaker draws fused with the one-pass eGeMAPS SVM as the unseen-carve pairs are.
ROWS.update(pairs_with_network_of('virtual_speakers_egemaps_one_pass_through_end', 'timnet_v6_virtual_speakers',
                                  'virtual speakers in training'))

# A quarter of the windows from virtual speakers instead of half: half lifted the fused pairs' validation
# but cost RAVDESS's validation actors, alone and fused.
ROWS.update({f'timnet_v6_virtual_speakers_quarter{suffix}': Row(
    NETWORKS, f'{TIMNET_V6}, validated as timnet_v6_speaker_validation and learning from the same teacher row, a '
              'quarter of its training windows from virtual speakers as timnet_v6_virtual_speakers\'s (half there)'
              + text, 'network',
    with_overrides(TIMNET_V6_SPEAKER_VALIDATION, 'augment.virtual_speaker_prob=0.25', *VIRTUAL_SPEAKERS[1:], *seed))
    for suffix, text, seed in TWO_DRAWS})
ROWS.update(pairs_with_network_of('virtual_speakers_quarter_egemaps_one_pass_through_end',
                                  'timnet_v6_virtual_speakers_quarter',
                                  'a quarter of the windows from virtual speakers'))

# Fewer MFCCs on the unseen-speaker carve: 20 of the 64 mel bands' cepstrum instead of 39, the spectral
# envelope without the finer detail that also tells voices apart; alone and fused as the default ships.
# A teacher hears the student's features, so its LMU teacher row takes 20 too.
MFCC20 = 'features.n_mfcc=20'
ROWS['lmu_teacher_speaker_validation_mfcc20'] = Row(
    NETWORKS, f'{LMU_V7}, {SPEAKER_VALIDATION_TEXT}, 20 MFCCs instead of 39 (timnet_v6_mfcc20\'s teacher)', 'network',
    with_overrides(ROWS['lmu_teacher_speaker_validation'].settings, MFCC20))
ROWS.update({f'timnet_v6_mfcc20{suffix}': Row(
    NETWORKS, f'{TIMNET_V6}, validated as timnet_v6_speaker_validation, 20 MFCCs instead of 39 (the spectral '
              'envelope without the finer detail that also tells voices apart), its teacher row '
              'lmu_teacher_speaker_validation_mfcc20 on 20 too' + text, 'network',
    {**with_overrides(TIMNET_V6_SPEAKER_VALIDATION, MFCC20, *seed),
     'teachers': ['lmu_teacher_speaker_validation_mfcc20']})
    for suffix, text, seed in TWO_DRAWS})
ROWS.update(pairs_with_network_of('mfcc20_egemaps_one_pass_through_end', 'timnet_v6_mfcc20', '20 MFCCs'))

# The unseen-carve pairs with the SVM also fitted on virtual speakers, as timnet_v6_virtual_speakers's
# networks meet them: each training speaker's clips played 0.9 and 1.1 times as fast, each such voice
# standardised over its own windows (the network and the stream prior unchanged).
ROWS.update(one_pass_variants('egemaps_one_pass_through_end_svm_virtual_speakers',
                              'the SVM also fitted on virtual speakers: each training speaker\'s clips played 0.9 '
                              'and 1.1 times as fast, each such voice standardised over its own windows, three '
                              'times the voices (the network unchanged)', {'svm_virtual_speeds': [0.9, 1.1]}))

# The unseen-carve pairs with half the SVM's training clips standardised as a stream's statistics stand
# early on (the prior worth 10 s, then the clip and up to 3 more of its speaker's), as the node serves it
# for a voice's first clips, instead of over all of its speaker's windows; the networks' partial
# statistics (partial_speaker_prob) do the same in their training.
ROWS.update(one_pass_variants('egemaps_one_pass_through_end_svm_early_statistics',
                              'half the SVM\'s training clips standardised as a stream\'s statistics stand early on '
                              '(the 10 s prior, the clip and up to 3 more of its speaker\'s clips), as the node '
                              'meets a voice\'s first clips', {'svm_early_share': 0.5, 'svm_early_clips': 4}))

# The unseen-carve pairs with the two halves joined by their geometric mean (log-probabilities averaged at the
# same weight, renormalised) instead of their arithmetic mean: a label one half all but rules out loses.
ROWS.update(one_pass_variants('egemaps_one_pass_through_end_geometric', 'the network\'s and the SVM\'s '
                              'probabilities joined by their geometric mean (log-probabilities averaged, '
                              'renormalised) instead of their arithmetic mean', {'fusion': 'geometric'}))

# The virtual-speaker LMU draws fused as the unseen-carve LMU is (one draw of that baseline).
ROWS.update({f'fused_lmu_v9_virtual_speakers{suffix}_egemaps_one_pass_through_end': Row(
    FUSIONS, 'As fused_lmu_v9_speaker_validation_egemaps_one_pass_through_end, with the fold models of '
             f'lmu_v9_virtual_speakers{suffix} (virtual speakers in training) instead', 'fusion',
    {**ROWS['fused_lmu_v9_speaker_validation_egemaps_one_pass_through_end'].settings,
     'weights_of': f'lmu_v9_virtual_speakers{suffix}'}) for suffix, _, _ in TWO_DRAWS})
# Virtual speakers on the default carve, the shipped LMU's recipe and teacher row otherwise: its refit, the
# refit as `lmu` serves it and fused as `lmu_egemaps` ships, for their test figures.
LMU_VIRTUAL = 'lmu_pitch_ema_distilled_timnet_rerun_virtual_speakers'
ROWS[LMU_VIRTUAL] = Row(NETWORKS, 'LMU as lmu_pitch_ema_distilled_timnet_rerun (lmu-ser-v10\'s recipe, the same '
                                  'teacher row), half its training windows from virtual speakers as '
                                  'lmu_v9_virtual_speakers\'s', 'network',
                        with_overrides(ROWS['lmu_pitch_ema_distilled_timnet_rerun'].settings, *VIRTUAL_SPEAKERS))
ROWS[f'{LMU_VIRTUAL}_refit'] = refit_row(LMU_VIRTUAL)
ROWS[f'{LMU_VIRTUAL}_refit_prior05'] = refit_stream_row('LMU', f'{LMU_VIRTUAL}_refit', 0.5, 'lmu-ser-v9',
                                                        'lmu_pitch_ema_distilled_timnet_prior05')
ROWS[f'fused_{LMU_VIRTUAL}_refit_egemaps_one_pass_through_end'] = Row(
    FUSIONS, f'As fused_lmu_pitch_ema_distilled_timnet_rerun_refit_egemaps_one_pass_through_end with {LMU_VIRTUAL}'
             '_refit\'s fold models (the SVM fitted on the validation speakers too)', 'fusion',
    {**ROWS['fused_lmu_pitch_ema_distilled_timnet_rerun_refit_egemaps_one_pass_through_end'].settings,
     'weights_of': f'{LMU_VIRTUAL}_refit'})


def lone_row(source: str, weight: float) -> Row:
    """Stream row `source` with lone calls (no stream) counting their window `weight` times."""
    return Row(NETWORKS, f'{ROWS[source].description}; a lone call (no stream) counting its window {weight:g} times '
                         f'beside the training statistics (1 in {source}), the weight its family\'s unseen-carve '
                         'validation draws chose at its stream prior', 'stream',
               {**ROWS[source].settings, 'lone_window_weight': weight})


# The shipped networks alone as they serve a lone call: TIM-Net's and the LMU's unseen-carve validation
# draws at each model's stream prior chose a window counted 0.5 times over 1 (rule of dec0583), and
# the LMU's 0.25 over 0.5 (rule of d629e6c).
ROWS.update({f'{source}_lone05': lone_row(source, 0.5)
             for source in ('ensemble_timnet_partial_rerun_refit_seeds_prior1', f'{LMU_VIRTUAL}_refit_prior05')})
ROWS[f'{LMU_VIRTUAL}_refit_prior05_lone025'] = lone_row(f'{LMU_VIRTUAL}_refit_prior05', 0.25)

SCORED = ('network', 'ensemble', 'stream')   # rows scored through the node's windowing


# ---------------------------------------------------------------------------------------- folds
def benchmark_clips(data_root: Path = DATA) -> list[Clip]:
    return load_clips(data_root, datasets=CORPORA)


def benchmark_splits(clips: list[Clip], name: str | None = None) -> list[Split]:
    """The benchmark's folds, with validation carved as row `name`'s training carves it."""
    return make_splits(clips, 'speaker_kfold', FOLDS, VALIDATION_FRACTION, SEED, min_validation_speakers(name))


def default_validation(name: str) -> bool:
    """Whether a row validates on the default carve, so its validation figures compare with the others' (not
    a refit's, which trained on its validation clips)."""
    return min_validation_speakers(name) == MIN_SPEAKERS_FOR_SPEAKER_VALIDATION and not refits(name)


def min_validation_speakers(name: str | None) -> int:
    """split.min_validation_speakers as row `name` (or the network row it scores) trains with it; classical
    rows validate on whole unseen speakers of every corpus with three or more (SPEAKER_VALIDATION's carve)."""
    if name and ROWS[name].kind == 'classical':
        return CLASSICAL_VALIDATION_SPEAKERS
    source = weights_row(name) if name else None
    if source and ROWS[source].kind == 'ensemble':    # its members train on one carve
        source = ROWS[source].settings['members'][0]
    overrides = ROWS[source].settings.get('overrides', []) if source else []
    chosen = [o.split('=', 1)[1] for o in overrides if o.startswith('split.min_validation_speakers=')]
    return int(chosen[-1]) if chosen else MIN_SPEAKERS_FOR_SPEAKER_VALIDATION


# ---------------------------------------------------------------------------------------- scoring
def corpus_labels(clips: list[Clip]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for clip in clips:
        found.setdefault(clip.dataset, set()).add(clip.emotion)
    return found


def restricted_argmax(scores: np.ndarray, labels: list[str], allowed: set[str]) -> np.ndarray:
    """Argmax over the allowed labels only (scores: (N, len(labels)))."""
    masked = np.where(np.isin(labels, sorted(allowed))[None, :], scores, -np.inf)
    return masked.argmax(axis=1)


def score_fold(test: list[Clip], scores: np.ndarray, labels: list[str], allowed: dict[str, set[str]]) -> dict:
    """Per-corpus metrics of one fold's test clips from their class scores."""
    corpora = {}
    for dataset in sorted({c.dataset for c in test}):
        rows = [i for i, c in enumerate(test) if c.dataset == dataset]
        truth = [labels.index(test[i].emotion) for i in rows]
        guess = restricted_argmax(scores[rows], labels, allowed[dataset])
        metrics = classification_metrics(truth, guess, labels)
        corpora[dataset] = {k: metrics[k] for k in ('n', 'uar', 'war', 'f1_macro', 'confusion')}
        # What the model would say unrestricted: the share of clips given a class this corpus lacks
        # (e.g. disgust, which only the Italian corpus has here).
        unrestricted = np.asarray(labels)[scores[rows].argmax(axis=1)]
        corpora[dataset]['outside_classes'] = float(np.mean(~np.isin(unrestricted, sorted(allowed[dataset]))))
    return corpora


def summarize(folds: list[dict], labels: list[str]) -> dict:
    """Mean ± sd over folds per corpus, the corpus-balanced mean, and each corpus's summed confusion."""
    summary = {}
    for dataset in CORPORA:
        entries = [f['corpora'][dataset] for f in folds if dataset in f['corpora']]
        if not entries:
            continue
        uar = [e['uar'] for e in entries]
        summary[dataset] = {'uar_mean': float(np.mean(uar)), 'uar_std': float(np.std(uar)), 'folds': len(uar),
                            'n': int(sum(e['n'] for e in entries)),
                            'outside_classes': float(np.average([e.get('outside_classes', np.nan) for e in entries],
                                                                weights=[e['n'] for e in entries])),
                            'confusion': np.sum([e['confusion'] for e in entries], axis=0).tolist()}
    summary['mean'] = float(np.mean([summary[d]['uar_mean'] for d in CORPORA if d in summary]))
    summary['labels'] = labels
    for key in ('validation', 'validation_stream'):
        if all(key in f for f in folds):
            summary[key] = summarize([{'corpora': f[key]} for f in folds], labels)
    for key, variants in (('skewed', SKEWED), ('online', ONLINE)):
        if all(key in f for f in folds):
            summary[key] = {v: summarize([{'corpora': f[key][v]} for f in folds], labels) for v in variants}
    return summary


def print_fold(name: str, number: int, fold: dict) -> None:
    """One scored fold's per-corpus UAR on its test speakers and on its validation clips."""
    sides = [('', fold['corpora']), ('; validation ', fold.get('validation', {}))]
    print(f'[benchmark] {name} fold {number}: ' + ''.join(
        prefix + ', '.join(f"{d} {m['uar']:.3f}" for d, m in corpora.items()) for prefix, corpora in sides if corpora),
        flush=True)


# ---------------------------------------------------------------------------------------- classical rows
def classical_features(kind: str, clips: list[Clip]) -> np.ndarray:
    """(clips, dims) whole-clip features, cached under runs/benchmark/features/ (FEATURE_CACHE)."""
    from .classical import cached_features
    started = time.time()
    features = cached_features(kind, [c.path for c in clips], FEATURE_CACHE, jobs=os.cpu_count() or 1)
    print(f'[benchmark] {kind}: {features.shape[1]} features of {len(clips)} clips in '
          f'{time.time() - started:.0f} s', flush=True)
    return features


def skew_mask(test: list[Clip], emotion: str) -> np.ndarray:
    """Clips whose statistics stand for their speaker when a stream held one emotion only."""
    return np.array([c.emotion == emotion for c in test])


def classical_inputs(settings: dict, clips: list[Clip]) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """A classical row's whole-clip features of the clips (kinds joined by '+' side by side), raw and as
    its classifier reads them (each speaker standardised over their clips where the row says so), the
    labels and each clip's target."""
    from .classical import standardise_per_speaker
    raw = np.concatenate([classical_features(kind, clips) for kind in settings['features'].split('+')], axis=1)
    features = standardise_per_speaker(raw, [c.speaker_key for c in clips]) if settings.get('speaker_norm') else raw
    labels = labels_present(clips)
    return raw, features, labels, np.array([labels.index(c.emotion) for c in clips])


def run_classical(name: str, row: Row, clips: list[Clip], splits: list[Split]) -> list[dict]:
    from .classical import make_classifier, standardise_per_speaker
    raw, features, labels, targets = classical_inputs(row.settings, clips)
    speaker_norm = row.settings.get('speaker_norm')
    speakers = [c.speaker_key for c in clips]
    index = {id(c): i for i, c in enumerate(clips)}
    allowed = corpus_labels(clips)
    folds = []
    for number, split in enumerate(splits):
        def fitted(group: list[Clip]):
            rows = [index[id(c)] for c in group]
            return make_classifier(row.settings['classifier']).fit(features[rows], targets[rows])

        def scored(model, group: list[Clip]) -> dict:
            return score_fold(group, model.decision_function(features[[index[id(c)] for c in group]]),
                              labels, allowed)
        # The recipe is judged on the validation speakers; the test model trains on them too (no epoch to choose).
        model = fitted(split.train + split.validation)
        test = [index[id(c)] for c in split.test]
        folds.append({'fold': number, 'test_speakers': sorted({c.speaker_key for c in split.test}),
                      'corpora': scored(model, split.test),
                      'validation': scored(fitted(split.train), split.validation)})
        if speaker_norm:
            folds[-1]['skewed'] = {emotion: score_fold(split.test, model.decision_function(standardise_per_speaker(
                raw[test], [speakers[i] for i in test], skew_mask(split.test, emotion))), labels, allowed)
                for emotion in SKEWED}
        print_fold(name, number, folds[-1])
    return folds


# ---------------------------------------------------------------------------------------- network rows
def network_command(name: str, fold: int | None) -> list[str]:
    """The training command of a row's fold; fold None: the same recipe on every speaker (to ship)."""
    row = ROWS[name]
    out = RUNS / name / f'fold{fold}' if fold is not None else FINAL / name
    split = (['split.protocol=speaker_kfold', f'split.folds={FOLDS}', f'split.fold={fold}'] if fold is not None
             else ['split.protocol=all_speakers'])
    args = [sys.executable, '-m', 'training.train', '--config', row.settings['config'],
            '--out', str(out.relative_to(REPO))]
    overrides = [f'data.datasets=[{",".join(CORPORA)}]', *split, f'split.validation_fraction={VALIDATION_FRACTION}',
                 f'split.seed={SEED}', f'training.seed={SEED}', f'training.epochs={NETWORK_EPOCHS}',
                 'training.threads=1',
                 *row.settings.get('overrides', [])]
    teachers = [str(fold_artifact(teacher, fold).relative_to(REPO)) for teacher in row.settings.get('teachers', [])]
    if teachers:   # a fold learns from the teachers' models of the same fold, the final run from their final runs
        overrides.append(f'training.teachers=[{",".join(teachers)}]')
    if clip_feature_kinds(overrides):
        overrides.append(f'training.feature_cache={FEATURE_CACHE.relative_to(REPO)}')
    source = row.settings.get('epochs_of')
    if fold is None and not source:   # the epoch count the folds' validation speakers chose; no early stop
        overrides += [f'training.epochs={final_epochs(name)}', 'training.select=last_epoch']
    elif source:   # a refit: another row's epoch count and LR drops, that fold's (the folds' for the final run)
        epochs, drops = ((final_epochs(source), final_lr_drops(source)) if fold is None
                         else (chosen_epochs(source)[fold], lr_drops(source, fold)))
        overrides += [f'training.epochs={epochs}', 'training.select=last_epoch', 'training.scheduler=steps',
                      f'training.lr_drops=[{",".join(map(str, drops))}]']
    for override in overrides:
        args += ['--set', override]
    return args


def fold_selected_epoch(name: str, fold: int) -> int | None:
    """The epoch a fold's training selected on its validation clips, from its run folder."""
    name = weights_row(name)
    path = RUNS / name / f'fold{fold}' / 'summary.json'
    return json.loads(path.read_text())['folds'][0]['selected_epoch'] if path.is_file() else None


def chosen_epochs(name: str) -> list[int]:
    """The epoch each of the row's folds selected on its validation speakers (from the run folders, else
    from the stored result)."""
    chosen = [fold_selected_epoch(name, fold) for fold in range(FOLDS)]
    result = RESULTS / f'{name}.json'
    if None in chosen and result.is_file():
        chosen = [fold.get('selected_epoch') for fold in json.loads(result.read_text())['folds']]
    if len(chosen) < FOLDS or None in chosen:
        raise SystemExit(f'{name}: train its {FOLDS} folds first (python -m training.benchmark run --only {name}); '
                         'the epoch counts they choose are needed')
    return [int(epoch) for epoch in chosen]


def lr_drops(name: str, fold: int) -> list[int]:
    """The epochs at which a fold's training lowered its learning rate, from its run folder's history, else
    the one `keep` stored."""
    found = [path for path in (RUNS / name / f'fold{fold}' / f'fold{fold}', KEPT / name / f'fold{fold}')
             if (path / 'metrics.json').is_file()]
    if not found:
        raise SystemExit(f'{name} fold {fold}: its run folder holds its learning rates; train it first')
    history = json.loads((found[0] / 'metrics.json').read_text())
    return [now['epoch'] for before, now in itertools.pairwise(history) if now['lr'] < before['lr']]


def final_lr_drops(name: str) -> list[int]:
    """A refit final run's learning-rate drops, from the folds' drops before their chosen epochs: the k-th at
    the median epoch of the folds' k-th, for every k that at least half the folds reached."""
    before = [[epoch for epoch in lr_drops(name, fold) if epoch <= chosen]
              for fold, chosen in enumerate(chosen_epochs(name))]
    drops = []
    for k in itertools.count():
        kth = [fold_drops[k] for fold_drops in before if len(fold_drops) > k]
        if 2 * len(kth) < len(before):
            return drops
        drops.append(int(np.ceil(np.median(kth))))


def final_epochs(name: str) -> int:
    """The median epoch the row's folds selected: the shipped recipe runs for as many."""
    return int(np.ceil(np.median(chosen_epochs(name))))


def weights_row(name: str) -> str:
    """The network row whose trained models a row uses (a stream row's source, else the row itself)."""
    return ROWS[name].settings.get('weights_of', name)


def trained_artifact(name: str, fold: int | None) -> Path:
    """Where a row's fold training (fold None: its final run) leaves its model."""
    if fold is None:
        return FINAL / name / 'all' / 'artifact'
    return RUNS / name / f'fold{fold}' / f'fold{fold}' / 'artifact'


def kept_artifact(name: str, fold: int | None) -> Path:
    """Where `keep` stores a row's fold model (fold None: its final run's)."""
    return KEPT / name / (f'fold{fold}' if fold is not None else 'final')


def fold_artifact(name: str, fold: int | None) -> Path:
    """A row's fold model (fold None: its final run's): its run folder's, else the one `keep` stored in
    KEPT (whole: folds kept before their weights were, ONNX and model.json alone, cannot load)."""
    trained, kept = trained_artifact(name, fold), kept_artifact(name, fold)
    whole = all((kept / file).is_file() for file in KEPT_FILES)
    return kept if not (trained / 'model.json').is_file() and whole else trained


def keep(names: list[str]) -> int:
    """Copy network rows' fold models (model.json, model.onnx and the model.safetensors its graph reads its
    weights from: what scoring and teaching load) and their training histories (metrics.json, whose learning
    rates a refit replays) from their run folders into KEPT, so rows that build on them run on a fresh
    checkout; their final runs' too where trained (what a final run of a row they teach learns from)."""
    for name in names:
        if ROWS[name].kind != 'network':
            raise SystemExit(f'{name}: only network rows have fold models to keep')
        final = (trained_artifact(name, None) / 'model.json').is_file()
        for fold in [*range(FOLDS), *([None] if final else [])]:
            source = trained_artifact(name, fold)
            if not (source / 'model.json').is_file():
                raise SystemExit(f'{name} fold {fold} is not trained here ({row_command(name)})')
            target = kept_artifact(name, fold)
            target.mkdir(parents=True, exist_ok=True)
            for file in KEPT_FILES:
                shutil.copy2(source / file, target / file)
            shutil.copy2(source.parent / 'metrics.json', target / 'metrics.json')
        print(f'[benchmark] {name}: {FOLDS} fold models{" and the final run" if final else ""} kept in '
              f'{(KEPT / name).relative_to(REPO)}', flush=True)
    return 0


def continue_shorter_run(name: str, fold: int | None, out: Path) -> None:
    """Start a row's fold (or final) from the last checkpoint of `continues`, the same recipe with fewer
    epochs, when that run went its full length. Resume is exact (per-epoch seeds, optimiser, scheduler and
    best-epoch state are checkpointed), so this equals training the longer recipe from scratch."""
    source_row = ROWS[name].settings.get('continues')
    if not source_row:
        return
    source = RUNS / source_row / f'fold{fold}' if fold is not None else FINAL / source_row
    checkpoints = sorted(source.glob('*/checkpoint.pt'))
    if len(checkpoints) != 1:
        return
    import torch
    state = torch.load(checkpoints[0], map_location='cpu', weights_only=True)
    ran = len(json.loads(state['history']))
    if fold is not None and ran < epochs_of(source_row):
        return    # it stopped early: the longer run would have stopped there too
    if fold is None and ran > final_epochs(name):
        return    # it already went past the epoch count this row ships
    target = out / checkpoints[0].parent.name / 'checkpoint.pt'
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoints[0], target)
    print(f'[benchmark] {name} {out.name}: continues {source_row} after its epoch {ran}', flush=True)


def epochs_of(name: str) -> int:
    """The epoch limit a row's folds train with (its own override, else the benchmark's)."""
    limits = [int(o.split('=', 1)[1]) for o in ROWS[name].settings.get('overrides', [])
              if o.startswith('training.epochs=')]
    return limits[-1] if limits else NETWORK_EPOCHS


def train_network_fold(name: str, fold: int | None) -> int:
    out = RUNS / name / f'fold{fold}' if fold is not None else FINAL / name
    if (fold_artifact(name, fold) / 'model.json').is_file():
        return 0
    for teacher in ROWS[name].settings.get('teachers', []):
        if fold is None and train_network_fold(teacher, None):
            return 1
        if not (fold_artifact(teacher, fold) / 'model.json').is_file():
            raise SystemExit(f'{name}: its teacher {teacher} fold {fold} is not trained ({row_command(teacher)})')
    out.mkdir(parents=True, exist_ok=True)
    if not any(out.glob('*/checkpoint.pt')):
        continue_shorter_run(name, fold, out)
    args = network_command(name, fold)
    stopped = any(out.glob('*/checkpoint.pt'))    # a run stopped part-way continues from its last epoch
    if stopped:
        args.append('--resume')
    started = time.time()
    with open(out / 'log.txt', 'a' if stopped else 'w') as log:
        code = subprocess.run(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    print(f'[benchmark] {name} {out.name}: training exit {code} after {time.time() - started:.0f} s', flush=True)
    return code


def fold_predictor(name: str, number: int, split: Split, load=None):
    """A network row's fold model, or an ensemble row's fold models averaged, checked to have held out
    exactly the fold's test speakers. load: artifact directory -> predictor (ser_models.load)."""
    import ser_models
    from ser_models.ensemble import AveragedPredictor
    row = ROWS[name]
    if row.kind in ('stream', 'fusion') and ROWS[weights_row(name)].kind == 'ensemble':
        ensemble = fold_predictor(weights_row(name), number, split, load)
        ensemble.meta = as_served(ensemble.meta, row.settings)
        return ensemble
    networks = row.settings['members'] if row.kind == 'ensemble' else [weights_row(name)]
    predictors = []
    for network in networks:
        if not (fold_artifact(network, number) / 'model.json').is_file():
            raise SystemExit(f'{name}: {network} fold {number} is not trained ({row_command(network)})')
        held_out = set(json.loads((fold_artifact(network, number) / 'model.json').read_text())
                       ['provenance']['data']['test_speakers'])
        if held_out != {c.speaker_key for c in split.test}:
            raise SystemExit(f'{network} fold {number}: the run held out other speakers than the benchmark fold')
        predictors.append((load or ser_models.load)(fold_artifact(network, number)))
    if row.kind in ('stream', 'fusion'):
        predictors[0].meta = as_served(predictors[0].meta, row.settings)
        if row.settings.get('prior_correction'):
            predictors[0].meta = with_training_label_prior(name, predictors[0].meta, classifier_clips(name, split))
    return AveragedPredictor(predictors) if row.kind == 'ensemble' else predictors[0]


def as_served(meta: dict, settings: dict) -> dict:
    """A stream row's model.json for its source's weights: streams starting from its prior, windows
    also heard at its test-time speeds and lone calls weighing their window as it says, where the row
    sets them."""
    from ser_models.artifact import with_stream_prior
    if 'stream_prior_seconds' in settings:
        meta = with_stream_prior(meta, settings['stream_prior_seconds'])
    if 'test_time_speeds' in settings:
        meta = {**meta, 'test_time_speeds': list(settings['test_time_speeds'])}
    if 'lone_window_weight' in settings:
        meta = {**meta, 'lone_window_weight': settings['lone_window_weight']}
    return meta


def with_training_label_prior(name: str, meta: dict, trained_on: list[Clip]) -> dict:
    """meta with the label_prior row `name`'s 'prior_correction' asks for (else as it is): each label's
    share of the draws its network trained with on `trained_on` (its fold's training clips; every clip
    for a final run), under that network row's sampling settings."""
    from ser_models.artifact import with_label_prior

    from .config import resolve
    from .train import label_shares
    correction = ROWS[name].settings.get('prior_correction')
    if not correction:
        return meta
    if len(trained_on) != meta['provenance']['data']['train_clips']:
        raise SystemExit(f"{name}: the network trained on {meta['provenance']['data']['train_clips']} clips, "
                         f'not the {len(trained_on)} its label shares would count')
    network = ROWS[weights_row(name)].settings
    data = resolve(REPO / network['config'],
                   overrides=[o for o in network.get('overrides', []) if o.startswith('data.')])['data']
    return with_label_prior(meta, label_shares(trained_on, meta['labels'], data), correction)


def with_prior(predictor, seconds: float):
    """The predictor's streams start from its training prior counted as `seconds` of speech."""
    from ser_models.artifact import with_stream_prior
    predictor.meta = with_stream_prior(predictor.meta, seconds)
    return predictor


def validation_audio(predictor, split: Split) -> list[np.ndarray]:
    """The fold's validation clips at the model's rate."""
    from .data import load_audio
    return [load_audio(c.path, predictor.sample_rate) for c in split.validation]


def validation_scores(predictor, split: Split, allowed: dict[str, set[str]], audio: list[np.ndarray]) -> dict:
    """Per-corpus scores on the fold's validation clips (`audio`, from validation_audio), the figures that
    may choose between recipes (RAVDESS's are whole unseen actors; the other corpora's are clips of
    training speakers)."""
    from ser_models.windowing import predict_clips, speaker_normalizers

    speakers = [c.speaker_key for c in split.validation]
    scores = predict_clips(predictor, audio, predictor.sample_rate, speakers=speakers,
                           normalizers=speaker_normalizers(predictor, audio, speakers))
    return score_fold(split.validation, scores, predictor.labels, allowed)


def stream_orders(group: list[Clip]) -> dict[str, list[int]]:
    """The orders a stream hears a group's clips in (ONLINE's streamed variants): each speaker's clips
    shuffled, or grouped by emotion (a fast-adapting normaliser's worst case)."""
    return {'shuffled': list(np.random.default_rng(SEED).permutation(len(group))),
            'by_emotion': sorted(range(len(group)), key=lambda i: (group[i].emotion, i))}


def validation_stream_scores(predictor, split: Split, allowed: dict[str, set[str]],
                             audio: list[np.ndarray], order: str = 'shuffled') -> dict:
    """The fold's validation clips as the node hears them: each speaker's clips in `order` (stream_orders),
    with running stream statistics (speaker-normalised models). The figures that may choose a stream prior."""
    from ser_models.windowing import predict_clips_online

    scores = predict_clips_online(predictor, audio, [c.speaker_key for c in split.validation],
                                  stream_orders(split.validation)[order])
    return score_fold(split.validation, scores, predictor.labels, allowed)


def stream_prior(names: list[str]) -> int:
    """Network rows' validation clips as the node hears them (in each of CHOICE_ORDERS), for each prior in
    STREAM_PRIORS; stored with the row (docs/benchmark/ROW.json, 'stream_prior[_by_emotion]') and printed;
    fused rows' through fusion_choice. Test speakers are not scored."""
    clips = benchmark_clips()
    allowed = corpus_labels(clips)
    for name in [n for n in names if is_fused(n)]:
        fusion_choice(name, clips, allowed)
    for name in [n for n in names if ROWS[n].kind == 'network']:
        result = scored_result(name)
        splits = benchmark_splits(clips, name)
        folds = {(order, seconds): [] for order in CHOICE_ORDERS for seconds in STREAM_PRIORS}
        for number, split in enumerate(splits):
            predictor = fold_predictor(name, number, split)
            if predictor.features.config.normalize != 'speaker':
                raise SystemExit(f'{name}: not speaker-normalised, so its streams have no prior')
            audio = validation_audio(predictor, split)
            for order, seconds in folds:
                folds[order, seconds].append({'corpora': validation_stream_scores(
                    with_prior(predictor, seconds), split, allowed, audio, order)})
        for order, key in CHOICE_ORDERS.items():
            result[f'stream_prior{key}'] = {
                str(seconds): uar_only(summarize(folds[order, seconds], result['summary']['labels']))
                for seconds in STREAM_PRIORS}
            for seconds, s in result[f'stream_prior{key}'].items():
                print(f'[benchmark] {name}, validation node view ({ONLINE[order]}), stream prior {seconds} s: ' +
                      ', '.join(f"{d} {s[d]['uar_mean']:.3f}" for d in CORPORA if d in s) + f", mean {s['mean']:.3f}",
                      flush=True)
        rewrite_result(name, {f'stream_prior{key}': result[f'stream_prior{key}'] for key in CHOICE_ORDERS.values()})
    return 0


# Seconds of silence after each test clip in the utterance view: longer than the node's 1 s utterance end.
UTTERANCE_PAUSE = 1.5


def served_fold_predictors(name: str, clips: list[Clip], splits: list[Split]):
    """(number, split, predictor) per fold of a network or fused row, each predictor as the node would
    load it: a fused row's network with its fold classifier on window functionals attached (one openSMILE
    pass over the stream where the row fitted on such windows)."""
    if not is_fused(name):
        for number, split in enumerate(splits):
            yield number, split, fold_predictor(name, number, split)
        return
    from ser_models.functionals import FunctionalsExtractor
    settings = ROWS[name].settings
    extractor = FunctionalsExtractor(settings['functionals'])
    for number, split, predictor, _, classify, pooled in fused_folds(name, clips, splits):
        predictor.functionals = fold_functionals(settings, extractor, classify, pooled, predictor)
        yield number, split, predictor


def fold_functionals(settings: dict, extractor, classify, pooled, predictor):
    """A fused row's fold classifier as the node serves it beside `predictor`'s network: its streams
    from the training windows' pooled statistics, worth the network's stream prior, joined to the
    network at the row's weight by its fusion rule."""
    from ser_models.artifact import stream_prior_seconds
    from ser_models.functionals import Functionals
    return Functionals(extractor, classify,
                       pooled.summary(stream_prior_seconds(predictor.meta) / predictor.window_seconds),
                       settings.get('weight', 0.5), one_pass=bool(settings.get('one_pass')),
                       fusion=settings.get('fusion', 'mean'))


def utterance_view(names: list[str], pause: float, side: str = 'test', speech_only: bool = False,
                   prior_seconds: float | None = None) -> int:
    """Rows' test (or validation) speakers as emotion/utterance would publish them: each speaker's clips
    in random order (stream_orders), `pause` s of silence after each, through the node's own pipeline
    (windows, energy gate, running statistics, utterances cut at pauses and scored as clips; speech_only:
    an utterance's audio stops at its last speech hop); each clip takes the utterance that overlaps it
    most. prior_seconds: a network's streams start from its training prior counted as that many seconds
    instead of the row's. Stored with the row ('utterance_view': '<side> <pause> s[ speech only][ prior
    <seconds> s]' -> UAR) and printed. Test speakers choose nothing."""
    from ser_models.windowing import predict_clips_as_utterances

    from .data import load_audio
    clips = benchmark_clips()
    allowed = corpus_labels(clips)
    for name in names:
        if prior_seconds is not None and is_fused(name):
            raise SystemExit(f'{name}: --stream-prior sets a network\'s prior; a fused row has two')
        labels = scored_result(name)['summary']['labels']   # the row must be scored first
        folds, missed = [], 0
        for number, split, predictor in served_fold_predictors(name, clips, benchmark_splits(clips, name)):
            if prior_seconds is not None:
                predictor = with_prior(predictor, prior_seconds)
            group = split.test if side == 'test' else split.validation
            audio = [load_audio(c.path, predictor.sample_rate) for c in group]
            scores, unheard = predict_clips_as_utterances(predictor, audio, [c.speaker_key for c in group],
                                                          stream_orders(group)['shuffled'], pause,
                                                          speech_only=speech_only)
            folds.append({'corpora': score_fold(group, scores, predictor.labels, allowed)})
            missed += unheard
            print(f'[benchmark] {name} fold {number}: utterance view done, {unheard} clips without an utterance',
                  flush=True)
        view = {**uar_only(summarize(folds, labels)), 'clips_without_utterance': missed}
        key = (f'{side} {pause:g} s' + (' speech only' if speech_only else '')
               + (f' prior {prior_seconds:g} s' if prior_seconds is not None else ''))
        keep_view(name, 'utterance_view', key, view, f'{side} speakers as emotion/utterance publishes them',
                  f'; {missed} clips without an utterance')
    return 0


class ExtractedOnce:
    """A FunctionalsExtractor whose windows() remembers each batch it has extracted."""

    def __init__(self, extractor):
        self.extractor = extractor
        self.known: dict[bytes, np.ndarray] = {}

    def windows(self, windows: np.ndarray) -> np.ndarray:
        import hashlib
        key = hashlib.blake2b(np.ascontiguousarray(windows).tobytes(), digest_size=16).digest()
        if key not in self.known:
            self.known[key] = self.extractor.windows(windows)
        return self.known[key]

    def __getattr__(self, name):
        return getattr(self.extractor, name)


def lone_call_view(names: list[str], side: str, weights: list[float] | None = None,
                   functionals_weight: float | None = None) -> int:
    """Rows' test (or validation) clips as a caller of Predictor.predict hears them: each clip's node
    windows, every one a lone call (no stream), probabilities averaged (windowing.predict_clips_alone),
    for each lone window weight (how many times a window's own frames count beside the training prior;
    None: the one the row serves, its lone_window_weight or ser_models.predictor.LONE_WINDOW_WEIGHT); a
    fused row's classical half at functionals_weight (LONE_FUNCTIONALS_WEIGHT), or at each weight where
    None. Stored with the row ('lone_call_view': '<side> weight <w>[ functionals <f>]' -> UAR) and
    printed. Test speakers choose nothing."""
    from ser_models.predictor import LONE_WINDOW_WEIGHT
    from ser_models.windowing import predict_clips_alone

    from .data import load_audio
    clips = benchmark_clips()
    allowed = corpus_labels(clips)
    for name in names:
        labels = scored_result(name)['summary']['labels']   # the row must be scored first
        folds = {weight: [] for weight in weights or [ROWS[name].settings.get('lone_window_weight',
                                                                              LONE_WINDOW_WEIGHT)]}
        for number, split, predictor in served_fold_predictors(name, clips, benchmark_splits(clips, name)):
            group = split.test if side == 'test' else split.validation
            audio = [load_audio(c.path, predictor.sample_rate) for c in group]
            if predictor.functionals is not None:    # the same windows' functionals for every weight
                predictor.functionals.extractor = ExtractedOnce(predictor.functionals.extractor)
            for weight in folds:
                predictor.lone_window_weight = weight
                predictor.lone_functionals_weight = weight if functionals_weight is None else functionals_weight
                folds[weight].append({'corpora': score_fold(group, predict_clips_alone(predictor, audio),
                                                            predictor.labels, allowed)})
            print(f'[benchmark] {name} fold {number}: lone-call view done', flush=True)
        for weight in folds:
            view = uar_only(summarize(folds[weight], labels))
            key = f'{side} weight {weight:g}'
            if functionals_weight is not None:
                key += f' functionals {functionals_weight:g}'
            keep_view(name, 'lone_call_view', key, view, f'{side} clips as lone calls')
    return 0


def keep_view(name: str, table: str, key: str, view: dict, heard: str, tail: str = '') -> None:
    """A view's per-corpus UAR stored in the row's result under table/key at once (beside the views
    another process may have stored meanwhile), and printed."""
    rewrite_result(name, {table: {**scored_result(name).get(table, {}), key: view}})
    print(f'[benchmark] {name}, {heard} ({key}): ' + ', '.join(f"{d} {view[d]['uar_mean']:.3f}" for d in CORPORA
                                                              if d in view) + f", mean {view['mean']:.3f}{tail}",
          flush=True)


def uar_only(summary: dict) -> dict:
    """A summary's mean of corpora and per-corpus UAR (mean, sd, folds, n), without its confusions."""
    return {'mean': summary['mean'], **{d: {k: summary[d][k] for k in ('uar_mean', 'uar_std', 'folds', 'n')}
                                        for d in CORPORA if d in summary}}


def is_fused(name: str) -> bool:
    """A row fusing a network with a classifier on each node window's functionals."""
    return ROWS[name].kind == 'fusion' and 'functionals' in ROWS[name].settings


def fusion_choice(name: str, clips: list[Clip], allowed: dict[str, set[str]]) -> None:
    """A fused row's validation clips as the node hears them (in each of CHOICE_ORDERS) for each stream
    prior in STREAM_PRIORS (for both halves) and each share of the classifier in FUSION_WEIGHTS; stored
    with the row ('fusion_choice[_by_emotion]': seconds -> weight -> UAR) and printed. Test speakers are
    not scored."""
    from ser_models.functionals import Functionals
    from ser_models.windowing import HOP_SECONDS, predict_clips_online

    result = scored_result(name)
    fusion = ROWS[name].settings.get('fusion', 'mean')
    folds = {grid: [] for grid in itertools.product(CHOICE_ORDERS, STREAM_PRIORS, FUSION_WEIGHTS)}
    for _, split, predictor, windows_of, classify, pooled in fused_folds(name, clips, benchmark_splits(clips, name)):
        audio = validation_audio(predictor, split)
        speakers = [c.speaker_key for c in split.validation]
        own = windows_of(split.validation)
        orders = stream_orders(split.validation)
        for order, seconds in itertools.product(CHOICE_ORDERS, STREAM_PRIORS):
            network = predict_clips_online(with_prior(predictor, seconds), audio, speakers, orders[order])
            functionals = Functionals(None, classify, pooled.summary(seconds / predictor.window_seconds))
            classical = functionals.clip_probabilities(own, speakers, orders[order],
                                                       HOP_SECONDS / predictor.window_seconds)
            for weight in FUSION_WEIGHTS:
                fused = Functionals(None, classify, functionals.prior, weight, fusion=fusion).fuse(network, classical)
                folds[order, seconds, weight].append({'corpora': score_fold(split.validation, fused, predictor.labels,
                                                                            allowed)})
    labels = result['summary']['labels']
    for order, key in CHOICE_ORDERS.items():
        result[f'fusion_choice{key}'] = {
            str(seconds): {str(weight): uar_only(summarize(folds[order, seconds, weight], labels))
                           for weight in FUSION_WEIGHTS} for seconds in STREAM_PRIORS}
        for seconds, weights in result[f'fusion_choice{key}'].items():
            print(f'[benchmark] {name}, validation node view ({ONLINE[order]}), stream prior {seconds} s: ' +
                  ', '.join(f"weight {w} {s['mean']:.3f} (RAVDESS {s.get('ravdess', {}).get('uar_mean', np.nan):.3f})"
                            for w, s in weights.items()), flush=True)
    rewrite_result(name, {f'fusion_choice{key}': result[f'fusion_choice{key}'] for key in CHOICE_ORDERS.values()})


def score_network(name: str, clips: list[Clip], splits: list[Split], load=None) -> list[dict]:
    from ser_models.windowing import predict_clips, predict_clips_online, speaker_normalizers

    from .data import load_audio
    allowed = corpus_labels(clips)
    folds = []
    for number, split in enumerate(splits):
        predictor = fold_predictor(name, number, split, load)
        audio = [load_audio(c.path, predictor.sample_rate) for c in split.test]
        speakers = [c.speaker_key for c in split.test]
        scores = predict_clips(predictor, audio, predictor.sample_rate, speakers=speakers,
                               normalizers=speaker_normalizers(predictor, audio, speakers))
        validation = validation_audio(predictor, split)
        folds.append({'fold': number, 'test_speakers': sorted(set(speakers)),
                      'selected_epoch': fold_selected_epoch(name, number),
                      'corpora': score_fold(split.test, scores, predictor.labels, allowed),
                      'validation': validation_scores(predictor, split, allowed, validation)})
        if predictor.features.config.normalize == 'speaker':
            folds[-1]['validation_stream'] = validation_stream_scores(predictor, split, allowed, validation)
            folds[-1]['skewed'] = {emotion: score_fold(split.test, predict_clips(
                predictor, audio, predictor.sample_rate,
                normalizers=speaker_normalizers(predictor, audio, speakers, skew_mask(split.test, emotion))),
                predictor.labels, allowed) for emotion in SKEWED}
            orders = stream_orders(split.test)
            online = {'prior': predict_clips(predictor, audio, predictor.sample_rate,
                                             normalizers=[predictor.population] * len(audio))}
            online.update({variant: predict_clips_online(predictor, audio, speakers, order)
                           for variant, order in orders.items()})
            folds[-1]['online'] = {variant: score_fold(split.test, scores, predictor.labels, allowed)
                                   for variant, scores in online.items()}
        print_fold(name, number, folds[-1])
    return folds


def fused_probabilities(predictor, model, group: list[Clip], features: np.ndarray) -> np.ndarray:
    """The mean of a network's clip probabilities (node windowing, each speaker's statistics over their
    clips) and a fitted classifier's on the clips' whole-clip features."""
    from ser_models.windowing import predict_clips, speaker_normalizers

    from .data import load_audio
    audio = [load_audio(c.path, predictor.sample_rate) for c in group]
    network = predict_clips(predictor, audio, predictor.sample_rate,
                            normalizers=speaker_normalizers(predictor, audio, [c.speaker_key for c in group]))
    fitted = np.zeros_like(network)
    fitted[:, model.classes_] = model.predict_proba(features)
    return (network + fitted) / 2


def classifier_clips(name: str, split: Split) -> list[Clip]:
    """What a fusion row's classifier fits on: the fold's training clips, and its validation clips where the
    network trained on them too (a refit)."""
    return split.train + split.validation if refits(name) else split.train


def score_fusion(name: str, clips: list[Clip], splits: list[Split]) -> list[dict]:
    """A network row's fold models and a classical row's classifier, fitted on the fold's training clips
    (classifier_clips: not its validation clips, which judge the pair, unless a refit), averaging their class
    probabilities; each speaker standardised over all their clips, as both rows do offline."""
    from .classical import make_classifier
    classical = ROWS[ROWS[name].settings['classical']].settings
    _, features, labels, targets = classical_inputs(classical, clips)
    position = {id(c): i for i, c in enumerate(clips)}
    allowed = corpus_labels(clips)
    folds = []
    for number, split in enumerate(splits):
        predictor = fold_predictor(name, number, split)
        if predictor.labels != labels:
            raise SystemExit(f'{name}: the network has labels {predictor.labels}, the clips {labels}')
        train = [position[id(c)] for c in classifier_clips(name, split)]
        model = make_classifier(classical['classifier'], probabilities=True).fit(features[train], targets[train])
        folds.append({'fold': number, 'test_speakers': sorted({c.speaker_key for c in split.test})})
        for side, group in (('corpora', split.test), ('validation', split.validation)):
            scores = fused_probabilities(predictor, model, group, features[[position[id(c)] for c in group]])
            folds[-1][side] = score_fold(group, scores, labels, allowed)
        print_fold(name, number, folds[-1])
    return folds


def clip_window_functionals(kind: str, paths: list[str], window: int, hop: int, one_pass: str,
                            speed: float = 1.0) -> list[np.ndarray]:
    """Each clip's (windows, dims) functionals of its node windows at 16 kHz: one openSMILE call a window
    of clip_windows, or one pass over the clip, as a stream of it computes them (FunctionalsExtractor.
    stream_windows): one_pass 'fitting' the windows that fit in it, 'through_end' on until one holds its end.
    speed: each clip played that many times as fast first (a virtual speaker's voice)."""
    from ser_models.functionals import FunctionalsExtractor
    from ser_models.windowing import change_speed, clip_windows

    from .data import load_audio
    extractor = FunctionalsExtractor(kind, 16000)

    def heard(path: str) -> np.ndarray:
        audio = load_audio(path, 16000)
        return audio if speed == 1.0 else change_speed(audio, speed, 16000)
    if one_pass:
        return [extractor.stream_windows(heard(path), window, hop, one_pass == 'through_end') for path in paths]
    return [extractor.windows(clip_windows(heard(path), window, hop)) for path in paths]


def window_functionals(kind: str, clips: list[Clip], window: int, hop: int, one_pass: str = '',
                       speed: float = 1.0) -> list[np.ndarray]:
    """clip_window_functionals of the clips, one process a core, cached under FEATURE_CACHE by clip path."""
    from concurrent.futures import ProcessPoolExecutor
    passes = {'': '', 'fitting': 'stream_', 'through_end': 'stream_end_'}
    played = '' if speed == 1.0 else f'_speed{speed:g}'
    cache = FEATURE_CACHE / f'{kind}_{passes[one_pass]}windows_{window}_{hop}{played}.npz'
    known: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache) as stored_features:
            known = dict(zip(stored_features['paths'],
                             np.split(stored_features['features'], np.cumsum(stored_features['counts'])[:-1]),
                             strict=True))
    keys = [str(Path(c.path).resolve()) for c in clips]
    missing = [key for key in dict.fromkeys(keys) if key not in known]
    if missing:
        started = time.time()
        jobs = min(os.cpu_count() or 1, len(missing))
        shares = [list(share) for share in np.array_split(np.array(missing, dtype=object), jobs)]
        with ProcessPoolExecutor(jobs) as pool:
            parts = pool.map(clip_window_functionals, [kind] * jobs, shares, [window] * jobs, [hop] * jobs,
                             [one_pass] * jobs, [speed] * jobs)
            known.update(zip(missing, [vectors for part in parts for vectors in part], strict=True))
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f'{cache.stem}.{os.getpid()}.npz')
        np.savez(partial, paths=np.array(list(known)), counts=np.array([len(v) for v in known.values()]),
                 features=np.concatenate(list(known.values())))
        os.replace(partial, cache)
        print(f'[benchmark] {kind} of the node windows of {len(missing)} clips in {time.time() - started:.0f} s',
              flush=True)
    return [known[key] for key in keys]


def virtual_window_functionals(settings: dict, clips: list[Clip], window: int, hop: int) -> dict[float, list]:
    """A fused row's virtual speakers for its classifier (settings' svm_virtual_speeds): speed -> the clips'
    window functionals, each clip played that many times as fast (classical.fit_on_windows's virtual)."""
    return {speed: window_functionals(settings['functionals'], clips, window, hop, settings.get('one_pass', ''),
                                      speed) for speed in settings.get('svm_virtual_speeds', ())}


def early_statistics_fit(settings: dict, meta: dict) -> dict | None:
    """classical.fit_on_windows's `early` for a fused row's classifier (settings' svm_early_share of the
    clips, svm_early_clips at most heard), its stream as the node keeps it for this network (model.json
    meta): the prior worth its stream prior, each window counted hop / window."""
    from ser_models.artifact import stream_prior_seconds
    from ser_models.windowing import HOP_SECONDS
    if not settings.get('svm_early_share'):
        return None
    return {'share': settings['svm_early_share'], 'clips': settings.get('svm_early_clips', 4),
            'prior_windows': stream_prior_seconds(meta) / meta['window_seconds'],
            'weight': HOP_SECONDS / meta['window_seconds']}


def fold_classifier(settings: dict, vectors: list[np.ndarray], clips: list[Clip], labels: list[str],
                    virtual: dict[float, list] | None = None, early: dict | None = None):
    """A fused row's classifier for one fold, fitted on the windows of the training clips `clips` (and of
    their virtual speakers', the same clips' played at other speeds; some standardised as early in a
    stream: classical.fit_on_windows): (classify, the training windows' pooled statistics)."""
    from .classical import fit_on_windows, fit_options, probabilities_in_label_order
    model, pooled = fit_on_windows(settings['classifier'], vectors, [c.speaker_key for c in clips],
                                   [labels.index(c.emotion) for c in clips], **fit_options(settings),
                                   virtual=virtual, early=early)
    return probabilities_in_label_order(model, len(labels)), pooled


def fused_folds(name: str, clips: list[Clip], splits: list[Split]):
    """Per fold of a fused row: (number, split, its network's predictor, each clip's window functionals
    in `clips` order, the fold's classifier and the training windows' pooled statistics, fold_classifier)."""
    from ser_models.windowing import HOP_SECONDS
    settings = ROWS[name].settings
    position = {id(c): i for i, c in enumerate(clips)}
    for number, split in enumerate(splits):
        predictor = fold_predictor(name, number, split)
        if predictor.features.config.normalize != 'speaker' or predictor.labels != labels_present(clips):
            raise SystemExit(f'{name}: fusion needs a speaker-normalised network over {labels_present(clips)}')
        window, hop = predictor.window_samples, int(round(HOP_SECONDS * predictor.sample_rate))
        vectors = window_functionals(settings['functionals'], clips, window, hop, settings.get('one_pass', ''))
        virtual = virtual_window_functionals(settings, clips, window, hop)

        def windows_of(group: list[Clip], vectors=vectors) -> list[np.ndarray]:
            return [vectors[position[id(c)]] for c in group]
        fitted_on = classifier_clips(name, split)
        classify, pooled = fold_classifier(settings, windows_of(fitted_on), fitted_on, predictor.labels,
                                           {speed: windows_of(fitted_on, played) for speed, played in virtual.items()},
                                           early_statistics_fit(settings, predictor.meta))
        yield number, split, predictor, windows_of, classify, pooled


def score_fused_windows(name: str, clips: list[Clip], splits: list[Split]) -> list[dict]:
    """A network row's fold models fused window by window with a classifier on each node window's
    functionals (Functionals): scored offline (each speaker's statistics over all their clips, for both
    halves) and as the node would hear them (running stream statistics from the training prior), on the
    validation clips and the test speakers, as network rows are."""
    from ser_models.windowing import HOP_SECONDS, predict_clips, predict_clips_online, speaker_normalizers

    from .data import load_audio
    allowed = corpus_labels(clips)
    folds = []
    for number, split, predictor, windows_of, classify, pooled in fused_folds(name, clips, splits):
        functionals = fold_functionals(ROWS[name].settings, None, classify, pooled, predictor)
        weight = HOP_SECONDS / predictor.window_seconds
        folds.append({'fold': number, 'test_speakers': sorted({c.speaker_key for c in split.test})})
        for side, group in (('test', split.test), ('validation', split.validation)):
            audio = [load_audio(c.path, predictor.sample_rate) for c in group]
            speakers = [c.speaker_key for c in group]
            own = windows_of(group)
            orders = stream_orders(group)
            if side == 'validation':
                del orders['by_emotion']
            views = {'offline': functionals.fuse(
                predict_clips(predictor, audio, predictor.sample_rate,
                              normalizers=speaker_normalizers(predictor, audio, speakers)),
                functionals.clip_probabilities(own, speakers))}
            if side == 'test':
                population = [predictor.population] * len(audio)
                views['prior'] = functionals.fuse(
                    predict_clips(predictor, audio, predictor.sample_rate, normalizers=population),
                    functionals.clip_probabilities(own, speakers, range(len(audio)), weight=0.0))
            views.update({variant: functionals.fuse(predict_clips_online(predictor, audio, speakers, order),
                                                    functionals.clip_probabilities(own, speakers, order, weight))
                          for variant, order in orders.items()})
            scored = {view: score_fold(group, scores, predictor.labels, allowed) for view, scores in views.items()}
            if side == 'test':
                folds[-1]['corpora'] = scored.pop('offline')
                folds[-1]['online'] = scored
            else:
                folds[-1]['validation'], folds[-1]['validation_stream'] = scored['offline'], scored['shuffled']
        print_fold(name, number, folds[-1])
    return folds


# ---------------------------------------------------------------------------------------- driver
def row_command(name: str) -> str:
    return f'python -m training.benchmark run --only {name}'


def save_result(name: str, folds: list[dict], labels: list[str]) -> dict:
    result = {'row': name, 'description': ROWS[name].description, 'command': row_command(name),
              'fold_commands': ([' '.join(shlex.quote(a) for a in ['python', *network_command(name, f)[1:]])
                                 for f in range(FOLDS)] if ROWS[name].kind == 'network' else []),
              'finished': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'folds': folds,
              'summary': summarize(folds, labels)}
    path = RESULTS / f'{name}.json'
    if path.is_file():   # a row run again: its choice tables still hold if its models score as they did
        before = json.loads(path.read_text())
        if [f['corpora'] for f in before['folds']] == json.loads(json.dumps([f['corpora'] for f in folds])):
            result.update({key: table for key, table in before.items() if key.startswith(CHOICE_TABLES)})
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + '\n')
    stored.cache_clear()
    return result


def scored_result(name: str) -> dict:
    """A scored row's stored result (docs/benchmark/ROW.json), to add figures to."""
    path = RESULTS / f'{name}.json'
    if not path.is_file():
        raise SystemExit(f'{name}: score the row first ({row_command(name)})')
    return json.loads(path.read_text())


def rewrite_result(name: str, changes: dict) -> None:
    """A stored result written back with these top-level entries replaced, read again first: a view
    another process stored while this one scored stays."""
    result = {**scored_result(name), **changes}
    (RESULTS / f'{name}.json').write_text(json.dumps(result, indent=1) + '\n')
    stored.cache_clear()


# Training options that read whole-clip classical features of the training clips (from FEATURE_CACHE).
CLIP_FEATURE_OPTIONS = ('training.clip_teacher=', 'training.feature_targets=')


def clip_feature_kinds(overrides: list[str]) -> set[str]:
    """The classical feature kinds these training overrides read."""
    return {o.split('=', 1)[1] for o in overrides if o.startswith(CLIP_FEATURE_OPTIONS)}


def extract_clip_features(names: list[str], clips: list[Clip]) -> None:
    """Fill FEATURE_CACHE with the classical features the rows' training reads, for every clip, before
    folds train in parallel, so no two folds extract the same clips at once."""
    for kind in {k for n in names for k in clip_feature_kinds(ROWS[weights_row(n)].settings.get('overrides', []))}:
        classical_features(kind, clips)


def run(names: list[str], jobs: int) -> int:
    clips = benchmark_clips()
    networks = [n for n in names if ROWS[n].kind == 'network']
    extract_clip_features(networks, clips)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        codes = list(pool.map(lambda job: train_network_fold(*job), [(n, f) for n in networks for f in range(FOLDS)]))
    if any(codes):
        return 1
    for name in names:
        splits = benchmark_splits(clips, name)
        if ROWS[name].kind in SCORED:
            folds = score_network(name, clips, splits)
            labels = fold_predictor(name, 0, splits[0]).labels
        elif ROWS[name].kind == 'fusion' and 'functionals' in ROWS[name].settings:
            folds = score_fused_windows(name, clips, splits)
            labels = labels_present(clips)
        elif ROWS[name].kind == 'fusion':
            folds = score_fusion(name, clips, splits)
            labels = labels_present(clips)
        else:
            folds = run_classical(name, ROWS[name], clips, splits)
            labels = labels_present(clips)
        summary = save_result(name, folds, labels)['summary']
        print(f'[benchmark] {name}: ' + ', '.join(f"{d} {summary[d]['uar_mean']:.3f}" for d in CORPORA
                                                   if d in summary) + f", mean {summary['mean']:.3f}", flush=True)
    return 0


def rescore(names: list[str], spectral_mix: str) -> int:
    """Network rows' test folds scored again, each fold model re-exported from its weights by the current
    exporter (into a scratch folder) and run with this spectral mix, beside the stored figures. Checks
    that an export or runtime change leaves the benchmark as it was; stores nothing."""
    import tempfile

    import ser_models
    from ser_models.artifact import read_model_json, write_model_json
    from ser_models.export import export_from_weights
    clips = benchmark_clips()
    with tempfile.TemporaryDirectory() as scratch:
        def reexported(source: Path):
            copy = Path(scratch) / f'{source.parent.parent.name}-{source.parent.name}'
            copy.mkdir()
            meta = read_model_json(source)
            shutil.copyfile(source / meta['weights']['file'], copy / meta['weights']['file'])
            write_model_json(copy, export_from_weights(meta, copy))
            return ser_models.load(copy, spectral_mix=spectral_mix)
        for name in [n for n in names if ROWS[n].kind == 'network']:
            before = stored(name)
            summary = summarize(score_network(name, clips, benchmark_splits(clips, name), reexported),
                                before['labels'])
            views = [('offline', summary, before)] + [
                (f'node stream ({variant})', summary['online'][variant], before['online'][variant])
                for variant in ONLINE if 'online' in summary and 'online' in before]
            for view, now, then in views:
                print(f'[benchmark] {name}, {view}, spectral mix {spectral_mix}: ' + ', '.join(
                    f"{d} {now[d]['uar_mean']:.3f} (stored {then[d]['uar_mean']:.3f})" for d in CORPORA if d in now)
                    + f", mean {now['mean']:.3f} (stored {then['mean']:.3f})", flush=True)
    return 0


def validate(names: list[str]) -> int:
    """Score stored network and ensemble rows on their folds' validation clips (rows run before those
    figures were kept; speaker-normalised ones also as the node hears them), leaving their test figures
    as they are."""
    clips = benchmark_clips()
    allowed = corpus_labels(clips)
    for name in names:
        path = RESULTS / f'{name}.json'
        if ROWS[name].kind not in SCORED or not path.is_file():
            continue
        result = json.loads(path.read_text())
        for fold, split in zip(result['folds'], benchmark_splits(clips, name), strict=True):
            predictor = fold_predictor(name, fold['fold'], split)
            audio = validation_audio(predictor, split)
            fold['validation'] = validation_scores(predictor, split, allowed, audio)
            if predictor.features.config.normalize == 'speaker':
                fold['validation_stream'] = validation_stream_scores(predictor, split, allowed, audio)
        result['summary'] = summarize(result['folds'], result['summary']['labels'])
        rewrite_result(name, {'folds': result['folds'], 'summary': result['summary']})
        print(f"[benchmark] {name}: validation mean {result['summary']['validation']['mean']:.3f}", flush=True)
    return 0


def cell(summary: dict, dataset: str) -> str:
    entry = summary.get(dataset)
    return f"{entry['uar_mean']:.3f} ± {entry['uar_std']:.3f}" if entry else '–'


def report() -> str:
    lines = [f'UAR on unseen speakers, mean ± sd over the folds that test the corpus ({FOLDS} folds; TESS in 2).',
             '', '| row | EMOVO | RAVDESS | TESS | nEMO | mean of corpora | command |', '|---|---|---|---|---|---|---|']
    groups: dict[str, list[str]] = {}
    for name, row in ROWS.items():
        groups.setdefault(row.group, []).append(name)
    for group, names in groups.items():
        lines.append(f'| **{group}** | | | | | | |')
        for name in names:
            path = RESULTS / f'{name}.json'
            if not path.is_file():
                lines.append(f'| {ROWS[name].description} | not run | | | | | `{row_command(name)}` |')
                continue
            s = json.loads(path.read_text())['summary']
            lines.append(f"| {ROWS[name].description} | " + ' | '.join(cell(s, d) for d in CORPORA) +
                         f" | {s['mean']:.3f} | `{row_command(name)}` |")
    return '\n'.join(lines)


def confounds() -> str:
    """What a network says unrestricted: clips of a corpus given a class that corpus lacks."""
    lines = ['Share of clips whose unrestricted argmax is a class their corpus lacks (here mostly `disgust`, '
             'which only the Italian EMOVO has):', '', '| row | RAVDESS | TESS | nEMO |', '|---|---|---|---|']
    for name, row in ROWS.items():
        path = RESULTS / f'{name}.json'
        if row.kind not in SCORED or not path.is_file():
            continue
        s = json.loads(path.read_text())['summary']
        lines.append(f'| {row.description} | ' + ' | '.join(
            f"{s[d]['outside_classes']:.3f}" if 'outside_classes' in s.get(d, {}) else '–'
            for d in ('ravdess', 'tess', 'nemo')) + ' |')
    return '\n'.join(lines)


def skew_report() -> str:
    """Speaker-normalised rows when a speaker's statistics come from one emotion only, or (networks) from
    the node's running stream statistics."""
    lines = ["Speaker-normalised rows when each test speaker's statistics come from their clips of one emotion "
             'only (a stream that held a single emotion), and, for networks, as the node computes them: the '
             "training prior alone, or each speaker's running stream statistics over their clips played in "
             'random order or grouped by emotion. UAR mean over folds:', '',
             '| row | statistics from | EMOVO | RAVDESS | TESS | nEMO | mean of corpora |',
             '|---|---|---|---|---|---|---|']
    for name, row in ROWS.items():
        summary = stored(name) or {}
        if 'skewed' not in summary:
            continue
        sources = [('all clips', summary)] + [(f'{e} clips only', summary['skewed'][e]) for e in SKEWED]
        sources += [(text, summary['online'][v]) for v, text in ONLINE.items() if 'online' in summary]
        for source, s in sources:
            lines.append(f'| {row.description} | {source} | {mean_cells(s)} |')
    return '\n'.join(lines)


def mean_cells(summary: dict) -> str:
    """A summary's per-corpus UAR means and mean of corpora as table cells ('–' for a corpus it lacks)."""
    return ' | '.join([*(f"{summary[d]['uar_mean']:.3f}" if d in summary else '–' for d in CORPORA),
                       f"{summary['mean']:.3f}"])


def validation_report() -> str:
    """The figures that choose the shipped recipe and the default: the rows' validation clips."""
    lines = ['Validation clips of each fold, the figures that choose between recipes (the test speakers above '
             "chose nothing): RAVDESS's are whole actors held out of training, the other corpora's are clips of "
             'training speakers. UAR mean over folds; the highest mean is marked. Rows validated on other '
             'clips (split.min_validation_speakers) are left out here, in the validation-agreement table and in '
             'the recipes validation prefers:', '',
             '| row | EMOVO | RAVDESS | TESS | nEMO | mean of corpora |', '|---|---|---|---|---|---|']
    scored = {n: stored(n)['validation'] for n in ROWS if 'validation' in (stored(n) or {}) and default_validation(n)}
    chosen = max(scored, key=lambda n: scored[n]['mean'], default=None)
    for name, s in scored.items():
        mark = ' **(chosen)**' if name == chosen else ''
        lines.append(f'| {ROWS[name].description}{mark} | {mean_cells(s)} |')
    return '\n'.join(lines)


def classical_validation_report() -> str:
    """Classical rows on their folds' validation speakers (fitted without them), the figures that choose
    between classical recipes."""
    scored = {n: stored(n)['validation'] for n, row in ROWS.items()
              if row.kind == 'classical' and 'validation' in (stored(n) or {})}
    if not scored:
        return ''
    lines = ["Classical rows on each fold's validation speakers, fitted on the rest of its training side, the "
             'figures that choose between classical recipes: whole unseen speakers of every corpus with three or '
             "more on a fold's training side (EMOVO and nEMO one, RAVDESS two), clips of training speakers for "
             'TESS. UAR mean over folds:', '',
             '| row | EMOVO | RAVDESS | TESS | nEMO | mean of corpora |', '|---|---|---|---|---|---|']
    for name, s in scored.items():
        lines.append(f'| {ROWS[name].description} | {mean_cells(s)} |')
    return '\n'.join(lines)


def recipe(name: str) -> tuple:
    """A network row's training recipe with its seed left out (a fusion row's: its network's, and every
    other setting of the row; an ensemble's: its members'): rows that share one are draws of it."""
    settings = ROWS[name].settings
    if ROWS[name].kind == 'fusion':
        served = tuple(sorted((key, json.dumps(value)) for key, value in settings.items() if key != 'weights_of'))
        return 'fusion', recipe(settings['weights_of']), served
    if ROWS[name].kind == 'ensemble':
        return 'ensemble', tuple(recipe(member) for member in settings['members'])
    overrides = tuple(sorted(o for o in settings.get('overrides', []) if not o.startswith('training.seed=')))
    return settings['config'], overrides, tuple(settings.get('teachers', []))


def recipe_draws() -> list[list[str]]:
    """Scored network (and fusion) rows grouped by recipe, where a recipe was trained more than once."""
    groups: dict[tuple, list[str]] = {}
    for name, row in ROWS.items():
        if row.kind in ('network', 'fusion') and 'validation' in (stored(name) or {}):
            groups.setdefault(recipe(name), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def draws_report() -> str:
    """Recipes trained more than once (reruns and reseeds): how far their figures move between draws."""
    groups = recipe_draws()
    if not groups:
        return ''
    lines = ['Recipes trained more than once (the same command, or another `training.seed`): mean ± sd over the '
             "draws of the validation mean, RAVDESS's unseen validation actors and the test mean of corpora; "
             'the rows are named in the first column:', '',
             '| recipe (its draws) | draws | validation mean | RAVDESS validation actors | test mean of corpora |',
             '|---|---|---|---|---|']
    for names in groups:
        summaries = [stored(n) for n in names]
        columns = ([s['validation']['mean'] for s in summaries],
                   [s['validation']['ravdess']['uar_mean'] for s in summaries], [s['mean'] for s in summaries])
        lines.append(f"| {', '.join(f'`{n}`' for n in names)} | {len(names)} | " + ' | '.join(
            f'{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}' for values in columns) + ' |')
    return '\n'.join(lines)


def validation_agreement(summaries: list[dict]) -> dict[str, dict[str, float]]:
    """How well each validation figure ranks rows as their test figures do: Pearson and Spearman
    correlation, over the rows, of a corpus's validation UAR (or the validation mean) with test figures:
    its own corpus's UAR ('corpus'), the mean of corpora ('mean') and the mean of the other corpora
    ('others')."""
    from scipy.stats import pearsonr, spearmanr
    agreement = {}
    for key in (*CORPORA, 'mean'):
        validation = [s['validation'][key] if key == 'mean' else s['validation'][key]['uar_mean'] for s in summaries]
        tests = {'mean': [s['mean'] for s in summaries]}
        if key != 'mean':
            tests['corpus'] = [s[key]['uar_mean'] for s in summaries]
            tests['others'] = [np.mean([s[c]['uar_mean'] for c in CORPORA if c != key]) for s in summaries]
        agreement[key] = {f'{test}_{method.__name__[:-1]}': float(method(validation, figures)[0])
                          for test, figures in tests.items() for method in (pearsonr, spearmanr)}
    return agreement


def validation_agreement_report() -> str:
    """Whether the validation clips rank recipes as the test speakers do, over every trained row (stream
    rows repeat their source's figures and are left out). It judges the validation design, not a recipe."""
    summaries = [stored(n) for n, row in ROWS.items()
                 if row.kind in ('network', 'ensemble') and 'validation' in (stored(n) or {}) and default_validation(n)]
    if len(summaries) < 3:
        return ''
    agreement = validation_agreement(summaries)
    names = {'emovo': 'EMOVO', 'ravdess': 'RAVDESS', 'tess': 'TESS', 'nemo': 'nEMO', 'mean': 'mean of corpora'}
    held_out = {'ravdess': 'whole actors held out of training'}
    lines = [f'How well each validation figure ranks the {len(summaries)} trained rows above as their test figures '
             'do: correlation over the rows, Pearson / Spearman. Test figures enter only here, to judge the '
             'validation design; no recipe is chosen by them:', '',
             '| validation figure | with its corpus\'s test UAR | with the test mean of the other corpora | '
             'with the test mean of corpora |', '|---|---|---|---|']
    for key, entry in agreement.items():
        pairs = [f"{entry[f'{test}_pearson']:.2f} / {entry[f'{test}_spearman']:.2f}" if f'{test}_pearson' in entry
                 else '–' for test in ('corpus', 'others', 'mean')]
        source = '' if key == 'mean' else f" ({held_out.get(key, 'clips of training speakers')})"
        lines.append(f"| {names[key]}{source} | " + ' | '.join(pairs) + ' |')
    return '\n'.join(lines)


def marked(cell: dict, best: bool) -> str:
    """A choice table's cell: mean of corpora (bold where highest) and RAVDESS's validation actors."""
    return ('**{:.3f}** ({:.3f})' if best else '{:.3f} ({:.3f})').format(cell['mean'], cell['ravdess']['uar_mean'])


def averaged(cells: list[dict]) -> dict:
    """The mean of choice-table cells (mean of corpora and RAVDESS's validation actors)."""
    return {'mean': float(np.mean([c['mean'] for c in cells])),
            'ravdess': {'uar_mean': float(np.mean([c['ravdess']['uar_mean'] for c in cells]))}}


def choice_views(result: dict, key: str) -> dict[str, dict]:
    """A row's stored choice tables under `key` ('stream_prior' or 'fusion_choice'), by the stream order
    they heard (ONLINE's wording), and cell by cell their mean where both orders were heard."""
    views = {ONLINE[order]: result[f'{key}{suffix}'] for order, suffix in CHOICE_ORDERS.items()
             if f'{key}{suffix}' in result}
    if len(views) == len(CHOICE_ORDERS):
        tables = list(views.values())
        views['mean of the two orders'] = {s: (averaged([t[s] for t in tables]) if 'mean' in cell else
                                               {w: averaged([t[s][w] for t in tables]) for w in cell})
                                           for s, cell in tables[0].items()}
    return views


def stream_prior_report() -> str:
    """The validation clips as the node hears them, per stream prior (the figures that choose it; a
    choice reads the mean of the two orders where both were heard)."""
    views: dict[str, dict[str, dict]] = {}
    for name, row in ROWS.items():
        if row.kind == 'network' and (RESULTS / f'{name}.json').is_file():
            for view, priors in choice_views(json.loads((RESULTS / f'{name}.json').read_text()),
                                             'stream_prior').items():
                views.setdefault(view, {})[name] = priors
    sections = []
    for view, rows in views.items():
        lines = [f"Validation clips as the node hears them ({view}, running statistics per speaker), by "
                 "how many seconds of speech the training speakers' statistics count for at the start of a stream "
                 "(`python -m training.benchmark stream-prior --only ROW`). Mean of corpora, RAVDESS's unseen "
                 'validation actors in brackets; the highest mean is marked:', '',
                 '| row | ' + ' | '.join(f'{s:g} s' for s in STREAM_PRIORS) + ' |',
                 '|---|' + '---|' * len(STREAM_PRIORS)]
        for name, priors in rows.items():
            best = max(priors, key=lambda seconds: priors[seconds]['mean'])
            lines.append(f'| {ROWS[name].description} | ' + ' | '.join(
                marked(priors[str(s)], str(s) == best) for s in STREAM_PRIORS) + ' |')
        sections.append('\n'.join(lines))
    return '\n\n'.join(sections)


def fusion_choice_report() -> str:
    """Fused rows' validation clips as the node hears them, per stream prior and classifier share (the
    figures that choose them): each row, and the mean of the rows, in each stream order and both."""
    views: dict[str, dict[str, dict]] = {}
    for name in ROWS:
        if is_fused(name) and (RESULTS / f'{name}.json').is_file():
            for view, grid in choice_views(json.loads((RESULTS / f'{name}.json').read_text()),
                                           'fusion_choice').items():
                views.setdefault(view, {})[name] = grid
    lines = []
    for view, choices in views.items():
        lines += ['' if lines else None,
                  f"Fused rows' validation clips as the node hears them ({view}), by the stream prior of "
                  "both halves (rows) and the classifier's share of the probabilities (columns) (`python -m "
                  "training.benchmark stream-prior --only ROW`). Mean of corpora, RAVDESS's unseen validation "
                  'actors in brackets; the highest mean is marked.']
        tables = dict(choices)
        if len(choices) > 1:
            first = next(iter(choices.values()))
            tables['mean of the rows above'] = {s: {w: averaged([c[s][w] for c in choices.values()]) for w in cells}
                                                for s, cells in first.items()}
        for name, grid in tables.items():
            best = max(((s, w) for s in grid for w in grid[s]), key=lambda pair: grid[pair[0]][pair[1]]['mean'])
            lines += ['', f'{name}:', '', '| stream prior | ' + ' | '.join(f'{w:g}' for w in FUSION_WEIGHTS) + ' |',
                      '|---|' + '---|' * len(FUSION_WEIGHTS)]
            lines += [f'| {seconds:g} s | ' + ' | '.join(marked(grid[str(seconds)][str(w)],
                                                               (str(seconds), str(w)) == best)
                                                        for w in FUSION_WEIGHTS) + ' |' for seconds in STREAM_PRIORS]
    return '\n'.join(line for line in lines if line is not None)


def node_view(summary: dict) -> dict:
    """A row's figures as the node can reach them: speaker-normalised networks with the node's running
    stream statistics (clips in random order), not each test speaker's statistics over all their clips."""
    return summary['online']['shuffled'] if 'online' in summary else summary


@functools.cache
def stored(name: str) -> dict | None:
    """A row's stored summary (read once per process), None if the row has not been run."""
    path = RESULTS / f'{name}.json'
    return json.loads(path.read_text())['summary'] if path.is_file() else None


def shipped_models() -> list[tuple[str, dict, str | None]]:
    """(name, model.json, benchmark row or None) of each model in weights/, the default first."""
    models = []
    for name in SHIPPED:
        meta = json.loads((REPO / 'weights' / name / 'model.json').read_text())
        models.append((name, meta, meta.get('provenance', {}).get('benchmark', {}).get('row')))
    return models


def floor_line(before_corpora: str = '') -> str:
    """The floor's row for a report table of the shipped models (before_corpora: cells between its name
    and the corpora)."""
    floor = stored(FLOOR)
    return (f'| floor, {FLOOR} (one estimate a whole clip) | {before_corpora}' + ' | '.join(
        f"{floor[d]['uar_mean']:.3f}" for d in CORPORA) + f" | {floor['mean']:.3f} | `{row_command(FLOOR)}` |")


def utterance_report() -> str:
    """The shipped models' test speakers as /emotion/utterance publishes them, beside the same clips heard
    one estimate a clip (the headline's view). Both choose nothing."""
    key = f'test {UTTERANCE_PAUSE:g} s'
    lines = []
    for name, meta, row in shipped_models():
        view = scored_result(row).get('utterance_view', {}).get(key) if row else None
        if not view:
            continue
        clips = node_view(stored(row))
        lines.append(f"| `{name}`, {meta['model_id']} | " + ' | '.join(
            f"{view[d]['uar_mean']:.3f} ({clips[d]['uar_mean']:.3f})" for d in CORPORA) +
            f" | {view['mean']:.3f} ({clips['mean']:.3f}) | `python -m training.benchmark utterances --only {row}` |")
    if not lines:
        return ''
    lines.append(floor_line())
    return '\n'.join([
        f'The shipped models\' test speakers as `/emotion/utterance` publishes them: each speaker\'s clips in '
        f'random order, {UTTERANCE_PAUSE:g} s of silence after each, through the node\'s own pipeline, each clip '
        'taking the utterance that overlaps it most. UAR, mean over folds; in brackets the same clips as the '
        'headline hears them (one estimate a clip):', '',
        '| model | EMOVO | RAVDESS | TESS | nEMO | mean of corpora | command |', '|---|---|---|---|---|---|---|',
        *lines])


def lone_call_report() -> str:
    """Every stored lone-call view (lone_call_view): clips as a caller of Predictor.predict hears them,
    each node window a lone call, by lone window weight; validation views first (they choose)."""
    views = {name: scored_result(name).get('lone_call_view', {}) for name in ROWS if stored(name)}
    serves = {row: f" (`{name}`, {meta['model_id']})" for name, meta, row in shipped_models() if row}
    lines = []
    for side in ('validation', 'test'):
        for name, by_key in views.items():
            for key, view in by_key.items():
                if not key.startswith(side):
                    continue
                words = key.split()    # '<side> weight <w>[ functionals <f>]'
                functionals = f' --lone-functionals-weight {words[4]}' if len(words) > 3 else ''
                lines.append(f"| `{name}`{serves.get(name, '')} | {key} | " + ' | '.join(
                    f"{view[d]['uar_mean']:.3f}" if d in view else '' for d in CORPORA) + f" | {view['mean']:.3f} | "
                    f'`python -m training.benchmark lone-calls --side {side} --lone-weights {words[2]}{functionals} '
                    f'--only {name}` |')
    if not lines:
        return ''
    lines.append(floor_line('test | '))
    return '\n'.join([
        'Clips as a caller of `Predictor.predict` hears them (the issue\'s protocol): each clip\'s 3 s windows '
        'every 0.5 s, every one a lone call with no stream, probabilities averaged. A speaker-normalised '
        'model standardises a lone window with its training prior plus the window\'s own frames counted '
        '`weight` times (`ser_models.predictor.LONE_WINDOW_WEIGHT`), a fused model\'s functionals likewise '
        '(`functionals` times where shown, else `weight`). UAR, mean over folds:', '',
        '| row | clips, lone window weight | EMOVO | RAVDESS | TESS | nEMO | mean of corpora | command |',
        '|---|---|---|---|---|---|---|---|', *lines])


def headline() -> str:
    """The README's table: the shipped models, the recipe of each network family that validation prefers
    where that is not what ships, the floor, and the classical rows validation prefers among those the
    node could run and overall. Networks as the node runs them."""
    lines = ['| model | EMOVO | RAVDESS | TESS | nEMO | mean of corpora |', '|---|---|---|---|---|---|']
    shown = []
    for name, meta, row in shipped_models():
        default = ' (default)' if name == SHIPPED[0] else ''
        suffix = ' (node stream statistics)' if row and 'online' in (stored(row) or {}) else ''
        shown.append((f"`model:={name}`{default}, {meta['model_id']}: {ROWS[row].description}{suffix}" if row
                      else f"`model:={name}`, {meta['model_id']}: not on the benchmark yet", row))
    families: dict[str, list[str]] = {}
    for name, row in ROWS.items():
        if row.kind in SCORED and stored(name):
            source = ROWS[weights_row(name)]
            family = 'ensemble' if source.kind == 'ensemble' else Path(source.settings['config']).stem
            families.setdefault(family, []).append(name)
    shipped_rows = {weights_row(row) for _, row in shown if row}
    for family, names in families.items():
        # Chosen on validation clips, as the shipped recipes are: a maximum over test figures would flatter.
        validated = [n for n in names if 'validation' in stored(n) and default_validation(n)]
        if not validated:
            continue
        best = max(validated, key=lambda n: stored(n)['validation']['mean'])
        if weights_row(best) in shipped_rows:    # the shipped model's row already shows it
            continue
        suffix = ' (node stream statistics)' if 'online' in stored(best) else ''
        shown.append((f'{family} recipe validation prefers: {ROWS[best].description}{suffix}', best))
    # Classical rows too are chosen on their validation speakers, not on the test figures shown.
    classical = [n for n, r in ROWS.items() if r.kind == 'classical' and 'validation' in (stored(n) or {})]
    online = [n for n in classical if not ROWS[n].settings.get('speaker_norm')]
    best_online = max(online, key=lambda n: stored(n)['validation']['mean'])
    best = max(classical, key=lambda n: stored(n)['validation']['mean'])
    shown.append((f'floor: {ROWS[FLOOR].description}' + (', and the classical row validation prefers among those '
                  'the node could run' if best_online == FLOOR else ''), FLOOR))
    if best_online != FLOOR:
        shown.append((f'classical row validation prefers, as the node could run it: {ROWS[best_online].description}',
                      best_online))
    if best != best_online:
        shown.append(('classical row validation prefers, offline only (each test speaker\'s statistics from all '
                      f'their clips): {ROWS[best].description}', best))
    for label, row in shown:
        if row is None or not stored(row):
            lines.append(f'| {label} | – | – | – | – | – |')
            continue
        figures = node_view(stored(row))
        lines.append(f'| {label} | ' + ' | '.join(cell(figures, d) for d in CORPORA) + f" | {figures['mean']:.3f} |")
    return '\n'.join(lines)


def replace_section(path: Path, begin: str, end: str, body: str) -> None:
    text = path.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f'{path}: no {begin} ... {end} section to replace')
    head, rest = text.split(begin, 1)
    path.write_text(f'{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}')


def results_section() -> str:
    """Everything docs/results.md holds between its benchmark markers."""
    sections = [report(), validation_report(), classical_validation_report(), draws_report(),
                validation_agreement_report(), utterance_report(), lone_call_report(), stream_prior_report(),
                fusion_choice_report(), confounds(), skew_report()]
    return '\n\n'.join(section for section in sections if section)


def write_report(results_md: Path, readme: Path) -> None:
    replace_section(results_md, BEGIN, END, results_section())
    replace_section(readme, HEADLINE_BEGIN, HEADLINE_END, headline())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('action', choices=['run', 'final', 'validate', 'rescore', 'stream-prior', 'utterances',
                                           'lone-calls', 'report', 'commands', 'keep'])
    parser.add_argument('--only', nargs='*', choices=sorted(ROWS), help='rows (default: all)')
    parser.add_argument('--jobs', type=int, default=2, help='network folds trained at once (one thread each)')
    parser.add_argument('--write', action='store_true',
                        help='with report: rewrite the tables in docs/results.md and README.md')
    parser.add_argument('--spectral-mix', default='float16', help='with rescore: ser_models.SPECTRAL_MIX')
    parser.add_argument('--pause', type=float, default=UTTERANCE_PAUSE,
                        help='with utterances: seconds of silence after each clip')
    parser.add_argument('--side', choices=['test', 'validation'], default='test',
                        help='with utterances or lone-calls: whose clips are played')
    parser.add_argument('--lone-weights', type=float, nargs='+', metavar='W',
                        help="with lone-calls: how many times a lone window's own frames count beside the prior "
                             "(default: the row's lone_window_weight, else ser_models.predictor.LONE_WINDOW_WEIGHT)")
    parser.add_argument('--lone-functionals-weight', type=float, metavar='F',
                        help="with lone-calls: the same for a fused model's classical half (default: each W)")
    parser.add_argument('--speech-only', action='store_true',
                        help="with utterances: each utterance's audio stops at its last speech hop, not through "
                             'the pause that ended it (the node until 2026-12-07)')
    parser.add_argument('--stream-prior', type=float, metavar='SECONDS',
                        help="with utterances: a network's streams start from its training prior worth SECONDS")
    args = parser.parse_args(argv)
    names = args.only or list(ROWS)
    if args.action == 'rescore':
        return rescore(names, args.spectral_mix)
    if args.action == 'run':
        return run(names, args.jobs)
    if args.action == 'stream-prior':
        return stream_prior(names)
    if args.action == 'utterances':
        return utterance_view(names, args.pause, args.side, args.speech_only, args.stream_prior)
    if args.action == 'lone-calls':
        return lone_call_view(names, args.side, args.lone_weights, args.lone_functionals_weight)
    if args.action == 'validate':
        return validate(names)
    if args.action == 'keep':
        return keep(names)
    if args.action == 'final':   # a network row's recipe on every speaker, to ship with training.ship
        extract_clip_features(names, benchmark_clips())
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            codes = list(pool.map(lambda name: train_network_fold(name, None),
                                  {weights_row(n) for n in names if ROWS[n].kind in ('network', 'stream')}))
        return 1 if any(codes) else 0
    if args.action == 'commands':
        for name in names:
            commands = [network_command(name, f) for f in range(FOLDS)] if ROWS[name].kind == 'network' else []
            print(f'# {name}: {row_command(name)}')
            for command in commands:
                print(' '.join(shlex.quote(a) for a in ['python', *command[1:]]))
        return 0
    if args.write:
        write_report(REPO / 'docs' / 'results.md', REPO / 'README.md')
    else:
        print(f'{results_section()}\n\n{headline()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
