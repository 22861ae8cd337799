"""ROS-free ML core of ser_ros: MFCC front end, CkTIM-net / TIM-Net / LMU, artifacts, predictors.

Importing this package does not import torch; `build` and `save_artifact` do, on first use.
"""
from .artifact import ArtifactError, read_model_json
from .features import FeatureConfig, MfccExtractor
from .predictor import (
    BACKENDS,
    DEVICES,
    SPECTRAL_MIX,
    SPECTRAL_MIX_ATOL,
    SPECTRAL_MIX_CHOICES,
    Predictor,
    load,
    resolve_device,
)

__all__ = ['ArtifactError', 'BACKENDS', 'DEVICES', 'FeatureConfig', 'MfccExtractor', 'Predictor', 'SPECTRAL_MIX',
           'SPECTRAL_MIX_ATOL', 'SPECTRAL_MIX_CHOICES', 'build', 'load', 'read_model_json', 'resolve_device',
           'save_artifact']


def build(config: dict):
    """Build a torch model from an architecture config (see ser_models.registry.ARCHITECTURES)."""
    from .registry import build as build_model
    return build_model(config)


def save_artifact(model, directory, **kwargs):
    """Save a torch model as an artifact directory (model.json, safetensors, ONNX)."""
    from .export import save_artifact as save
    return save(model, directory, **kwargs)
