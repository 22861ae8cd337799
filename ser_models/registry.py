"""Model architectures by name, their defaults, and build(config). Imports torch."""
from __future__ import annotations

from torch import nn

from .lmu import LMUClassifier
from .timnet import TIMNet

ARCHITECTURES = {
    # Plain TIM-Net baseline.
    'timnet': dict(n_tab=8, filters=39, kernel_size=2, dropout=0.1, ck_tab=False, ck_input=False),
    # CkTIM-net: CKConv in every TAB and in the input convolutions; kernel_mask makes their kernels start local.
    'cktim': dict(n_tab=8, filters=39, kernel_size=2, dropout=0.1, ck_tab=True, ck_input=True,
                  omega_0=25.0, generator='conv', hidden_scale=1, weight_norm=True, kernel_mask=False),
    'lmu': dict(hidden_size=128, memory_inputs=8, order=64, theta=None, layers=2, dropout=0.1),
}


def resolve_config(config: dict) -> dict:
    """Fill an architecture config with its defaults; raise on unknown names or keys."""
    name = config.get('name')
    if name not in ARCHITECTURES:
        raise ValueError(f'unknown model {name!r}; choose one of {sorted(ARCHITECTURES)}')
    for required in ('n_classes', 'n_mfcc', 'frames'):
        if not isinstance(config.get(required), int) or config[required] <= 0:
            raise ValueError(f'model config needs a positive integer {required!r}, got {config.get(required)!r}')
    allowed = set(ARCHITECTURES[name]) | {'name', 'n_classes', 'n_mfcc', 'frames'}
    unknown = set(config) - allowed
    if unknown:
        raise ValueError(f'unknown settings for model {name!r}: {sorted(unknown)}')
    resolved = {'name': name, **ARCHITECTURES[name], **config}
    if name == 'lmu' and resolved['theta'] is None:
        resolved['theta'] = float(resolved['frames'])
    return resolved


def build(config: dict) -> nn.Module:
    """Build any model from an architecture config (see ARCHITECTURES for the keys)."""
    c = resolve_config(config)
    settings = {k: v for k, v in c.items() if k not in ('name', 'frames')}
    if c['name'] == 'lmu':
        return LMUClassifier(**settings)
    return TIMNet(**settings)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
