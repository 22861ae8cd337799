"""The classical half of a fused model: window functionals, their speaker statistics, fusion."""
import json
from pathlib import Path

import numpy as np
import pytest

from ser_models.functionals import Functionals, FunctionalsExtractor, as_frames, speaker_statistics

WEIGHTS = Path(__file__).resolve().parents[1] / 'weights'


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


def test_geometric_fusion_lets_either_half_veto_a_label():
    functionals = Functionals(None, probe_classifier, prior(), weight=0.5, fusion='geometric')
    network, classical = np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.6]]), np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]])
    fused = functionals.fuse(network, classical)
    assert np.allclose(fused.sum(axis=1), 1.0)
    assert np.allclose(fused[0, :2], np.sqrt([0.45, 0.05]) / np.sqrt([0.45, 0.05]).sum(), atol=1e-5)
    # The arithmetic mean leaves the second row's third label 0.3; the SVM's zero all but removes it.
    assert fused[1].argmax() == 0 and fused[1, 2] < 1e-2
    with pytest.raises(ValueError, match='fusion rule'):
        Functionals(None, probe_classifier, prior(), fusion='product')


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


def voiced(seconds: float, rate: int = 16000) -> np.ndarray:
    """A vowel-like signal: seven harmonics of a gliding 120-160 Hz pitch, its loudness pulsing 3 times a
    second."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.5 * t)
    harmonics = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / rate) / k for k in range(1, 8))
    return (0.1 * (1 + np.sin(2 * np.pi * 3 * t)) * harmonics).astype(np.float32)


def test_egemaps_of_voiced_windows():
    pytest.importorskip('opensmile')
    rate = 16000
    signal = voiced(3.0, rate)
    extractor = FunctionalsExtractor('egemaps', rate)
    vectors = extractor.windows(np.stack([signal, 0.5 * signal]))
    assert vectors.shape == (2, 88) and np.all(np.isfinite(vectors))
    assert not np.allclose(vectors[0], vectors[1])      # loudness functionals see the gain
    with pytest.raises(ValueError, match='unknown functionals'):
        FunctionalsExtractor('mfcc', rate)


def test_mfcc_statistics_follow_a_windows_egemaps():
    """'egemaps+mfcc_stats': a window's eGeMAPS functionals, then the mean and sd of its 39 MFCCs and their
    deltas, as the classical baselines compute them with librosa."""
    pytest.importorskip('opensmile')
    librosa = pytest.importorskip('librosa')
    from ser_models.features import FeatureConfig, MfccExtractor
    rate = 16000
    window = voiced(3.0, rate)
    both = FunctionalsExtractor('egemaps+mfcc_stats', rate)(window)
    mfcc = MfccExtractor(FeatureConfig(normalize='none'))(window)
    stacked = np.concatenate([mfcc, librosa.feature.delta(mfcc, width=9, mode='nearest')])
    assert both.shape == (FUNCTIONAL_DIMS['egemaps+mfcc_stats'],)
    np.testing.assert_array_equal(both[:88], FunctionalsExtractor('egemaps', rate)(window))
    np.testing.assert_allclose(both[88:], np.concatenate([stacked.mean(axis=1), stacked.std(axis=1)]),
                               rtol=1e-5, atol=1e-5)


FUNCTIONAL_DIMS = {'egemaps': 88, 'egemaps+mfcc_stats': 88 + 156}


def fused_copy(directory, weight: float = 0.5, one_pass: bool = False, kind: str = 'egemaps', fusion: str = 'mean'):
    """The shipped TIM-Net with a classical half: an RBF SVM on random functionals (of `kind`) of three
    of its classes, exported as the ship does (one_pass: as if fitted on one-pass functionals); returns
    (directory, the fitted scikit-learn model)."""
    import shutil

    from training.classical import export_functionals, fit_on_windows
    shipped = WEIGHTS / 'timnet'
    shutil.copytree(shipped, directory)
    meta = json.loads((directory / 'model.json').read_text())
    rng = np.random.default_rng(2)
    targets = [0, 2, 3] * 8
    vectors = [rng.normal(t, 1.0, size=(3, FUNCTIONAL_DIMS[kind])).astype(np.float32) for t in targets]
    model, pooled = fit_on_windows('svm', vectors, [f's{i % 4}' for i in range(len(targets))], targets)
    meta['functionals'] = export_functionals(model, directory, kind, meta['labels'], pooled.summary(0.5),
                                             weight, one_pass, fusion)
    (directory / 'model.json').write_text(json.dumps(meta))
    return directory, model


def test_the_svm_may_be_calibrated_on_whole_speakers_it_was_not_fitted_on():
    """calibration='speakers': every Platt-scaling fold holds out whole speakers and every class is fitted
    in each; 'windows' draws windows at random; anything else is refused."""
    from training.classical import fit_on_windows
    rng = np.random.default_rng(5)
    targets = [0, 2, 3] * 10
    speakers = [f's{i % 10}' for i in range(len(targets))]
    vectors = [rng.normal(t, 1.0, size=(2, 6)).astype(np.float32) for t in targets]
    window_speakers = np.repeat(sorted(set(speakers)), [2 * speakers.count(s) for s in sorted(set(speakers))])
    window_targets = np.array([targets[i] for s in sorted(set(speakers)) for i, o in enumerate(speakers) if o == s
                               for _ in range(2)])
    model, _ = fit_on_windows('svm', vectors, speakers, targets, calibration='speakers')
    folds = model[-1].cv
    assert len(folds) == 5
    for fitted, held in folds:
        assert not set(window_speakers[fitted]) & set(window_speakers[held])
        assert set(window_targets[fitted]) == {0, 2, 3}
    assert model.predict_proba(np.zeros((1, 6), np.float32)).shape == (1, 3)
    assert fit_on_windows('svm', vectors, speakers, targets)[0][-1].cv == 5
    with pytest.raises(ValueError, match='unknown calibration'):
        fit_on_windows('svm', vectors, speakers, targets, calibration='clips')


def test_weighing_corpora_gives_each_corpus_the_same_total_weight_in_the_fit(monkeypatch):
    from training import classical
    fitted = []

    class Recorder:
        steps = [('svc', None)]

        def fit(self, inputs, targets, **weights):
            fitted.append((len(inputs), weights))
            return self
    monkeypatch.setattr(classical, 'make_classifier', lambda *args, **kwargs: Recorder())
    rng = np.random.default_rng(2)
    # Corpus a: 3 clips of 2 windows; corpus b: 9 clips of 1 window.
    speakers = ['a:1', 'a:2', 'a:1'] + [f'b:{i % 3}' for i in range(9)]
    vectors = [rng.normal(size=(2 if s.startswith('a') else 1, 4)) for s in speakers]
    classical.fit_on_windows('svm', vectors, speakers, [0, 1] * 6)
    classical.fit_on_windows('svm', vectors, speakers, [0, 1] * 6, weigh_corpora=True)
    assert fitted[0] == (15, {})
    weights = fitted[1][1]['svc__sample_weight']
    # Windows in speaker order: a:1 (4), a:2 (2), then b's nine.
    assert weights[:6] == pytest.approx([15 / 12] * 6) and weights[6:] == pytest.approx([15 / 18] * 9)
    assert weights[:6].sum() == pytest.approx(weights[6:].sum())


def test_virtual_speakers_join_the_fit_as_voices_of_their_own_and_leave_the_prior_alone(monkeypatch):
    """Each speed's copies of the clips are a new speaker ('<speaker>@<speed>', with the clip's label),
    standardised over its own windows; the stream prior stays the windows as heard."""
    from training import classical
    fitted = []

    class Recorder:
        steps = [('svc', None)]

        def fit(self, inputs, targets, **weights):
            fitted.append((np.asarray(inputs), list(targets)))
            return self
    monkeypatch.setattr(classical, 'make_classifier', lambda *args, **kwargs: Recorder())
    rng = np.random.default_rng(4)
    speakers, targets = ['c:a', 'c:a', 'c:b', 'c:b'], [0, 1, 0, 1]
    vectors = [rng.normal(size=(2, 3)) for _ in speakers]
    slower = [v * 3.0 + 7.0 for v in vectors]
    _, alone = classical.fit_on_windows('svm', vectors, speakers, targets)
    _, prior = classical.fit_on_windows('svm', vectors, speakers, targets, virtual={0.9: slower})
    assert prior.summary(1.0)['mean'] == pytest.approx(alone.summary(1.0)['mean'])
    inputs, window_targets = fitted[1]
    assert len(inputs) == 16 and window_targets == [0, 0, 1, 1] * 4
    # In speaker order (c:a, c:a@0.9, c:b, c:b@0.9): scaled and shifted copies standardised over their
    # own windows are the same windows again (up to the variance floor).
    assert inputs[4:8] == pytest.approx(inputs[:4], abs=0.01) and inputs[12:] == pytest.approx(inputs[8:12], abs=0.01)
    assert classical.with_virtual_speakers(vectors, speakers, targets, {1.1: vectors, 0.9: slower})[1] == [
        *speakers, 'c:a@0.9', 'c:a@0.9', 'c:b@0.9', 'c:b@0.9', 'c:a@1.1', 'c:a@1.1', 'c:b@1.1', 'c:b@1.1']


def test_early_statistics_standardise_a_share_of_clips_as_a_streams_first_seconds(monkeypatch):
    """early: a clip standardised as a stream holds its voice early on, from the pooled prior of every
    training window (worth prior_windows windows) plus the clip and, clips allowing, others of its speaker,
    each window counted `weight`; none of them: every window over all of its speaker's."""
    from ser_models.features import SpeakerNormalizer
    from ser_models.functionals import as_frames, speaker_statistics
    from training import classical
    fitted = []

    class Recorder:
        steps = [('svc', None)]

        def fit(self, inputs, targets, **weights):
            fitted.append(np.asarray(inputs))
            return self
    monkeypatch.setattr(classical, 'make_classifier', lambda *args, **kwargs: Recorder())
    rng = np.random.default_rng(6)
    speakers, targets = ['c:a', 'c:b', 'c:a', 'c:b'], [0, 0, 1, 1]
    vectors = [rng.normal(size=(3, 2)) + 5 * i for i in range(4)]
    early = {'share': 1.0, 'clips': 1, 'prior_windows': 2.0, 'weight': 0.25}
    classical.fit_on_windows('svm', vectors, speakers, targets)
    classical.fit_on_windows('svm', vectors, speakers, targets, early=early)
    prior = speaker_statistics(np.concatenate(vectors)).summary(2.0)
    stream = SpeakerNormalizer(2, prior=prior)
    stream.update(as_frames(vectors[0]), weight=0.25)
    # Speaker c:a's clips come first, clip 0 before clip 2.
    assert fitted[1][:3] == pytest.approx(stream(as_frames(vectors[0]))[..., 0])
    whole = speaker_statistics(np.concatenate([vectors[0], vectors[2]]))
    assert fitted[0][:3] == pytest.approx(whole(as_frames(vectors[0]))[..., 0])
    classical.fit_on_windows('svm', vectors, speakers, targets, early={**early, 'share': 0.0})
    assert fitted[2] == pytest.approx(fitted[0])


def test_the_exported_classifier_gives_scikit_learns_probabilities(tmp_path):
    pytest.importorskip('skl2onnx')
    from ser_models import load
    directory, model = fused_copy(tmp_path / 'fused')
    functionals = load(directory).functionals
    standardised = np.random.default_rng(3).normal(size=(5, 88)).astype(np.float32)
    expected = np.zeros((5, 7), np.float32)
    expected[:, model.classes_] = model.predict_proba(standardised)
    np.testing.assert_allclose(functionals.classify(standardised), expected, atol=1e-5)


def test_a_stream_fuses_each_window_with_its_functionals(tmp_path):
    pytest.importorskip('skl2onnx')
    from ser_models import load
    from ser_models.pipeline import EmotionPipeline
    from ser_models.stream import StreamFormat
    speech = voiced(5.0).tobytes()
    fused = load(fused_copy(tmp_path / 'fused', weight=0.3)[0])
    network = load(tmp_path / 'fused')
    network.functionals = None
    runs = []
    for predictor in (fused, network):
        pipeline = EmotionPipeline(predictor, StreamFormat(sample_format='F32LE'))
        windows = [w for w in pipeline.push(speech) if w.voiced]
        runs.append((windows, pipeline.classify(windows)))
    (windows, fused_results), (_, network_results) = runs
    assert len(fused_results) == len(network_results) == len(windows) >= 3
    statistics = fused.functionals.stream_normalizer()
    for window, mixed, alone in zip(windows, fused_results, network_results, strict=True):
        vector = as_frames(fused.functionals.extractor(window.samples))
        statistics.update(vector, weight=0.5 / 3.0)
        classical = fused.functionals.classify(statistics(vector)[None, :, 0])[0]
        np.testing.assert_allclose(mixed.probabilities, 0.7 * alone.probabilities + 0.3 * classical, atol=1e-5)
    assert not np.allclose(fused_results[0].probabilities, network_results[0].probabilities)


@pytest.mark.parametrize('lone_weight,functionals_weight', [(0.0, 0.0), (0.5, 0.0), (1.0, 2.0)])
def test_a_lone_prediction_of_a_fused_model_fuses_as_a_stream_that_heard_the_window(tmp_path, lone_weight,
                                                                                   functionals_weight):
    """Each half standardised with its prior plus the window itself, counted lone_window_weight times for
    the network's frames and lone_functionals_weight times for the functionals vector."""
    pytest.importorskip('skl2onnx')
    from ser_models import load
    fused = load(fused_copy(tmp_path / 'fused', weight=0.4)[0])
    fused.lone_window_weight, fused.lone_functionals_weight = lone_weight, functionals_weight
    window = voiced(3.0)
    vector = as_frames(fused.functionals.extractor(window))
    statistics = fused.functionals.stream_normalizer()
    statistics.update(vector, weight=functionals_weight)
    classical = fused.functionals.classify(statistics(vector)[None, :, 0])[0]
    mfcc = fused.features(window[None])
    heard = fused.stream_normalizer()
    heard.update(mfcc, weight=lone_weight)
    network = fused.predict_features(heard(mfcc))[0]
    np.testing.assert_allclose(fused.network_windows(window[None])[0], network, atol=1e-6)
    np.testing.assert_allclose(fused.predict(window, 16000), 0.6 * network + 0.4 * classical, atol=1e-6)


def test_model_json_names_the_fusion_rule_and_refuses_an_unknown_one(tmp_path):
    pytest.importorskip('skl2onnx')
    from ser_models import ArtifactError, load
    directory, _ = fused_copy(tmp_path / 'fused', weight=0.4, fusion='geometric')
    fused = load(directory)
    fused.lone_window_weight = fused.lone_functionals_weight = 0.0    # priors alone: the fusion rule is the point
    window = voiced(3.0)
    statistics = fused.functionals.stream_normalizer()
    classical = fused.functionals.classify(statistics(as_frames(fused.functionals.extractor(window)))[None, :, 0])[0]
    network = fused.network_windows(window[None])[0]
    joint = np.exp(0.6 * np.log(np.maximum(network, 1e-6)) + 0.4 * np.log(np.maximum(classical, 1e-6)))
    np.testing.assert_allclose(fused.predict(window, 16000), joint / joint.sum(), atol=1e-5)
    meta = json.loads((directory / 'model.json').read_text())
    meta['functionals']['fusion'] = 'product'
    (directory / 'model.json').write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match='product'):
        load(directory)


def test_an_ensemble_does_not_drop_a_members_classical_half(tmp_path):
    pytest.importorskip('skl2onnx')
    from ser_models import load
    from ser_models.ensemble import AveragedPredictor
    fused = load(fused_copy(tmp_path / 'fused')[0])
    with pytest.raises(ValueError, match='classical half'):
        AveragedPredictor([fused, fused])


def test_a_corrupt_or_inconsistent_classical_half_is_refused(tmp_path):
    pytest.importorskip('skl2onnx')
    from ser_models import ArtifactError, load
    directory, _ = fused_copy(tmp_path / 'fused')
    graph = directory / 'functionals.onnx'
    graph.write_bytes(graph.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match='functionals.onnx'):
        load(directory)
    directory, _ = fused_copy(tmp_path / 'other')
    meta = json.loads((directory / 'model.json').read_text())
    meta['functionals']['classes'][0] = 'bored'
    (directory / 'model.json').write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match='bored'):
        load(directory)


def test_one_pass_sliding_functionals_match_window_by_window_closely():
    """FunctionalsExtractor.sliding: windows every hop from one openSMILE pass, each close to windows()'s
    functionals of the same samples (the two differ only where descriptors see audio before a window)."""
    pytest.importorskip('opensmile')
    rate = 16000
    signal = voiced(8.0, rate) * np.linspace(0.05, 1.0, 8 * rate, dtype=np.float32)   # every window louder
    extractor = FunctionalsExtractor('egemaps', rate)
    starts, vectors = extractor.sliding(signal, 3.0, 0.5)
    assert np.allclose(starts[:4], [0.0, 0.5, 1.0, 1.5]) and vectors.shape == (len(starts), 88)
    assert starts[-1] + 3.0 <= 8.0 + 1e-6 and len(starts) >= 9
    apart = extractor.windows(np.stack([signal[int(s * rate):int(s * rate) + 3 * rate] for s in starts]))

    def gap(a, b):
        return np.median(np.abs(a - b) / (np.abs(b) + 1e-3))
    assert gap(vectors, apart) < 0.01 < 0.02 < gap(vectors[1:], apart[:-1])   # one hop off is further


def test_a_stream_of_functionals_fed_as_audio_arrives_equals_one_pass_over_it():
    """StreamFunctionals, fed in uneven blocks: every window's functionals exactly as sliding() computes
    them from the whole signal, each ready once STREAM_LOOKAHEAD s of audio after it are in."""
    pytest.importorskip('opensmile')
    from ser_models.functionals import STREAM_LOOKAHEAD
    rate = 16000
    signal = voiced(8.0, rate) * np.linspace(0.05, 1.0, 8 * rate, dtype=np.float32)
    extractor = FunctionalsExtractor('egemaps', rate)
    _, expected = extractor.sliding(signal, 3.0, 0.5)
    stream = extractor.stream(3 * rate, rate // 2)
    blocks = np.cumsum(np.random.default_rng(4).integers(50, 6000, size=200))
    got, index = [], 0
    for block in np.split(signal, blocks[blocks < signal.size]):
        stream.write(block)
        while stream.window_end(index) + STREAM_LOOKAHEAD * rate <= stream.written:
            got.append(stream.ready(index))
            index += 1
    stream.finish()
    got += [stream.ready(i) for i in range(index, len(expected))]
    stream.close()
    assert index >= len(expected) - 1 and len(got) == len(expected) == 10
    np.testing.assert_array_equal(np.stack(got), expected)


def test_a_short_clip_as_a_stream_hears_it():
    """stream_windows: the windows that fit, a short clip centre-padded to one, silence after it."""
    pytest.importorskip('opensmile')
    from ser_models.functionals import STREAM_LOOKAHEAD
    from ser_models.predictor import fit_to_length
    rate = 16000
    extractor = FunctionalsExtractor('egemaps', rate)
    clip = voiced(4.2, rate)
    silence = np.zeros(int(STREAM_LOOKAHEAD * rate), np.float32)
    np.testing.assert_array_equal(extractor.stream_windows(clip, 3 * rate, rate // 2),
                                  extractor.sliding(np.concatenate([clip, silence]), 3.0, 0.5)[1][:3])
    through = extractor.stream_windows(clip, 3 * rate, rate // 2, through_end=True)
    np.testing.assert_array_equal(through, extractor.sliding(np.concatenate([clip, np.zeros(rate * 3 // 10, np.float32),
                                                                             silence]), 3.0, 0.5)[1][:4])
    short = extractor.stream_windows(clip[:2 * rate], 3 * rate, rate // 2)
    np.testing.assert_array_equal(short, extractor.sliding(np.concatenate([fit_to_length(clip[:2 * rate], 3 * rate),
                                                                           silence]), 3.0, 0.5)[1][:1])


@pytest.mark.parametrize('kind', FUNCTIONAL_DIMS)
def test_a_one_pass_fused_stream_holds_each_window_until_audio_after_it(tmp_path, kind):
    """A model fitted on one-pass functionals: the pipeline hands out a window once STREAM_LOOKAHEAD s of
    audio follow it (flush() the rest at the end), in order, with the stream's one-pass functionals, and
    classifies it with them (and what else its kind takes from the window); the same windows as a model
    computing them one call a window."""
    pytest.importorskip('skl2onnx')
    from ser_models import load
    from ser_models.functionals import STREAM_LOOKAHEAD
    from ser_models.pipeline import EmotionPipeline
    from ser_models.stream import StreamFormat
    rate = 16000
    speech = voiced(6.0, rate)
    one_pass = load(fused_copy(tmp_path / 'one_pass', weight=0.3, one_pass=True, kind=kind)[0])
    each = load(fused_copy(tmp_path / 'each', weight=0.3, kind=kind)[0])
    runs = {}
    for name, predictor in (('one_pass', one_pass), ('each', each)):
        pipeline = EmotionPipeline(predictor, StreamFormat(sample_format='F32LE'))
        windows, heard = [], 0
        for block in np.split(speech, np.arange(1600, speech.size, 1600)):
            heard += block.size
            released = pipeline.push(block.tobytes())
            assert name == 'each' or all(w.end_index + STREAM_LOOKAHEAD * rate <= heard for w in released)
            windows += released
        assert pipeline.holding == (name == 'one_pass')
        windows += pipeline.flush()
        pipeline.close()
        runs[name] = (windows, EmotionPipeline(predictor, StreamFormat(sample_format='F32LE')).classify(windows))
    (windows, results), (alone, _) = runs['one_pass'], runs['each']
    assert [w.end_index for w in windows] == [w.end_index for w in alone] and len(windows) == 7
    assert all(w.functionals is None for w in alone)
    extractor = one_pass.functionals.extractor
    completed = np.stack([extractor.complete(w.functionals, w.samples) for w in windows])
    np.testing.assert_array_equal(completed, extractor.stream_windows(speech, 3 * rate, rate // 2))
    statistics = one_pass.functionals.stream_normalizer()
    heard = EmotionPipeline(one_pass, StreamFormat())
    network = one_pass.predict_features(np.stack([heard.mfcc(w) for w in windows]))
    for vector, result, alone_probabilities in zip(as_frames(completed), results, network, strict=True):
        statistics.update(vector, weight=0.5 / 3.0)
        classical = one_pass.functionals.classify(statistics(vector)[None, :, 0])[0]
        np.testing.assert_allclose(result.probabilities, 0.7 * alone_probabilities + 0.3 * classical, atol=1e-5)


def one_pass_stream(directory, seconds: float, blocks: int, midway):
    """A one-pass fused model's pipeline fed `seconds` of speech: 4 s, then midway(pipeline), then the rest
    in `blocks` pushes and a flush; returns (the pipeline, every window it handed out)."""
    from ser_models import load
    from ser_models.pipeline import EmotionPipeline
    from ser_models.stream import StreamFormat
    rate = 16000
    speech = voiced(seconds, rate)
    pipeline = EmotionPipeline(load(fused_copy(directory, one_pass=True)[0]), StreamFormat(sample_format='F32LE'))
    windows = pipeline.push(speech[:4 * rate].tobytes())
    midway(pipeline)
    for block in np.split(speech[4 * rate:], blocks):
        windows += pipeline.push(block.tobytes())
    windows += pipeline.flush()
    pipeline.close()
    return pipeline, windows


def test_when_opensmile_stops_mid_stream_no_window_is_lost(tmp_path):
    """A one-pass stream whose openSMILE stops: the windows it owed are classified with a call each,
    counted, the problem named, and the next audio starts one pass afresh."""
    pytest.importorskip('skl2onnx')
    rate = 16000
    pipeline, windows = one_pass_stream(tmp_path / 'one_pass', 8.0, 8, lambda p: p._one_pass._smile.abort())
    assert [w.end_index for w in windows] == list(range(3 * rate, 8 * rate + 1, rate // 2))
    assert pipeline.functionals_fallbacks >= 1 and 'openSMILE' in pipeline.one_pass_problem
    assert windows[-1].functionals is not None     # one pass again after the failure
    results = pipeline.classify(windows)
    assert all(r.probabilities is not None and not r.error for r in results)


def test_a_new_hop_hands_out_the_held_windows_once(tmp_path):
    """A live hop change ends one pass on the old grid: its held windows come out once, in order, with
    their functionals, and one pass starts again on the new grid."""
    pytest.importorskip('skl2onnx')
    rate = 16000
    pipeline, windows = one_pass_stream(tmp_path / 'one_pass', 7.0, 6, lambda p: p.update(hop=0.25))
    ends = [w.end_index for w in windows]
    assert ends == sorted(set(ends)) and ends[:3] == [48000, 56000, 64000] and ends[-1] == 7 * rate
    assert np.diff(ends)[-4:].tolist() == [rate // 4] * 4
    assert all(w.functionals is not None for w in windows) and pipeline.functionals_fallbacks == 0


def test_two_settings_changes_in_a_row_hand_out_the_held_windows_once(tmp_path):
    """Windows released by one settings change wait for the next audio; a second change before it
    comes hands them out still once."""
    pytest.importorskip('skl2onnx')
    rate = 16000
    pipeline, windows = one_pass_stream(tmp_path / 'one_pass', 7.0, 6,
                                        lambda p: (p.update(hop=0.25), p.update(hop=0.5)))
    ends = [w.end_index for w in windows]
    assert ends == list(range(3 * rate, 7 * rate + 1, rate // 2))
    assert all(w.functionals is not None for w in windows) and pipeline.functionals_fallbacks == 0


SHIPPED_FUSED = sorted(path.parent.name for path in WEIGHTS.glob('*/model.json')
                       if 'functionals' in json.loads(path.read_text()))


@pytest.mark.parametrize('name', SHIPPED_FUSED)
def test_every_shipped_fused_model_serves_a_stream_of_real_speech(name, data_dir):
    """A shipped fused model loads with its one-pass classical half, and a real clip streamed in 0.1 s blocks
    comes out as one probability vector over its labels for each voiced window, each window carrying the
    functionals its stream computed."""
    pytest.importorskip('opensmile')
    import soundfile

    from ser_models import load
    from ser_models.pipeline import EmotionPipeline
    from ser_models.stream import StreamFormat
    fused = load(WEIGHTS / name)
    assert fused.functionals is not None and fused.functionals.one_pass
    clip = sorted((data_dir / 'ravdess').rglob('*.flac'))[0]
    speech, rate = soundfile.read(clip, dtype='int16')
    assert rate == fused.meta['sample_rate']
    pipeline = EmotionPipeline(fused, StreamFormat())
    windows = []
    for block in np.array_split(speech, max(1, speech.size // 1600)):
        windows += pipeline.push(block.tobytes())
    windows += pipeline.flush()
    voiced_windows = [w for w in windows if w.voiced]
    assert voiced_windows and all(w.functionals is not None for w in voiced_windows)
    results = pipeline.classify(voiced_windows)
    assert len(results) == len(voiced_windows)
    for result in results:
        assert result.probabilities.shape == (len(fused.meta['labels']),)
        assert np.isfinite(result.probabilities).all() and result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
