"""The classical half of a fused model: window functionals, their speaker statistics, fusion."""
import numpy as np
import pytest

from ser_models.functionals import Functionals, FunctionalsExtractor, as_frames, speaker_statistics


def probe_classifier(standardised: np.ndarray) -> np.ndarray:
    """Two-class probabilities from the first standardised functional (a deterministic stand-in)."""
    first = 1.0 / (1.0 + np.exp(-standardised[:, 0]))
    return np.stack([first, 1.0 - first], axis=1)


def prior(dims: int = 3) -> dict:
    return {'mean': [0.0] * dims, 'std': [1.0] * dims, 'frames': 2.0}


def test_fused_probabilities_weigh_the_two_halves():
    functionals = Functionals(None, probe_classifier, prior(), weight=0.25)
    network, classical = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert np.allclose(functionals.fuse(network, classical), [[0.75, 0.25]])
    with pytest.raises(ValueError, match='weight'):
        Functionals(None, probe_classifier, prior(), weight=0.0)


def test_offline_statistics_take_each_speakers_offset_away():
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=(4, 3)) for _ in range(4)]
    functionals = Functionals(None, probe_classifier, prior())
    same = functionals.clip_probabilities(clips, ['a', 'a', 'b', 'b'])
    shifted = functionals.clip_probabilities([c + (5.0 if i < 2 else -3.0) for i, c in enumerate(clips)],
                                             ['a', 'a', 'b', 'b'])
    assert np.allclose(same, shifted, atol=1e-5)
    rows = np.concatenate(clips[:2])
    assert np.allclose(speaker_statistics(rows)(as_frames(rows))[..., 0].mean(axis=0), 0.0, atol=1e-6)


def test_a_stream_starts_from_the_prior_and_keeps_speakers_apart():
    rng = np.random.default_rng(1)
    clips = [rng.normal(3.0, 2.0, size=(3, 3)) for _ in range(4)]
    speakers = ['a', 'b', 'a', 'b']
    functionals = Functionals(None, probe_classifier, prior())
    # Counted with weight 0 a stream never moves off the prior.
    frozen = functionals.clip_probabilities(clips, speakers, range(4), weight=0.0)
    start = functionals.stream_normalizer()
    assert np.allclose(frozen, [probe_classifier(start(as_frames(c))[..., 0]).mean(axis=0) for c in clips])
    # Each speaker's stream is its own: interleaving speakers changes nothing.
    interleaved = functionals.clip_probabilities(clips, speakers, [0, 1, 2, 3], weight=1 / 6)
    grouped = functionals.clip_probabilities(clips, speakers, [0, 2, 1, 3], weight=1 / 6)
    assert np.allclose(interleaved, grouped)
    # A stream adapts: its second clip is standardised with statistics nearer the voice than the prior.
    assert not np.allclose(interleaved, frozen)


def test_egemaps_of_voiced_windows():
    pytest.importorskip('opensmile')
    rate = 16000
    t = np.arange(3 * rate) / rate
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.5 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / rate) / k for k in range(1, 8)).astype(np.float32)
    voiced *= 0.1 * (1 + np.sin(2 * np.pi * 3 * t))
    extractor = FunctionalsExtractor('egemaps', rate)
    vectors = extractor.windows(np.stack([voiced, 0.5 * voiced]))
    assert vectors.shape == (2, 88) and np.all(np.isfinite(vectors))
    assert not np.allclose(vectors[0], vectors[1])      # loudness functionals see the gain
    with pytest.raises(ValueError, match='unknown functionals'):
        FunctionalsExtractor('mfcc', rate)
