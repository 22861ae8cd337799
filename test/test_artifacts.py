"""Artifact round trip, torch/onnxruntime parity on real speech, and clear errors on bad artifacts."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ser_models
import ser_models.windowing
from ser_models import ArtifactError, FeatureConfig, build, load, save_artifact

REPO = Path(__file__).resolve().parents[1]
LABELS = ['neutral', 'happy', 'sad', 'angry', 'fearful', 'surprised', 'disgust']
WINDOW_SECONDS = 3.0
# Probabilities from onnxruntime and torch agree to float32 rounding; the issue asks for 1e-4. CkTIM's
# native spectral mix with float16 kernel spectra is held to ser_models.SPECTRAL_MIX_ATOL (1e-3).
PARITY_ATOL = 1e-4
HALF_SPECTRA_ATOL = ser_models.SPECTRAL_MIX_ATOL
# (model, spectral mix): CkTIM on each of its three onnxruntime paths, the others on the default.
ONNX_PATHS = [('timnet', 'float16'), ('lmu', 'float16')] + [('cktim', mix) for mix in ser_models.SPECTRAL_MIX]


def parity_atol(spectral_mix: str) -> float:
    return HALF_SPECTRA_ATOL if spectral_mix == 'float16' else PARITY_ATOL


def make_artifact(directory, name, features: FeatureConfig | None = None, **settings):
    features = features or FeatureConfig()
    architecture = dict(name=name, n_classes=len(LABELS), n_mfcc=features.channels,
                        frames=features.num_frames(int(WINDOW_SECONDS * features.sample_rate)), **settings)
    torch.manual_seed(0)
    model = build(architecture)
    # Non-trivial BatchNorm statistics, as after training.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return save_artifact(model, directory / name, architecture=architecture, labels=LABELS, features=features,
                         window_seconds=WINDOW_SECONDS, model_id=f'{name}-test',
                         provenance={'data': 'random init (test)'})


@pytest.fixture(scope='module')
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp('artifacts')
    return {name: make_artifact(root, name) for name in ('timnet', 'cktim', 'lmu')}


def speech_windows(data_dir):
    import soundfile as sf
    paths = ['emovo/m1/gio-m1-l1.flac', 'ravdess/Actor_02/03-01-04-02-02-01-02.flac',
             'tess/YAF_fear/YAF_back_fear.flac']
    return [sf.read(data_dir / p, dtype='float32')[0] for p in paths]


@pytest.mark.parametrize('name,spectral_mix', ONNX_PATHS)
def test_torch_and_onnxruntime_agree_on_real_speech(artifacts, data_dir, name, spectral_mix):
    on_ort = load(artifacts[name], backend='onnxruntime', spectral_mix=spectral_mix)
    on_torch = load(artifacts[name], backend='torch')
    assert on_ort.labels == on_torch.labels == LABELS
    for audio in speech_windows(data_dir):
        p_ort, p_torch = on_ort.predict(audio, 16000), on_torch.predict(audio, 16000)
        assert p_ort.shape == (7,) and abs(p_ort.sum() - 1) < 1e-5
        np.testing.assert_allclose(p_ort, p_torch, atol=parity_atol(spectral_mix))


def test_a_model_on_f0_and_voicing_channels_agrees_on_both_backends(tmp_path, data_dir):
    directory = make_artifact(tmp_path, 'timnet', features=FeatureConfig(pitch=True), n_tab=2)
    onnx, torch_model = load(directory, backend='onnxruntime'), load(directory, backend='torch')
    assert onnx.features.config.channels == 41
    for audio in speech_windows(data_dir):
        np.testing.assert_allclose(onnx.predict(audio, 16000), torch_model.predict(audio, 16000), atol=PARITY_ATOL)


def test_a_cktim_with_kernel_masks_agrees_on_both_backends(tmp_path, data_dir):
    directory = make_artifact(tmp_path, 'cktim', n_tab=2, kernel_mask=True)
    onnx, torch_model = load(directory, backend='onnxruntime'), load(directory, backend='torch')
    for audio in speech_windows(data_dir):
        np.testing.assert_allclose(onnx.predict(audio, 16000), torch_model.predict(audio, 16000), atol=PARITY_ATOL)


@pytest.mark.parametrize('name,spectral_mix', ONNX_PATHS)
def test_shipped_weights_agree_on_both_backends(data_dir, name, spectral_mix):
    """What ships is what was trained: the shipped ONNX graph (CkTIM's as DFT matmuls, its spectral mix on
    each path) against torch. A CkTIM promises the bound for the mix its model.json declares and the more
    exact ones, not for a faster one."""
    from ser_models.predictor import declared_spectral_mix, parity_promised
    directory = REPO / 'weights' / name
    meta = ser_models.read_model_json(directory)
    if not parity_promised(meta, spectral_mix):
        pytest.skip(f'{meta["model_id"]} declares the {declared_spectral_mix(meta)} spectral mix; '
                    f'{spectral_mix} is faster and not bound')
    on_ort = load(directory, backend='onnxruntime', spectral_mix=spectral_mix)
    on_torch = load(directory, backend='torch')
    for audio in speech_windows(data_dir):
        windows = ser_models.windowing.clip_windows(audio, on_ort.window_samples, 8000)
        np.testing.assert_allclose(on_ort.predict_windows(windows), on_torch.predict_windows(windows),
                                   atol=parity_atol(spectral_mix))


@pytest.mark.parametrize('name', ['timnet', 'lmu', 'cktim'])
def test_model_inputs_are_what_a_lone_prediction_feeds_the_model(data_dir, name):
    """bench.py and training.ship measure parity on model_inputs(): the standardised MFCCs a
    speaker-normalised model sees, not the raw ones."""
    predictor = load(REPO / 'weights' / name)
    windows = np.stack([ser_models.predictor.fit_to_length(audio, predictor.window_samples)
                        for audio in speech_windows(data_dir)])
    inputs = predictor.model_inputs(windows)
    np.testing.assert_array_equal(predictor.predict_features(inputs), predictor.predict_windows(windows))
    assert predictor.features.config.normalize == 'speaker'
    assert np.abs(inputs.mean(axis=(0, 2))).max() < 2 and inputs.std() < 3   # raw MFCCs: std about 80


def test_clips_heard_alone_average_one_lone_prediction_per_node_window(data_dir):
    """predict_clips_alone is what a caller gets who cuts each clip into the node's windows and calls
    predict on each: no stream, no speaker heard before."""
    from ser_models.windowing import HOP_SECONDS, clip_windows, predict_clips_alone
    predictor = load(REPO / 'weights' / 'timnet')
    clips = speech_windows(data_dir)
    hop = int(HOP_SECONDS * predictor.sample_rate)
    expected = [np.mean([predictor.predict(window, predictor.sample_rate)
                         for window in clip_windows(clip, predictor.window_samples, hop)], axis=0) for clip in clips]
    np.testing.assert_allclose(predict_clips_alone(predictor, clips, batch_windows=3), expected, atol=1e-5)


def test_round_trip_keeps_everything_model_json_promises(artifacts):
    meta = ser_models.read_model_json(artifacts['cktim'])
    assert meta['labels'] == LABELS and meta['window_seconds'] == WINDOW_SECONDS
    assert meta['architecture']['omega_0'] == 25.0 and meta['architecture']['frames'] == 121
    assert FeatureConfig.from_dict(meta['features']) == FeatureConfig()
    predictor = load(artifacts['cktim'], backend='torch')
    reloaded = build(meta['architecture'])
    reloaded.load_state_dict(predictor.model.state_dict())
    assert predictor.window_samples == 48000 and predictor.model_id == 'cktim-test'


def test_resamples_other_rates_and_batches(artifacts):
    predictor = load(artifacts['timnet'])
    rng = np.random.default_rng(0)
    audio_48k = rng.standard_normal(48000 * 2).astype(np.float32) * 0.1
    assert predictor.predict(audio_48k, 48000).shape == (7,)
    batch = predictor.predict_windows(rng.standard_normal((4, 48000)).astype(np.float32))
    assert batch.shape == (4, 7) and np.allclose(batch.sum(axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match='NaN'):
        predictor.predict_windows(np.full((1, 48000), np.nan, dtype=np.float32))


def test_onnxruntime_path_never_imports_torch(artifacts):
    code = ('import sys, numpy as np, ser_models\n'
            f'p = ser_models.load({str(artifacts["lmu"])!r}, backend="onnxruntime")\n'
            'p.predict(np.zeros(16000, dtype=np.float32) + 0.01, 16000)\n'
            'assert "torch" not in sys.modules, "torch was imported"\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def broken(artifacts, tmp_path):
    """A fresh copy of the TIM-Net artifact to damage."""
    target = tmp_path / 'model'
    shutil.copytree(artifacts['timnet'], target)
    return target


def edit_json(directory, change):
    path = directory / 'model.json'
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize('damage,message', [
    (lambda d: shutil.rmtree(d), 'does not exist'),
    (lambda d: (d / 'model.json').unlink(), 'model.json: missing'),
    (lambda d: (d / 'model.json').write_text('{"format_version": 1,'), 'not valid JSON'),
    (lambda d: edit_json(d, lambda m: m.pop('labels')), "'labels' is a required property"),
    (lambda d: edit_json(d, lambda m: m['architecture'].update(name='wavlm')), 'architecture/name'),
    (lambda d: edit_json(d, lambda m: m.update(labels=m['labels'][:6])), '6 labels but n_classes is 7'),
    (lambda d: edit_json(d, lambda m: m['features'].update(hop_length=200)), 'does not match'),
    (lambda d: edit_json(d, lambda m: m['features'].update(pitch=True)), 'does not match the 41 feature channels'),
    (lambda d: edit_json(d, lambda m: m['weights'].update(file='../../etc/passwd')), 'weights/file'),
    (lambda d: edit_json(d, lambda m: m.update(test_time_speeds=[1.0, 3.0])), 'test_time_speeds'),
    (lambda d: edit_json(d, lambda m: m.update(lone_window_weight=-0.5)), 'lone_window_weight'),
    (lambda d: edit_json(d, lambda m: m.update(label_prior={'shares': [0.5, 0.5], 'correction': 1.0})),
     'label_prior has 2 shares for 7 labels'),
    (lambda d: edit_json(d, lambda m: m.update(label_prior={'shares': [1 / 7] * 7, 'correction': 2.0})),
     'label_prior/correction'),
    (lambda d: edit_json(d, lambda m: m.update(label_prior={'shares': [0.0] + [1 / 6] * 6, 'correction': 1.0})),
     'label_prior/shares'),
])
def test_bad_model_json_gives_a_clear_error(broken, damage, message):
    damage(broken)
    with pytest.raises(ArtifactError, match=message):
        load(broken, backend='onnxruntime')


@pytest.mark.parametrize('backend,filename', [('torch', 'model.safetensors'), ('onnxruntime', 'model.onnx')])
def test_truncated_or_missing_files_are_named(broken, backend, filename):
    path = broken / filename
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=f'{filename}: sha256 .* does not match'):
        load(broken, backend=backend)
    path.unlink()
    with pytest.raises(ArtifactError, match=f'{filename}: missing'):
        load(broken, backend=backend)


def test_weights_that_do_not_fit_the_architecture_are_rejected(broken, artifacts):
    # model.json claims 3 TABs; the (valid, hash-consistent) weights are from 8.
    edit_json(broken, lambda m: m['architecture'].update(n_tab=3))
    with pytest.raises(ArtifactError, match='do not fit the architecture'):
        load(broken, backend='torch')


def test_unknown_backend_is_rejected(artifacts):
    with pytest.raises(ValueError, match='backend'):
        load(artifacts['lmu'], backend='tensorrt')


@pytest.mark.parametrize('training', [False, True])
def test_export_leaves_the_model_as_it_found_it(tmp_path, training):
    from ser_models.export import export_onnx
    torch.manual_seed(0)
    model = build({'name': 'cktim', 'n_classes': 7, 'n_mfcc': 39, 'frames': 121, 'n_tab': 2})
    model.train(training)
    x = torch.randn(2, 39, 121)
    model.eval()
    with torch.no_grad():
        before = model(x)
    model.train(training)
    export_onnx(model, tmp_path / 'model.onnx', 39, 121)
    assert model.training == training and all(m.training == training for m in model.modules())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)


def test_causal_pads_are_folded_into_the_convolutions(artifacts):
    import onnx
    graph = onnx.load(str(artifacts['timnet'] / 'model.onnx'), load_external_data=False).graph
    ops = [node.op_type for node in graph.node]
    assert 'Pad' not in ops and ops.count('Conv') == 34
    assert any(list(a.ints) == [128, 0] for node in graph.node for a in node.attribute if a.name == 'pads')


def test_the_graph_is_folded_once_in_a_child_and_read_from_the_cache_after(monkeypatch, tmp_path):
    import onnxruntime as ort

    import ser_models.folding as folding
    monkeypatch.setenv('SER_MODELS_CACHE', str(tmp_path / 'cache'))
    weights = Path(__file__).resolve().parents[1] / 'weights' / 'cktim'
    first = load(weights)
    assert first.folding_problem == ''
    folded = list((tmp_path / 'cache' / 'folded').glob('*/model.onnx'))
    assert len(folded) == 1 and (folded[0].parent / folding.INITIALIZERS_FILE).is_file()
    shape = (3, first.meta['architecture']['n_mfcc'], first.meta['architecture']['frames'])
    mfcc = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    original = ort.InferenceSession(str(weights / 'model.onnx'), providers=['CPUExecutionProvider'])
    np.testing.assert_allclose(first._logits(mfcc), original.run(None, {'mfcc': mfcc})[0], atol=1e-5)
    # A second load reads the cached copy: no child process runs.
    monkeypatch.setattr(folding.subprocess, 'run', lambda *a, **k: pytest.fail('folded again'))
    assert load(weights).folding_problem == ''


def test_an_unusable_cache_falls_back_to_folding_in_process(monkeypatch, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    monkeypatch.setenv('SER_MODELS_CACHE', str(blocker))
    predictor = load(Path(__file__).resolve().parents[1] / 'weights' / 'lmu')
    assert 'cache not writable' in predictor.folding_problem
    assert predictor.predict(np.zeros(48000, np.float32) + 0.01, 16000).shape == (len(predictor.labels),)


def test_an_ensemble_averages_its_members_and_refuses_members_that_disagree(artifacts):
    from ser_models.ensemble import AveragedPredictor
    members = [ser_models.load(artifacts[name]) for name in ('timnet', 'lmu')]
    ensemble = AveragedPredictor(members)
    windows = np.random.default_rng(0).normal(0, 0.1, (3, ensemble.window_samples)).astype(np.float32)
    expected = np.mean([m.predict_windows(windows) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict_windows(windows), expected, atol=1e-6)
    assert ensemble.model_id == '+'.join(m.model_id for m in members)
    members[1].labels = members[1].labels[::-1]
    with pytest.raises(ValueError, match='labels'):
        AveragedPredictor(members)
    # The shipped LMU reads MFCCs with F0 and voicing, the test artifacts MFCCs only.
    with pytest.raises(ValueError, match='features'):
        AveragedPredictor([ser_models.load(REPO / 'weights' / 'lmu'), members[0]])
    with pytest.raises(ValueError, match='ensembles themselves'):
        AveragedPredictor([AveragedPredictor(members[:1]), members[0]])


def test_an_ensemble_refuses_members_whose_streams_weigh_the_prior_differently():
    from ser_models.artifact import with_stream_prior
    from ser_models.ensemble import AveragedPredictor
    members = [ser_models.load(REPO / 'weights' / 'lmu') for _ in range(2)]
    assert AveragedPredictor(members).model_id
    members[1].meta = with_stream_prior(members[1].meta, 3.0)
    with pytest.raises(ValueError, match='stream prior'):
        AveragedPredictor(members)


@pytest.fixture
def ensemble(artifacts, tmp_path):
    """An ensemble artifact: the test TIM-Net and LMU in subfolders, under a model.json naming them."""
    from ser_models.artifact import ensemble_model_json, write_model_json
    target = tmp_path / 'ensemble'
    for name in ('timnet', 'lmu'):
        shutil.copytree(artifacts[name], target / name)
    write_model_json(target, ensemble_model_json(target, ['timnet', 'lmu'], 'pair-test'))
    return target


@pytest.mark.parametrize('backend', ser_models.BACKENDS)
def test_an_ensemble_artifact_loads_as_the_mean_of_its_members(ensemble, backend):
    predictor = load(ensemble, backend=backend)
    members = [load(ensemble / name, backend=backend) for name in ('timnet', 'lmu')]
    assert predictor.model_id == 'pair-test' and predictor.labels == LABELS and predictor.backend == backend
    windows = np.random.default_rng(1).normal(0, 0.1, (2, predictor.window_samples)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict_windows(windows),
                               np.mean([m.predict_windows(windows) for m in members], axis=0), atol=1e-6)
    assert 'architecture' not in ser_models.read_model_json(ensemble)


@pytest.mark.parametrize('damage,message', [
    (lambda d: (d / 'lmu' / 'model.json').write_text((d / 'timnet' / 'model.json').read_text()),
     r'lmu/model.json: sha256 .* does not match'),
    (lambda d: shutil.rmtree(d / 'lmu'), 'lmu/model.json: missing'),
    (lambda d: edit_json(d, lambda m: m['members'][1].update(directory='../lmu')), 'members/1/directory'),
    (lambda d: edit_json(d, lambda m: m['members'].pop()), 'members'),
    (lambda d: edit_json(d, lambda m: m.update(architecture={'name': 'timnet', 'n_classes': 7, 'n_mfcc': 39,
                                                              'frames': 121})),
     "an ensemble's architecture belong in its members"),
    (lambda d: edit_json(d, lambda m: m.update(labels=m['labels'][::-1])), 'differs from pair-test in its labels'),
    (lambda d: edit_json(d, lambda m: m.update(speaker_normalization={
        'mean': [0.0] * 39, 'std': [1.0] * 39, 'frames': 40.0, 'memory_frames': 100.0})),
     'different speaker statistics'),
])
def test_a_broken_ensemble_names_what_is_wrong(ensemble, damage, message):
    damage(ensemble)
    with pytest.raises(ArtifactError, match=message):
        load(ensemble)


def test_a_label_prior_divides_the_networks_probabilities_by_each_labels_training_share(broken, data_dir):
    from ser_models.artifact import with_label_prior
    windows = np.stack([np.resize(w, int(WINDOW_SECONDS * 16000)) for w in speech_windows(data_dir)])
    plain = load(broken, backend='onnxruntime')
    shares = np.array([4, 4, 4, 4, 4, 4, 1], dtype=np.float64)    # disgust drawn a quarter as often
    expected = {}
    for correction in (1.0, 0.5):
        corrected = load(broken, backend='onnxruntime')
        corrected.meta = with_label_prior(plain.meta, shares, correction)
        divided = plain.network_windows(windows) / (shares / shares.sum()) ** correction
        expected[correction] = divided / divided.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(corrected.network_windows(windows), expected[correction], rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected[1.0], plain.network_windows(windows), atol=1e-3)
    edit_json(broken, lambda m: m.update(label_prior=with_label_prior(m, shares, 1.0)['label_prior']))
    served = load(broken, backend='onnxruntime')      # model.json's label_prior is applied alike
    np.testing.assert_allclose(served.network_windows(windows), expected[1.0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='7 positive numbers'):
        with_label_prior(plain.meta, shares[:6], 1.0)
    with pytest.raises(ValueError, match=r'in \[0, 1\]'):
        with_label_prior(plain.meta, shares, 1.5)


def test_a_stream_prior_changes_only_how_many_seconds_the_training_statistics_count_for():
    from ser_models.artifact import with_stream_prior
    meta = json.loads((REPO / 'weights' / 'timnet' / 'model.json').read_text())
    changed = with_stream_prior(meta, 0.5)
    features = FeatureConfig.from_dict(meta['features'])
    assert changed['speaker_normalization']['frames'] == 0.5 * features.sample_rate / features.hop_length
    for key in ('mean', 'std', 'memory_frames'):
        assert changed['speaker_normalization'][key] == meta['speaker_normalization'][key]
    assert {k: v for k, v in changed.items() if k != 'speaker_normalization'} == {
        k: v for k, v in meta.items() if k != 'speaker_normalization'}
    with pytest.raises(ValueError, match='positive number of seconds'):
        with_stream_prior(meta, 0.0)
    with pytest.raises(ArtifactError, match='no speaker_normalization'):
        with_stream_prior({k: v for k, v in meta.items() if k != 'speaker_normalization'}, 1.0)


def test_a_lone_call_weighs_its_window_against_the_prior_model_json_states_now(data_dir):
    """A stream prior set after loading (as the benchmark serves a row) reaches lone calls too: the window
    counts beside the training statistics worth that many seconds, as a new stream's would."""
    from ser_models.artifact import with_stream_prior
    predictor = load(REPO / 'weights' / 'lmu')
    window = ser_models.predictor.fit_to_length(speech_windows(data_dir)[0], predictor.window_samples)[None]
    as_shipped = predictor.predict_windows(window)
    predictor.meta = with_stream_prior(predictor.meta, 10.0)
    mfcc = predictor.features(window)
    heard = predictor.stream_normalizer()
    heard.update(mfcc, weight=predictor.lone_window_weight)
    np.testing.assert_allclose(predictor.predict_windows(window), predictor.predict_features(heard(mfcc)), atol=1e-6)
    assert not np.allclose(predictor.predict_windows(window), as_shipped, atol=1e-4)


def test_a_lone_call_counts_its_window_as_often_as_model_json_says(data_dir):
    """model.json's lone_window_weight, else LONE_WINDOW_WEIGHT; setting it on a predictor is setting it in
    the model.json it serves."""
    predictor = load(REPO / 'weights' / 'lmu')
    window = ser_models.predictor.fit_to_length(speech_windows(data_dir)[0], predictor.window_samples)[None]
    mfcc = predictor.features(window)
    for weight in (0.0, 0.5, 2.0):
        predictor.meta = {**predictor.meta, 'lone_window_weight': weight}
        heard = predictor.stream_normalizer()
        heard.update(mfcc, weight=weight)
        np.testing.assert_allclose(predictor.predict_windows(window), predictor.predict_features(heard(mfcc)),
                                   atol=1e-6)
    predictor.lone_window_weight = 1.5
    assert predictor.meta['lone_window_weight'] == 1.5
    predictor.meta = {k: v for k, v in predictor.meta.items() if k != 'lone_window_weight'}
    assert predictor.lone_window_weight == ser_models.predictor.LONE_WINDOW_WEIGHT


def test_speed_copies_end_where_the_windows_end_and_speed_one_is_the_window_itself():
    from ser_models.windowing import change_speed, clip_windows, speed_copies
    rate, window, hop = 16000, 48000, 8000
    clip = np.random.default_rng(0).standard_normal(70000).astype(np.float32)
    assert np.array_equal(speed_copies(clip, window, hop, 1.0, rate), clip_windows(clip, window, hop))
    faster = speed_copies(clip, window, hop, 1.1, rate)
    assert faster.shape == clip_windows(clip, window, hop).shape == (4, window)
    # The last window ends at the clip's end: 52800 samples of it played 1.1 times as fast.
    expected = change_speed(clip[-52800:], 1.1, rate)
    assert abs(len(expected) - window) <= 1 and np.allclose(faster[-1][:len(expected)], expected[:window])
    # The first would reach 4800 samples before the clip: a stream heard silence there.
    first = change_speed(np.concatenate([np.zeros(4800, np.float32), clip[:window]]), 1.1, rate)
    assert np.allclose(faster[0][:window - 1], first[:window - 1])
    slower = speed_copies(clip, window, hop, 0.9, rate)
    segment = clip[hop + window - 43200:hop + window]
    assert np.allclose(slower[1][:window - 1], change_speed(segment, 0.9, rate)[:window - 1])
    short = clip[:20000]
    assert speed_copies(short, window, hop, 1.1, rate).shape == (1, window)


def test_clip_probabilities_average_the_windows_heard_at_every_test_time_speed(artifacts, data_dir):
    from ser_models.windowing import predict_clips, speed_copies
    predictor = load(artifacts['timnet'])
    clip = speech_windows(data_dir)[0]
    hop = predictor.sample_rate // 2
    alone = predict_clips(predictor, [clip], predictor.sample_rate)
    predictor.meta = {**predictor.meta, 'test_time_speeds': [0.9, 1.0, 1.1]}
    heard = predict_clips(predictor, [clip], predictor.sample_rate)
    copies = np.concatenate([speed_copies(clip, predictor.window_samples, hop, speed, predictor.sample_rate)
                             for speed in (0.9, 1.0, 1.1)])
    assert np.allclose(heard[0], predictor.predict_windows(copies).mean(axis=0), atol=1e-6)
    assert not np.allclose(heard, alone)


def test_a_stream_learns_its_statistics_from_the_audio_as_heard_never_from_a_sped_copy(data_dir):
    from ser_models.windowing import clip_windows, predict_clips_online
    predictor = load(REPO / 'weights' / 'timnet')
    clip = speech_windows(data_dir)[1]
    hop = predictor.sample_rate // 2
    updates, start_stream = [], predictor.stream_normalizer

    def recorded_stream():
        normalizer = start_stream()
        update = normalizer.update
        normalizer.update = lambda mfcc, weight: (updates.append(mfcc.copy()), update(mfcc, weight=weight))
        return normalizer
    predictor.stream_normalizer = recorded_stream
    predictor.meta = {**predictor.meta, 'test_time_speeds': [0.9, 1.1]}
    sped = predict_clips_online(predictor, [clip], ['a'], [0])
    heard = predictor.features(clip_windows(clip, predictor.window_samples, hop))
    assert len(updates) == len(heard) > 1 and np.allclose(np.stack(updates), heard)
    predictor.meta = {**predictor.meta, 'test_time_speeds': [1.0]}
    assert not np.allclose(sped, predict_clips_online(predictor, [clip], ['a'], [0]))
