"""Training configuration: YAML files, presets and command-line overrides, resolved into one dict."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

PRESETS_DIR = Path(__file__).parent / 'presets'

DEFAULTS = {
    'model': {'name': 'cktim'},
    'window_seconds': 3.0,
    'features': {},                      # FeatureConfig fields; empty = its defaults
    'data': {'root': '../shared/data', 'manifest': None, 'datasets': ['emovo', 'ravdess', 'tess', 'nemo'],
             'balance': True,                 # draw every corpus equally often in training
             'balance_classes': False},       # and every label (training.train.sampling_weights)
    # For features.normalize=speaker: a stream starts from the training speakers' statistics, worth
    # prior_seconds of speech, and remembers memory_seconds (carried in model.json).
    'speaker_normalization': {'prior_seconds': 10.0, 'memory_seconds': 300.0},
    'split': {
        'protocol': 'speaker_kfold',     # speaker_kfold | paper_random_kfold | all_speakers
        'folds': 4,
        'fold': None,                    # None: every fold; an int: only that one
        'validation_fraction': 0.15,     # of training speakers (or clips, for corpora with < 4 speakers)
        'seed': 0,                       # which speakers fall in which fold; training.seed leaves them alone
        # Corpora with at least this many speakers on the training side give whole speakers to validation.
        'min_validation_speakers': 4,
        # The carved validation clips train too (nothing left to validate on): with training.select=
        # last_epoch, a refit on every training speaker for an epoch count chosen before.
        'validation_into_training': False,
    },
    'augment': {
        'copies': 1,                     # augmented passes over the training set per epoch
        'noise_prob': 0.5, 'noise_snr_db': [10.0, 30.0],
        'shift_max_seconds': 0.3,
        'speed_prob': 0.3, 'speed_range': [0.9, 1.1],
        # With features.pitch: a sped-up window's F0 channel shifted back by 12 log2(factor) semitones, so
        # speed perturbation varies tempo and vocal tract but not pitch against the speaker's statistics.
        'speed_keeps_f0': False,
        'pitch_prob': 0.0, 'pitch_semitones': 2.0,
        'vtlp_prob': 0.0, 'vtlp_range': [0.9, 1.1],   # mel filters warped by alpha (VTLP)
        'reverse_prob': 0.0,
        'gain_db': [-6.0, 6.0],
        'spec_time_masks': 2, 'spec_time_width': 12,
        'spec_freq_masks': 2, 'spec_freq_width': 4,
        # Share of windows of speaker-normalised models standardised as a stream's statistics stand early
        # on: the stream prior plus the window's clip and up to partial_speaker_clips - 1 more of its
        # speaker's clips, instead of all of them; 0 off.
        'partial_speaker_prob': 0.0, 'partial_speaker_clips': 4,
        # Virtual speakers (speaker-normalised models): a share of windows comes from a speaker's clips
        # played at one of these speeds, standardised with that virtual speaker's own statistics (all its
        # clips played so) rather than the real speaker's; speed_prob's perturbation still applies on top.
        'virtual_speaker_prob': 0.0, 'virtual_speaker_speeds': [],
        # Speaker-normalised models: a share of windows comes from their clip followed by
        # stream_pause_seconds of silence, standardised with statistics over clips each so followed,
        # as a stream's statistics count the pause after each utterance; 0 off.
        'stream_pause_prob': 0.0, 'stream_pause_seconds': 1.5,
    },
    'training': {
        'epochs': 60, 'batch_size': 64,
        'optimizer': 'adam', 'lr': 1e-3, 'betas': [0.93, 0.98], 'weight_decay': 0.0,
        'label_smoothing': 0.1,
        # Each window's loss (and its teachers' targets) over the classes its corpus has only, as scores
        # take the argmax: a clip of a corpus without `disgust` neither learns it away nor smooths into it.
        'corpus_classes_only': False,
        'mixup': 0.0,                    # Beta(a, a) mixing of pairs of training windows and labels; 0 off
        # Weight of a speaker classifier trained through gradient reversal on the embedding the emotion
        # classifier reads (ramped up over training), so the embedding stops encoding who speaks; 0 off.
        'speaker_adversarial': 0.0,
        # Knowledge distillation: artifacts whose averaged probabilities (softened by the temperature)
        # the student also learns from, with this share of the loss; none: off (training/distill.py).
        'teachers': [], 'distill_weight': 0.5, 'distill_temperature': 2.0,
        # A classical teacher as well (or alone): each training clip's probabilities from an RBF SVM on these
        # whole-clip features (mfcc_stats | egemaps | compare), speaker-standardised, fitted without the
        # clip's speaker group (training.classical.out_of_speaker_probabilities); null: none. Features
        # are cached in feature_cache (a folder; null: no cache).
        'clip_teacher': None, 'feature_cache': None,
        # Multi-task: a linear head on the embedding the emotion classifier reads also regresses each
        # training clip's whole-clip features of this kind (as clip_teacher's), standardised over its
        # speaker's clips, adding feature_target_weight times their mean squared error to the loss; the
        # head is not exported. null: off.
        'feature_targets': None, 'feature_target_weight': 0.2,
        # Exponential moving average of the weights (and BatchNorm statistics), updated every step with this
        # decay; validation scores it and it is what gets kept. 0: off, the raw weights are kept.
        'weight_average_decay': 0.0,
        'scheduler': 'plateau', 'plateau_factor': 0.25, 'plateau_patience': 5, 'min_lr': 1e-5,
        'lr_drops': [],                  # scheduler steps: epochs that start at plateau_factor times the LR
        'early_stop_patience': 15,       # epochs without validation UAR gain; 0 disables
        'select': 'best_validation',     # best_validation | last_epoch (the paper protocol)
        # Which validation clips choose the epoch: all, or only those of speakers absent from the
        # training side (falls back to all when there are none, e.g. a corpus with clip-level validation).
        'validate_on': 'all',            # all | unseen_speakers
        'seed': 0, 'device': 'auto', 'amp': True,
        'threads': 0,                    # CPU threads for torch and numpy's BLAS; 0: their defaults
    },
}


def deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict:
    """'training.lr=0.01' -> {'training': {'lr': 0.01}}; the value is parsed as YAML."""
    if '=' not in text:
        raise ValueError(f'override {text!r} is not KEY=VALUE')
    dotted, raw = text.split('=', 1)
    value = yaml.safe_load(raw) if raw != '' else None
    result: dict = {}
    node = result
    keys = dotted.strip().split('.')
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return result


def check_known_keys(config: dict, reference: dict, where: str = '') -> None:
    for key, value in config.items():
        if key not in reference:
            raise ValueError(f'unknown config key {where}{key!r}')
        if isinstance(reference[key], dict) and reference[key] and isinstance(value, dict):
            check_known_keys(value, reference[key], f'{where}{key}.')


def resolve(config_file=None, presets=(), overrides=()) -> dict:
    """Defaults <- presets <- config file <- KEY=VALUE overrides."""
    config = copy.deepcopy(DEFAULTS)
    layers = [PRESETS_DIR / f'{name}.yaml' for name in presets]
    if config_file:
        layers.append(Path(config_file))
    for layer in layers:
        if not layer.is_file():
            known = sorted(p.stem for p in PRESETS_DIR.glob('*.yaml'))
            raise FileNotFoundError(f'{layer}: no such config (presets: {known})')
        config = deep_merge(config, yaml.safe_load(layer.read_text()) or {})
    for text in overrides:
        config = deep_merge(config, parse_override(text))
    check_known_keys({k: v for k, v in config.items() if k not in ('model', 'features')}, DEFAULTS)
    if config['split']['validation_into_training'] and config['training']['select'] != 'last_epoch':
        raise ValueError('split.validation_into_training leaves nothing to choose an epoch on: '
                         'set training.select=last_epoch and training.epochs')
    augment = config['augment']
    if augment['virtual_speaker_prob'] and (config['features'].get('normalize') != 'speaker'
                                            or not augment['virtual_speaker_speeds']):
        raise ValueError('augment.virtual_speaker_prob needs features.normalize=speaker (a virtual speaker is its '
                         'own statistics) and augment.virtual_speaker_speeds')
    if augment['stream_pause_prob'] and (config['features'].get('normalize') != 'speaker'
                                         or augment['stream_pause_seconds'] <= 0):
        raise ValueError('augment.stream_pause_prob needs features.normalize=speaker and augment.stream_pause_seconds '
                         '> 0')
    return config
