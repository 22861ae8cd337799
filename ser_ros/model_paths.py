"""Where the shipped weights live: the package's share directory, or the source checkout."""
from __future__ import annotations

from pathlib import Path

MODELS = ('cktim', 'cktim_egemaps', 'lmu', 'lmu_egemaps', 'timnet', 'timnet_egemaps')
DEFAULT_MODEL = 'timnet_egemaps'   # the best on unseen speakers (docs/results.md)
SOURCE_WEIGHTS = Path(__file__).resolve().parents[1] / 'weights'
# For parameter and launch argument descriptions; an *_egemaps model fuses its network with an eGeMAPS SVM.
MODEL_CHOICES = ', '.join([f'{DEFAULT_MODEL} (default)', *(m for m in MODELS if m != DEFAULT_MODEL)])


def shipped_weights_dir() -> Path:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            share = Path(get_package_share_directory('ser_ros')) / 'weights'
            if share.is_dir():
                return share
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return SOURCE_WEIGHTS


def resolve_model_dir(model: str, weights: str = '') -> Path:
    """The artifact directory for a model name, or the explicit weights path (resolved, checked)."""
    if weights:
        path = Path(weights).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f'weights {weights!r} -> {path}: not a directory')
        return path
    if model not in MODELS:
        raise ValueError(f'model must be one of {MODELS}, got {model!r}')
    path = shipped_weights_dir() / model
    if not (path / 'model.json').is_file():
        raise FileNotFoundError(f'no shipped weights for {model!r} at {path}')
    return path
