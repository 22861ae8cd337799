"""Windows over a clip, as the node cuts them from a stream: fixed length, fixed hop."""
from __future__ import annotations

import numpy as np

from .predictor import fit_to_length


def clip_windows(waveform: np.ndarray, window: int, hop: int) -> np.ndarray:
    """(N, window) windows covering a mono clip; a clip shorter than one window is centre-padded.

    Starts are 0, hop, 2*hop, ... and a last window ends exactly at the clip's end, so no audio
    is left out.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if hop <= 0 or window <= 0:
        raise ValueError('window and hop must be positive')
    if waveform.shape[-1] <= window:
        return fit_to_length(waveform, window)[None]
    last = waveform.shape[-1] - window
    starts = list(range(0, last + 1, hop))
    if starts[-1] != last:
        starts.append(last)
    return np.stack([waveform[s:s + window] for s in starts])


def predict_clip(predictor, waveform: np.ndarray, sample_rate: int, hop_seconds: float = 0.5) -> np.ndarray:
    """Probabilities for a clip of any length: the mean over its windows."""
    if sample_rate != predictor.sample_rate:
        import soxr
        waveform = soxr.resample(np.asarray(waveform, dtype=np.float32), sample_rate, predictor.sample_rate)
    windows = clip_windows(waveform, predictor.window_samples, int(round(hop_seconds * predictor.sample_rate)))
    return predictor.predict_windows(windows).mean(axis=0)
