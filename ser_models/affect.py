"""From class probabilities to ROS4HRI's expression, valence and arousal (no ROS here).

Valence and arousal are the probability-weighted mean of one point per class in Russell's circumplex
(valence: unpleasant -1 .. pleasant +1; arousal: calm -1 .. excited +1). The points are placements
consistent with the circumplex literature, not values measured on our data; a neutral voice sits at
the origin, so an unsure model's output drifts towards (0, 0).
"""
from __future__ import annotations

import numpy as np

# class label -> (hri_msgs/Expression constant, valence, arousal)
AFFECT = {
    'neutral': ('neutral', 0.0, 0.0),
    'calm': ('neutral', 0.4, -0.6),
    'happy': ('happy', 0.8, 0.5),
    'sad': ('sad', -0.7, -0.4),
    'angry': ('angry', -0.6, 0.8),
    'fearful': ('scared', -0.6, 0.7),
    'surprised': ('surprised', 0.2, 0.8),
    'disgust': ('disgusted', -0.7, 0.3),
}


def expression(label: str) -> str:
    """The hri_msgs/Expression constant for a class label."""
    if label not in AFFECT:
        raise ValueError(f'no ROS4HRI expression for class {label!r}; known: {sorted(AFFECT)}')
    return AFFECT[label][0]


def valence_arousal(labels: list[str], probabilities) -> tuple[float, float]:
    """Probability-weighted circumplex position of a window, each in [-1, 1]."""
    points = np.array([AFFECT[label][1:] for label in labels], dtype=np.float64)
    weights = np.asarray(probabilities, dtype=np.float64)
    valence, arousal = weights @ points / max(weights.sum(), 1e-12)
    return float(valence), float(arousal)
