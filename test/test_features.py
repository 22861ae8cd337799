"""The numpy MFCC front end matches librosa and behaves on batches, silence and edge cases."""
from pathlib import Path

import numpy as np
import pytest

from ser_models.features import FeatureConfig, MfccExtractor, SpeakerNormalizer, StreamingMfcc

# Absolute tolerance in MFCC units (dB-scaled cepstra whose values span several hundred):
# float32 FFT and matmul rounding stay below 1e-3 on real speech; 0.01 leaves margin.
LIBROSA_ATOL = 0.01


REPO = Path(__file__).resolve().parents[1]


def real_speech(data_dir, names=('emovo/f1/rab-f1-b1.flac', 'ravdess/Actor_01/03-01-05-01-01-01-01.flac',
                                 'tess/OAF_angry/OAF_back_angry.flac')):
    import soundfile as sf
    for name in names:
        audio, rate = sf.read(data_dir / name, dtype='float32')
        yield name, audio, rate


def test_matches_librosa_on_real_speech(data_dir):
    librosa = pytest.importorskip('librosa')
    config = FeatureConfig(normalize='none')
    extract = MfccExtractor(config)
    checked = 0
    for name, audio, rate in real_speech(data_dir):
        assert rate == config.sample_rate
        ours = extract(audio)
        reference = librosa.feature.mfcc(
            y=audio, sr=rate, n_mfcc=config.n_mfcc, n_fft=config.n_fft, hop_length=config.hop_length,
            win_length=config.win_length, n_mels=config.n_mels, center=True, pad_mode='constant')
        assert ours.shape == reference.shape, name
        np.testing.assert_allclose(ours, reference, atol=LIBROSA_ATOL, err_msg=name)
        checked += 1
    assert checked == 3


def test_three_second_window_has_121_frames_and_batches_match_single_calls():
    config = FeatureConfig()
    extract = MfccExtractor(config)
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((3, 48000)).astype(np.float32) * 0.1
    features = extract(batch)
    assert features.shape == (3, 39, 121) == (3, config.n_mfcc, config.num_frames(48000))
    assert features.dtype == np.float32
    for row in range(3):
        np.testing.assert_allclose(features[row], extract(batch[row]), rtol=1e-5, atol=1e-5)


def test_cmvn_standardises_each_coefficient_over_time():
    rng = np.random.default_rng(1)
    features = MfccExtractor(FeatureConfig(normalize='cmvn'))(rng.standard_normal(32000).astype(np.float32))
    np.testing.assert_allclose(features.mean(axis=-1), 0.0, atol=1e-4)
    np.testing.assert_allclose(features.std(axis=-1), 1.0, atol=1e-3)


def test_silence_gives_finite_features():
    features = MfccExtractor()(np.zeros(48000, dtype=np.float32))
    assert np.all(np.isfinite(features))


def test_rejects_bad_settings_and_empty_input():
    with pytest.raises(ValueError, match='win_length'):
        FeatureConfig(win_length=1024, n_fft=800)
    with pytest.raises(ValueError, match='normalize'):
        FeatureConfig(normalize='global')
    with pytest.raises(ValueError, match='unknown feature settings'):
        FeatureConfig.from_dict({'n_mfcc': 39, 'hop': 10})
    with pytest.raises(ValueError, match='empty'):
        MfccExtractor()(np.zeros(0, dtype=np.float32))


def test_streaming_front_end_equals_the_per_window_one_and_reuses_shared_frames():
    extract = MfccExtractor()
    streaming = StreamingMfcc(extract)
    audio = (np.random.default_rng(3).standard_normal(16000 * 12) * 0.1).astype(np.float32)
    ends = list(range(48000, audio.size + 1, 8000))
    skipped = {ends[3], ends[4], ends[9]}           # e.g. unvoiced windows the node never classifies
    for end in ends:
        if end in skipped:
            continue
        window = audio[end - 48000:end]
        np.testing.assert_allclose(streaming(window, end), extract(window), rtol=1e-5, atol=1e-5)
    # 0.5 s hop: 20 new frames plus the two padded edge frames; after a skipped window more are new.
    assert streaming.frames_reused > 0.7 * (streaming.frames_reused + streaming.frames_computed)
    # A hop that is not a multiple of the 25 ms frame hop shares no frames, and is still exact.
    streaming.reset()
    for end in (48000, 48123, 52000):
        window = audio[end - 48000:end]
        np.testing.assert_allclose(streaming(window, end), extract(window), rtol=1e-5, atol=1e-5)


def test_speaker_statistics_offline_and_on_a_stream():
    rng = np.random.default_rng(0)
    clips = [rng.normal(3.0, 2.0, size=(39, 121)).astype(np.float32) for _ in range(5)]
    fitted = SpeakerNormalizer.fit(clips)
    frames = np.concatenate(clips, axis=1)
    np.testing.assert_allclose(fitted.mean, frames.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(fitted.std, frames.std(axis=1) + 1e-3, rtol=1e-6)
    standardised = np.concatenate([fitted(c) for c in clips], axis=1)
    np.testing.assert_allclose(standardised.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(standardised.std(axis=1), 1, atol=1e-3)
    # A stream starts from the prior, forgets beyond its memory, and reset() returns to the prior.
    prior = {'mean': [0.0] * 39, 'std': [1.0] * 39, 'frames': 100}
    stream = SpeakerNormalizer(39, prior=prior, memory_frames=1000)
    np.testing.assert_allclose(stream.mean, 0, atol=1e-9)
    np.testing.assert_allclose(stream.std, 1 + 1e-3, atol=1e-9)
    for clip in clips * 20:
        stream.update(clip, weight=0.5)
    assert stream.count == pytest.approx(1000)
    np.testing.assert_allclose(stream.mean, fitted.mean, atol=0.2)
    stream.reset()
    assert stream.count == 100
    np.testing.assert_allclose(stream.mean, 0, atol=1e-9)


def test_each_window_standardised_as_a_stream_that_heard_it_leaves_the_statistics_alone():
    rng = np.random.default_rng(1)
    prior = {'mean': [0.0] * 39, 'std': [1.0] * 39, 'frames': 40}
    statistics = SpeakerNormalizer(39, prior=prior)
    windows = rng.normal(5.0, 3.0, size=(3, 39, 121)).astype(np.float32)
    np.testing.assert_array_equal(statistics.standardise_each(windows, 0.0), statistics(windows))
    each = statistics.standardise_each(windows, 0.5)
    for window, standardised in zip(windows, each, strict=True):
        heard = SpeakerNormalizer(39, prior=prior)
        heard.update(window, weight=0.5)
        np.testing.assert_allclose(standardised, heard(window), rtol=1e-6, atol=1e-6)
    assert statistics.count == 40 and np.allclose(statistics.mean, 0)
    # Its own frames pull a window towards zero mean: the prior alone leaves it near 5.
    assert abs(each.mean()) < abs(statistics(windows).mean()) / 2


def test_loud_frame_statistics_ignore_pauses_and_padding():
    """speaker_frames='loud' counts only frames within 30 dB of the loudest, so a voice's statistics
    do not move with how much pause or zero padding surrounds it; 'all' counts every frame."""
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    voice = (0.3 * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) *
             sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))).astype(np.float32)
    padded = np.zeros(3 * rate, dtype=np.float32)
    padded[rate // 2: rate // 2 + voice.size] = voice
    tail = padded[rate // 2 + voice.size:]
    tail[:] = 1e-4 * np.random.default_rng(0).standard_normal(tail.size)      # a quiet room after the voice
    for frames, moves in (('loud', False), ('all', True)):
        config = FeatureConfig(normalize='speaker', speaker_frames=frames)
        extract = MfccExtractor(config)
        alone, surrounded = (SpeakerNormalizer.fit([extract(x)], config) for x in (voice, padded))
        shift = np.abs(alone.mean - surrounded.mean) / alone.std
        assert (shift.max() > 1.0) == moves, (frames, shift.max())
        assert (surrounded.count > alone.count + 10) == moves      # 'loud': the voice's frames only
    with pytest.raises(ValueError, match='speaker_frames'):
        FeatureConfig(speaker_frames='voiced')


def test_dct_matrix_is_scipys_orthonormal_dct_ii():
    import scipy.fft

    from ser_models.features import dct_matrix
    np.testing.assert_allclose(dct_matrix(64, 39), scipy.fft.dct(np.eye(64), type=2, norm='ortho', axis=0)[:39],
                               atol=1e-12)


def test_the_nodes_pipeline_never_loads_scipy():
    """The node's front end streams with numpy's FFT, so scipy (about 26 MB resident) stays out of it,
    also for a short last window (fitted to length) and a model switch."""
    import subprocess
    import sys
    probe = ('import sys, numpy as np, ser_models\n'
             'from ser_models.pipeline import EmotionPipeline, PendingWindow\n'
             'from ser_models.stream import StreamFormat\n'
             'pipeline = EmotionPipeline(ser_models.load("weights/timnet"), StreamFormat())\n'
             'audio = (np.sin(np.arange(16000 * 5) * 0.05) * 8000).astype("<i2")\n'
             'results = pipeline.classify(pipeline.push(audio.tobytes()))\n'
             'pipeline.update(predictor=ser_models.load("weights/cktim"))\n'
             'pipeline.mfcc(PendingWindow(np.full(8000, 0.01, np.float32), True, -40.0, 0, 0, 0.5))\n'
             'print(len(results), sorted(m for m in sys.modules if m.split(".")[0] == "scipy"))\n')
    done = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(' ', 1)[1].strip() == '[]' and int(done.stdout.split()[0]) > 0


def harmonic_glide(seconds=3.0, rate=16000, low=100.0, high=300.0):
    """A 9-harmonic voice-like tone whose F0 glides from low to high Hz and back; its true F0 per sample."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = low * (high / low) ** (0.5 - 0.5 * np.cos(2 * np.pi * t / seconds))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    return (0.1 * sum(np.sin(k * phase) / k for k in range(1, 10))).astype(np.float32), f0


def test_pitch_channels_track_a_known_f0_and_mark_silence_unvoiced():
    config = FeatureConfig(pitch=True, normalize='none')
    extract = MfccExtractor(config)
    tone, f0 = harmonic_glide()
    audio = np.concatenate((tone, np.zeros(16000, dtype=np.float32)))
    features = extract(audio)
    assert features.shape == (config.channels, config.num_frames(audio.size)) == (41, 161)
    # MFCCs are untouched by the extra channels.
    np.testing.assert_array_equal(features[:39], MfccExtractor(FeatureConfig(normalize='none'))(audio))
    semitones, voicing = features[39], features[40]
    frames = np.arange(2, 119)                         # the tone's frames, edges (half zero-padded) aside
    truth = 12 * np.log2(f0[frames * config.hop_length] / 100)
    assert np.median(np.abs(semitones[frames] - truth)) < 0.1
    assert np.mean(np.abs(semitones[frames] - truth) < 0.5) > 0.95
    assert np.all(voicing[frames] > 0.9)
    # The silent second after the tone: no voicing, F0 held at the last voiced frame's.
    assert np.all(voicing[125:] == 0)
    np.testing.assert_allclose(semitones[125:], semitones[120], atol=1e-5)


def test_pitch_channels_on_real_speech_agree_with_pyin(data_dir):
    librosa = pytest.importorskip('librosa')
    extract = MfccExtractor(FeatureConfig(pitch=True, normalize='none'))
    agreeing = compared = 0
    for name, audio, rate in real_speech(data_dir):
        features = extract(audio)
        reference, voiced, _ = librosa.pyin(audio, fmin=60, fmax=500, sr=rate, frame_length=800, hop_length=400)
        frames = min(features.shape[1], reference.size)
        both = voiced[:frames] & (features[40, :frames] >= 0.45)
        assert both.sum() > 0.4 * voiced[:frames].sum(), name
        error = np.abs(features[39, :frames][both] - 12 * np.log2(reference[:frames][both] / 100))
        agreeing += int(np.sum(error < 1.0))
        compared += int(both.sum())
    assert agreeing > 0.9 * compared              # 0.96 when written


def test_pitch_channels_stream_as_they_batch_and_stay_finite_on_silence():
    extract = MfccExtractor(FeatureConfig(pitch=True, normalize='speaker'))
    streaming = StreamingMfcc(extract)
    tone, _ = harmonic_glide(seconds=6.0)
    audio = tone + (np.random.default_rng(4).standard_normal(tone.size) * 0.01).astype(np.float32)
    for end in range(48000, audio.size + 1, 8000):
        window = audio[end - 48000:end]
        np.testing.assert_allclose(streaming(window, end), extract(window), rtol=1e-5, atol=1e-4)
    assert streaming.frames_reused > 0
    silent = extract(np.zeros(48000, dtype=np.float32))
    assert np.all(np.isfinite(silent)) and np.all(silent[40] == 0)
    with pytest.raises(ValueError, match='two'):
        FeatureConfig(pitch=True, f0_min=30.0)
    with pytest.raises(ValueError, match='f0_min'):
        FeatureConfig(pitch=True, f0_min=300.0, f0_max=200.0)
