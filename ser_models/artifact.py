"""The saved-model directory: model.json + model.safetensors + model.onnx.

model.json is the one source of truth for what the weights mean: architecture, labels in
output order, feature settings, sample rate, window length and provenance. It is validated
against MODEL_JSON_SCHEMA before anything else is read. Weights are safetensors (never pickle)
and are checked against the sha256 recorded in model.json. An ensemble's directory holds a
model.json of the front end and how streams start, and one such directory per member, whose
model.json sha256 it records.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import numpy as np

from .features import FeatureConfig
from .functionals import FUSION_RULES
from .functionals import KINDS as FUNCTIONAL_KINDS

FORMAT_VERSION = 1
MODEL_JSON = 'model.json'
WEIGHTS_FILE = 'model.safetensors'
ONNX_FILE = 'model.onnx'

_file_entry = {
    'type': 'object',
    'required': ['file', 'sha256'],
    'properties': {'file': {'type': 'string', 'pattern': r'^[A-Za-z0-9_.-]+$'},
                   'sha256': {'type': 'string', 'pattern': '^[0-9a-f]{64}$'}},
}

MODEL_JSON_SCHEMA = {
    'type': 'object',
    'required': ['format_version', 'model_id', 'labels', 'features', 'sample_rate', 'window_seconds'],
    # A network has its architecture and weights; an ensemble has members, each a network artifact in a
    # subfolder, and serves the mean of their probabilities on the front end this file describes.
    'if': {'required': ['members']},
    'else': {'required': ['architecture', 'weights']},
    'properties': {
        'format_version': {'const': FORMAT_VERSION},
        'model_id': {'type': 'string', 'minLength': 1},
        'architecture': {'type': 'object', 'required': ['name', 'n_classes', 'n_mfcc', 'frames'],
                         'properties': {'name': {'enum': ['cktim', 'timnet', 'lmu']},
                                        'n_classes': {'type': 'integer', 'minimum': 2},
                                        'n_mfcc': {'type': 'integer', 'minimum': 1},
                                        'frames': {'type': 'integer', 'minimum': 1}}},
        'labels': {'type': 'array', 'items': {'type': 'string', 'minLength': 1}, 'minItems': 2,
                   'uniqueItems': True},
        'features': {'type': 'object'},
        'sample_rate': {'type': 'integer', 'minimum': 1},
        'window_seconds': {'type': 'number', 'exclusiveMinimum': 0},
        'weights': _file_entry,
        'members': {'type': 'array', 'minItems': 2, 'items': {
            'type': 'object', 'required': ['directory', 'sha256'],
            'properties': {'directory': {'type': 'string', 'pattern': r'^[A-Za-z0-9_-][A-Za-z0-9_.-]*$'},
                           'sha256': {'type': 'string', 'pattern': '^[0-9a-f]{64}$'}}}},
        'onnx': _file_entry,
        'provenance': {'type': 'object'},
        # CkTIM: the fastest spectral mix whose probabilities stayed within SPECTRAL_MIX_ATOL of the
        # torch model on real speech when it shipped; 'auto' runs it (float16 where absent).
        'spectral_mix': {'enum': ['float16', 'float32', 'onnx']},
        # Speeds each window is also heard at (resampled as speed perturbation does), the class
        # probabilities averaged over them; absent: [1.0], the window as it is.
        'test_time_speeds': {'type': 'array', 'minItems': 1, 'uniqueItems': True,
                             'items': {'type': 'number', 'minimum': 0.5, 'maximum': 2.0}},
        # Models on speaker-normalised features, a lone call (no stream): how many times a window's own
        # frames count beside the training statistics; absent: predictor.LONE_WINDOW_WEIGHT.
        'lone_window_weight': {'type': 'number', 'minimum': 0},
        # Models on speaker-normalised features: where a stream's statistics start (the training
        # speakers', worth `frames` frames) and how many frames they remember.
        'speaker_normalization': {
            'type': 'object', 'required': ['mean', 'std', 'frames', 'memory_frames'],
            'properties': {'mean': {'type': 'array', 'items': {'type': 'number'}},
                           'std': {'type': 'array', 'items': {'type': 'number', 'exclusiveMinimum': 0}},
                           'frames': {'type': 'number', 'minimum': 0},
                           'memory_frames': {'type': 'number', 'exclusiveMinimum': 0}}},
        # Each label's share of the network's training draws; its log-probabilities are offset by
        # -correction * log(share) (logit adjustment: a label drawn rarely is not called rarely for it).
        'label_prior': {
            'type': 'object', 'required': ['shares', 'correction'],
            'properties': {'shares': {'type': 'array', 'items': {'type': 'number', 'exclusiveMinimum': 0}},
                           'correction': {'type': 'number', 'minimum': 0, 'maximum': 1}}},
        # A fused model: a classifier on each window's acoustic functionals (ser_models.functionals),
        # its probabilities joined with the network's at `weight` by `fusion` (absent: 'mean').
        'functionals': {
            'type': 'object', 'required': ['kind', 'onnx', 'classes', 'weight', 'speaker_normalization'],
            'properties': {'kind': {'enum': list(FUNCTIONAL_KINDS)},
                           'onnx': _file_entry,
                           'classes': {'type': 'array', 'items': {'type': 'string'}, 'minItems': 2,
                                       'uniqueItems': True},
                           'weight': {'type': 'number', 'exclusiveMinimum': 0, 'maximum': 1},
                           'one_pass': {'type': 'boolean'},   # fitted on one-pass functionals; absent: false
                           'fusion': {'enum': list(FUSION_RULES)},
                           'speaker_normalization': {
                               'type': 'object', 'required': ['mean', 'std', 'frames'],
                               'properties': {'mean': {'type': 'array', 'items': {'type': 'number'}},
                                              'std': {'type': 'array',
                                                      'items': {'type': 'number', 'exclusiveMinimum': 0}},
                                              'frames': {'type': 'number', 'minimum': 0}}}}},
    },
}


# What only a network's model.json holds, never an ensemble's: each member serves these itself.
NETWORK_KEYS = frozenset({'architecture', 'weights', 'onnx', 'spectral_mix', 'label_prior'})


class ArtifactError(ValueError):
    """A model artifact is missing, corrupt or inconsistent; the message names the file."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def read_model_json(directory) -> dict:
    """Read and validate model.json of an artifact directory."""
    directory = Path(directory).expanduser().resolve()
    path = directory / MODEL_JSON
    if not directory.is_dir():
        raise ArtifactError(f'{directory}: model directory does not exist')
    if not path.is_file():
        raise ArtifactError(f'{path}: missing (every model directory needs a model.json)')
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f'{path}: not valid JSON ({error})') from None
    try:
        jsonschema.validate(meta, MODEL_JSON_SCHEMA)
    except jsonschema.ValidationError as error:
        where = '/'.join(str(p) for p in error.absolute_path) or '(top level)'
        raise ArtifactError(f'{path}: invalid at {where}: {error.message}') from None
    if 'members' in meta:
        misplaced = sorted(set(meta) & NETWORK_KEYS)
        if misplaced:
            raise ArtifactError(f"{path}: an ensemble's {', '.join(misplaced)} belong in its members' model.json")
    elif len(meta['labels']) != meta['architecture']['n_classes']:
        raise ArtifactError(f"{path}: {len(meta['labels'])} labels but n_classes is "
                            f"{meta['architecture']['n_classes']}")
    try:
        features = FeatureConfig.from_dict(meta['features'])
    except (TypeError, ValueError) as error:
        raise ArtifactError(f'{path}: bad feature settings: {error}') from None
    if features.sample_rate != meta['sample_rate']:
        raise ArtifactError(f"{path}: features.sample_rate {features.sample_rate} != sample_rate "
                            f"{meta['sample_rate']}")
    statistics = meta.get('speaker_normalization')
    if statistics and not len(statistics['mean']) == len(statistics['std']) == features.channels:
        raise ArtifactError(f'{path}: speaker_normalization needs {features.channels} means and standard deviations')
    architecture = meta.get('architecture')
    if architecture and architecture['n_mfcc'] != features.channels:
        raise ArtifactError(f"{path}: architecture.n_mfcc {architecture['n_mfcc']} (the input channels) "
                            f"does not match the {features.channels} feature channels")
    expected_frames = features.num_frames(window_samples(meta))
    if architecture and architecture['frames'] != expected_frames:
        raise ArtifactError(f"{path}: architecture.frames {architecture['frames']} does not match "
                            f"the {expected_frames} frames of a {meta['window_seconds']} s window")
    prior = meta.get('label_prior')
    if prior and len(prior['shares']) != len(meta['labels']):
        raise ArtifactError(f"{path}: label_prior has {len(prior['shares'])} shares for {len(meta['labels'])} labels")
    functionals = meta.get('functionals')
    if functionals:
        unknown = sorted(set(functionals['classes']) - set(meta['labels']))
        if unknown:
            raise ArtifactError(f'{path}: functionals classes {unknown} are not among the labels')
        statistics = functionals['speaker_normalization']
        if len(statistics['mean']) != len(statistics['std']):
            raise ArtifactError(f'{path}: functionals speaker_normalization needs as many means as deviations')
    meta['_directory'] = str(directory)
    return meta


def with_stream_prior(meta: dict, seconds: float) -> dict:
    """meta whose streams start from the training speakers' statistics counted as `seconds` of speech
    (speaker_normalization.frames); the statistics themselves stay as they are."""
    statistics = meta.get('speaker_normalization')
    if not statistics:
        raise ArtifactError(f"{meta.get('model_id')}: no speaker_normalization statistics to start streams from")
    if not seconds > 0:
        raise ValueError(f'a stream prior must be worth a positive number of seconds, got {seconds}')
    features = FeatureConfig.from_dict(meta['features'])
    return {**meta, 'speaker_normalization': {**statistics,
                                              'frames': seconds * features.sample_rate / features.hop_length}}


def with_label_prior(meta: dict, shares, correction: float) -> dict:
    """meta whose network offsets its logits by -correction * log(share of each label in its training
    draws), shares in meta['labels'] order (normalised here)."""
    shares = np.asarray(shares, dtype=np.float64)
    if shares.shape != (len(meta['labels']),) or not np.all(shares > 0):
        raise ValueError(f"label shares must be {len(meta['labels'])} positive numbers, got {shares.tolist()}")
    if not 0 <= correction <= 1:
        raise ValueError(f'a label prior correction must be in [0, 1], got {correction}')
    return {**meta, 'label_prior': {'shares': (shares / shares.sum()).tolist(), 'correction': float(correction)}}


def stream_prior_seconds(meta: dict) -> float:
    """How many seconds of speech a stream's prior is worth (with_stream_prior's inverse)."""
    features = FeatureConfig.from_dict(meta['features'])
    return meta['speaker_normalization']['frames'] * features.hop_length / features.sample_rate


def window_samples(meta: dict) -> int:
    return int(round(meta['window_seconds'] * meta['sample_rate']))


def checked_file(meta: dict, key: str, entry: dict | None = None) -> Path:
    """Path of the artifact file named in meta[key] (or `entry`, named key), verified to exist and match
    its sha256."""
    entry = entry or meta.get(key)
    directory = Path(meta['_directory'])
    if entry is None:
        raise ArtifactError(f'{directory / MODEL_JSON}: no {key!r} entry')
    path = directory / entry['file']
    if not path.is_file():
        raise ArtifactError(f'{path}: missing ({key} file named in model.json)')
    actual = sha256_of(path)
    if actual != entry['sha256']:
        raise ArtifactError(f'{path}: sha256 {actual[:12]}… does not match model.json '
                            f'({entry["sha256"][:12]}…): the file is corrupt or from another model')
    return path


def member_directories(meta: dict) -> list[Path]:
    """An ensemble's member folders, each one's model.json verified to be the one the ensemble names."""
    return [checked_file(meta, f'members[{index}]', {'file': f"{entry['directory']}/{MODEL_JSON}",
                                                     'sha256': entry['sha256']}).parent
            for index, entry in enumerate(meta['members'])]


def ensemble_model_json(directory: Path, members: list[str], model_id: str) -> dict:
    """The model.json of an ensemble of the network artifacts in directory's subfolders `members`: the first
    one's front end, how its streams start and the data it learned from, and every member's sha256."""
    first = read_model_json(Path(directory) / members[0])
    meta = {key: value for key, value in first.items() if key not in NETWORK_KEYS and not key.startswith('_')}
    data = first.get('provenance', {}).get('data')
    return {**meta, 'model_id': model_id, 'provenance': {'data': data} if data else {},
            'members': [{'directory': member, 'sha256': sha256_of(Path(directory) / member / MODEL_JSON)}
                        for member in members]}


def write_model_json(directory: Path, meta: dict) -> None:
    clean = {k: v for k, v in meta.items() if not k.startswith('_')}
    jsonschema.validate(clean, MODEL_JSON_SCHEMA)
    (directory / MODEL_JSON).write_text(json.dumps(clean, indent=2, sort_keys=True) + '\n')
