"""Training package: corpus parsers, splits, augmentation, a short real run, resume, DDP, evaluation."""
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from training import config as train_config
from training.augment import VtlpFeatures, WaveAugmenter, add_noise, spec_augment, vtlp_warp
from training.datasets import UnknownLabelError, load_clips, parse_name, read_manifest, scan_folder
from training.splits import make_splits, speaker_folds

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('dataset,name,speaker,emotion', [
    ('emovo', 'dis-f1-b1.flac', 'f1', 'disgust'),
    ('emovo', 'gio-m2-n5.wav', 'm2', 'happy'),
    ('ravdess', '03-01-05-01-02-01-12.wav', '12', 'angry'),
    ('ravdess', '03-01-02-02-01-02-07.flac', '07', 'calm'),
    ('tess', 'OAF_back_angry.wav', 'OAF', 'angry'),
    ('tess', 'YAF_date_ps.flac', 'YAF', 'surprised'),
    ('tess', 'OA_bite_neutral.wav', 'OAF', 'neutral'),
    ('cremad', '1001_DFA_ANG_XX.wav', '1001', 'angry'),
    ('cremad', '1091_WSI_FEA_LO.wav', '1091', 'fearful'),
    ('savee', 'DC_a01.wav', 'DC', 'angry'),
    ('savee', 'KL_su15.wav', 'KL', 'surprised'),
    ('emodb', '03a01Fa.wav', '03', 'happy'),
    ('emodb', '16b10Wb.wav', '16', 'angry'),
    ('nemo', 'EB0_anger_1.flac', 'EB0', 'angry'),
    ('nemo', 'TP0_happiness_12.wav', 'TP0', 'happy'),
    ('nemo', 'KS0_surprised_3.flac', 'KS0', 'surprised'),
])
def test_file_names_parse_to_speaker_and_canonical_label(dataset, name, speaker, emotion):
    assert parse_name(dataset, name) == (speaker, emotion)


def test_labels_without_a_canonical_class_and_foreign_names_are_refused():
    with pytest.raises(UnknownLabelError, match='boredom|no canonical'):
        parse_name('emodb', '03a01Lc.wav')
    with pytest.raises(ValueError, match='not a ravdess'):
        parse_name('ravdess', 'OAF_back_angry.wav')


def write_tone(path: Path, seconds=0.5, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)


def test_scanning_generated_fixtures_of_corpora_not_shipped_here(tmp_path):
    names = ['cremad/1001_DFA_ANG_XX.wav', 'cremad/1002_IEO_HAP_HI.wav', 'savee/DC/DC_a01.wav',
             'savee/JE/JE_sa03.wav', 'emodb/wav/03a01Fa.wav', 'emodb/wav/03a01Lc.wav', 'misc/readme.wav']
    for name in names:
        write_tone(tmp_path / name)
    clips, skipped = scan_folder(tmp_path)
    found = {(c.dataset, c.speaker, c.emotion) for c in clips}
    assert found == {('cremad', '1001', 'angry'), ('cremad', '1002', 'happy'), ('savee', 'DC', 'angry'),
                     ('savee', 'JE', 'sad'), ('emodb', '03', 'happy')}
    reasons = {path.name: reason for path, reason in skipped}
    assert 'no canonical label' in reasons['03a01Lc.wav'] and 'no known corpus' in reasons['readme.wav']


def test_shared_corpora_load_from_manifest_and_by_scanning(data_dir):
    from_manifest = load_clips(data_dir)
    scanned, skipped = scan_folder(data_dir)
    assert len(from_manifest) == len(scanned) == 5829 and not skipped
    by_path = {c.path.resolve(): c for c in scanned}
    for clip in from_manifest:
        other = by_path[clip.path.resolve()]
        assert (clip.dataset, clip.speaker, clip.emotion) == (other.dataset, other.speaker, other.emotion)
    counts = Counter(c.dataset for c in scanned)
    assert counts == {'emovo': 392, 'ravdess': 879, 'tess': 2400, 'nemo': 2158}


def test_speaker_kfold_never_puts_a_speaker_on_two_sides(data_dir):
    clips = load_clips(data_dir)
    folds = speaker_folds(clips, 4)
    assert sorted(s for fold in folds for s in fold) == sorted({c.speaker_key for c in clips})
    for split in make_splits(clips, 'speaker_kfold', 4, 0.15):
        train, val, test = ({c.speaker_key for c in part} for part in (split.train, split.validation, split.test))
        assert not train & test and not val & test
        # Validation comes from the training side: whole speakers where a corpus has enough of them.
        assert {k for k in val if k.startswith('ravdess')}.isdisjoint(train)
        assert len(split.train) + len(split.validation) + len(split.test) == len(clips)


def test_paper_protocol_is_random_and_stratified(data_dir):
    clips = load_clips(data_dir, datasets=['emovo'])
    splits = make_splits(clips, 'paper_random_kfold', 10, 0.0)
    assert len(splits) == 10
    tested = [c.path for s in splits for c in s.test]
    assert sorted(tested) == sorted(c.path for c in clips)
    assert all(not s.validation for s in splits)


@pytest.mark.parametrize('balance,balance_classes', [(True, False), (True, True), (False, True)])
def test_training_draws_corpora_and_labels_as_evenly_as_configured(balance, balance_classes):
    from training.train import epoch_order, label_shares, sampling_weights
    # Three corpora of unequal size; only the first has 'disgust', as EMOVO here.
    datasets = np.array(['emovo'] * 70 + ['tess'] * 240 + ['ravdess'] * 60)
    labels = np.array([*np.repeat(['angry', 'sad', 'happy', 'disgust'], [20, 20, 20, 10]),
                       *np.repeat(['angry', 'sad', 'happy'], 80), *np.repeat(['angry', 'sad', 'happy'], 20)])
    weights = sampling_weights(datasets, labels, balance, balance_classes)
    order = epoch_order(np.arange(len(labels)), weights, copies=200, rng=np.random.default_rng(0))
    drawn_labels, drawn_corpora = Counter(labels[order]), Counter(datasets[order])
    if balance_classes:
        assert all(count / len(order) == pytest.approx(1 / 4, abs=0.01) for count in drawn_labels.values())
        angry_corpora = Counter(datasets[order][labels[order] == 'angry'])
        if balance:
            assert all(count / drawn_labels['angry'] == pytest.approx(1 / 3, abs=0.02)
                       for count in angry_corpora.values())
    else:
        assert all(count / len(order) == pytest.approx(1 / 3, abs=0.01) for count in drawn_corpora.values())
        assert drawn_labels['disgust'] / len(order) == pytest.approx(1 / 3 / 7, abs=0.01)
    assert sampling_weights(datasets, labels, False, False) is None
    # label_shares: what the draws above come to, counted exactly (a network's training label prior).
    clips = [SimpleNamespace(dataset=d, emotion=e) for d, e in zip(datasets, labels, strict=True)]
    order_labels = ['angry', 'sad', 'happy', 'disgust']
    shares = label_shares(clips, order_labels, {'balance': balance, 'balance_classes': balance_classes})
    assert shares.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(shares, [drawn_labels[label] / len(order) for label in order_labels], atol=0.01)
    plain = label_shares(clips, order_labels, {})     # no balancing: each clip alike
    np.testing.assert_allclose(plain, [120 / 370, 120 / 370, 120 / 370, 10 / 370])
    shuffled = epoch_order(np.arange(5), None, copies=2, rng=np.random.default_rng(0))
    assert sorted(shuffled) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_augmentation_changes_training_audio_as_configured():
    rng = np.random.default_rng(0)
    wave = (0.1 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    noisy = add_noise(wave, 10.0, rng)
    snr = 10 * np.log10(np.mean(wave ** 2) / np.mean((noisy - wave) ** 2))
    assert snr == pytest.approx(10.0, abs=0.5)
    settings = dict(train_config.DEFAULTS['augment'], speed_prob=1.0, speed_range=[1.25, 1.25], noise_prob=0.0,
                    gain_db=[0.0, 0.0])
    faster = WaveAugmenter(settings, 16000)(wave, rng)
    assert len(faster) == pytest.approx(16000 / 1.25, abs=2)
    features = np.ones((2, 39, 121), dtype=np.float32)
    masked = spec_augment(features, dict(settings, spec_time_masks=1, spec_time_width=10, spec_freq_masks=1,
                                         spec_freq_width=4), np.random.default_rng(3))
    assert 0 < (masked == 0).mean() < 0.2


def test_vtlp_warps_the_mel_filters_of_the_windows_it_draws():
    from ser_models.features import MfccExtractor
    extractor = MfccExtractor()
    rng = np.random.default_rng(0)
    windows = (rng.standard_normal((4, 48000)) * 0.1).astype(np.float32)
    np.testing.assert_allclose(extractor.warped(lambda f: f)(windows), extractor(windows), rtol=1e-5, atol=1e-4)
    warp = vtlp_warp(1.1, 8000.0)
    frequencies = np.linspace(0, 8000, 200)
    assert warp(np.array([0.0, 8000.0])) == pytest.approx([0.0, 8000.0])
    assert np.all(np.diff(warp(frequencies)) > 0) and warp(np.array([1000.0]))[0] == pytest.approx(1100.0)
    unchanged = VtlpFeatures(extractor, 0.0, [0.9, 1.1])(windows, rng)
    np.testing.assert_array_equal(unchanged, extractor(windows))
    warped = VtlpFeatures(extractor, 1.0, [0.9, 0.9])(windows, rng)
    np.testing.assert_allclose(warped, extractor.warped(vtlp_warp(0.9, 8000.0))(windows), rtol=1e-5, atol=1e-4)
    assert np.abs(warped - unchanged).mean() > 0.1


def test_partial_speaker_statistics_mix_the_prior_with_a_few_clips_of_the_same_speaker(tmp_path):
    from ser_models.features import FeatureConfig, MfccExtractor, SpeakerNormalizer
    from training.data import ClipSet, WindowBatcher
    from training.datasets import Clip
    rng = np.random.default_rng(0)
    clips = []
    for speaker, level in (('a', 0.05), ('b', 0.3)):
        for n in range(4):
            path = tmp_path / f'{speaker}{n}.flac'
            t = np.arange(16000) / 16000
            tone = level * np.sin(2 * np.pi * (150 + 40 * n) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(path, tone.astype(np.float32), 16000)
            clips.append(Clip(path, 'tones', speaker, 'neutral' if n % 2 else 'angry'))
    extractor = MfccExtractor(FeatureConfig(normalize='speaker'))
    clip_set = ClipSet(clips, ['neutral', 'angry'], 16000)
    clip_set.fit_speaker_normalizers(extractor)
    whole = SpeakerNormalizer.fit([extractor(clip_set.audio[i]) for i in range(4)], extractor.config)
    np.testing.assert_allclose(clip_set.normalizers[0].mean, whole.mean)
    np.testing.assert_allclose(clip_set.normalizers[0].std, whole.std)
    prior = SpeakerNormalizer(extractor.config.channels, clip_set.pooled_statistics(range(8)).summary(50.0))
    frames = clip_set.clip_statistics[0].count
    heard = {(clip_set.partial_speaker_statistics(5, prior, 3, rng).count - 50.0) / frames for _ in range(30)}
    assert heard == {1.0, 2.0, 3.0}    # its own clip and up to two more of its speaker's
    assert clip_set.partial_speaker_statistics(5, prior, 1, rng).count == 50.0 + frames
    own_only = SpeakerNormalizer.merged([prior, clip_set.clip_statistics[5]])
    quiet = dict(train_config.DEFAULTS['augment'], noise_prob=0.0, speed_prob=0.0, shift_max_seconds=0.0,
                 gain_db=[0.0, 0.0], spec_time_masks=0, spec_freq_masks=0, partial_speaker_clips=1)
    window = np.zeros(48000, dtype=np.float32)
    window[16000:32000] = clip_set.audio[5]
    raw = extractor(window[None])[0]
    for share, expected in ((0.0, clip_set.normalizers[5]), (1.0, own_only)):
        batcher = WindowBatcher(extractor, 48000, dict(quiet, partial_speaker_prob=share), speaker_prior=prior)
        batch, _ = batcher.training_batch(clip_set, [5], rng)
        np.testing.assert_allclose(batch[0], expected(raw), atol=1e-4)
    assert not np.allclose(own_only(raw), clip_set.normalizers[5](raw), atol=1e-2)


def harmonic_voices(directory, count: int = 3) -> list:
    """`count` one-second clips of speaker 'a' (neutral): five harmonics on 140, 170, ... Hz, as FLAC."""
    from training.datasets import Clip
    t = np.arange(16000) / 16000
    clips = []
    for n in range(count):
        voice = sum(0.1 / k * np.sin(2 * np.pi * (140 + 30 * n) * k * t) for k in range(1, 6))
        sf.write(directory / f'a{n}.flac', voice.astype(np.float32), 16000)
        clips.append(Clip(directory / f'a{n}.flac', 'tones', 'a', 'neutral'))
    return clips


def test_virtual_speakers_are_standardised_with_their_own_statistics(tmp_path):
    from ser_models.features import FeatureConfig, MfccExtractor, SpeakerNormalizer
    from ser_models.windowing import change_speed
    from training.data import ClipSet, WindowBatcher
    rng = np.random.default_rng(0)
    clips = harmonic_voices(tmp_path)
    extractor = MfccExtractor(FeatureConfig(normalize='speaker', pitch=True))
    clip_set = ClipSet(clips, ['neutral'], 16000)
    clip_set.fit_speaker_normalizers(extractor, virtual_speeds=[1.25])
    assert clip_set.normalizers is clip_set.statistics_at[1.0][1]
    faster = [change_speed(audio, 1.25, 16000) for audio in clip_set.audio]
    expected = SpeakerNormalizer.fit([extractor(audio) for audio in faster], extractor.config)
    np.testing.assert_allclose(clip_set.statistics_at[1.25][1][0].mean, expected.mean, rtol=1e-5, atol=1e-5)
    # The virtual speaker's F0 sits 12 log2(1.25) semitones above the real one's.
    f0 = extractor.config.n_mfcc
    shift = clip_set.statistics_at[1.25][1][0].mean[f0] - clip_set.normalizers[0].mean[f0]
    assert abs(shift - 12 * np.log2(1.25)) < 0.5
    quiet = dict(train_config.DEFAULTS['augment'], noise_prob=0.0, speed_prob=0.0, shift_max_seconds=0.0,
                 gain_db=[0.0, 0.0], spec_time_masks=0, spec_freq_masks=0)
    window = np.zeros(48000, dtype=np.float32)
    start = (48000 - len(faster[1])) // 2
    window[start:start + len(faster[1])] = faster[1]
    batcher = WindowBatcher(extractor, 48000, dict(quiet, virtual_speaker_prob=1.0, virtual_speaker_speeds=[1.25]))
    batch, _ = batcher.training_batch(clip_set, [1], rng)
    np.testing.assert_allclose(batch[0], clip_set.statistics_at[1.25][1][1](extractor(window[None])[0]), atol=1e-4)
    # Standardised with its own statistics, the virtual speaker's F0 sits where the real one's does.
    real, _ = WindowBatcher(extractor, 48000, quiet).training_batch(clip_set, [1], rng)
    voiced = batch[0][f0 + 1] > 0
    assert abs(np.median(batch[0][f0][voiced]) - np.median(real[0][f0][voiced])) < 0.3
    with pytest.raises(ValueError, match='features.normalize=speaker'):
        train_config.resolve(overrides=['augment.virtual_speaker_prob=0.5', 'augment.virtual_speaker_speeds=[0.9]'])


def test_paused_windows_hear_their_clip_then_silence_with_statistics_that_count_it(tmp_path):
    """augment.stream_pause_prob: a window of its clip followed by stream_pause_seconds of silence,
    standardised with its speaker's statistics over clips each so followed, as a stream counts pauses."""
    from ser_models.features import FeatureConfig, MfccExtractor, SpeakerNormalizer
    from training.data import ClipSet, WindowBatcher
    rng = np.random.default_rng(0)
    clips = harmonic_voices(tmp_path)
    extractor = MfccExtractor(FeatureConfig(normalize='speaker'))
    clip_set = ClipSet(clips, ['neutral'], 16000)
    clip_set.fit_speaker_normalizers(extractor, pause_seconds=1.5)
    followed = [np.concatenate([audio, np.zeros(24000, np.float32)]) for audio in clip_set.audio]
    expected = SpeakerNormalizer.fit([extractor(audio) for audio in followed], extractor.config)
    paused = clip_set.paused_statistics[1][0]
    np.testing.assert_allclose(paused.mean, expected.mean, rtol=1e-5, atol=1e-5)
    assert paused.mean[0] < clip_set.normalizers[0].mean[0] - 10    # silence pulls the level down
    quiet = dict(train_config.DEFAULTS['augment'], noise_prob=0.0, speed_prob=0.0, shift_max_seconds=0.0,
                 gain_db=[0.0, 0.0], spec_time_masks=0, spec_freq_masks=0)
    window = np.zeros(48000, dtype=np.float32)
    window[4000:44000] = followed[2]
    batch, _ = WindowBatcher(extractor, 48000, dict(quiet, stream_pause_prob=1.0)).training_batch(clip_set, [2], rng)
    np.testing.assert_allclose(batch[0], paused(extractor(window[None])[0]), atol=1e-4)
    # Without the share, windows and statistics are as before.
    plain, _ = WindowBatcher(extractor, 48000, quiet).training_batch(clip_set, [2], rng)
    window = np.zeros(48000, dtype=np.float32)
    window[16000:32000] = clip_set.audio[2]
    np.testing.assert_allclose(plain[0], clip_set.normalizers[2](extractor(window[None])[0]), atol=1e-4)
    with pytest.raises(ValueError, match='stream_pause_prob needs'):
        train_config.resolve(overrides=['augment.stream_pause_prob=0.5'])


@pytest.mark.parametrize('keeps_f0, semitones', [(False, 12 + 12 * np.log2(1.25)), (True, 12.0)])
def test_speed_perturbation_can_leave_the_f0_channel_where_the_speaker_has_it(tmp_path, keeps_f0, semitones):
    from ser_models.features import FeatureConfig, MfccExtractor
    from training.data import ClipSet, WindowBatcher
    from training.datasets import Clip
    t = np.arange(48000) / 16000
    voice = sum(0.1 / k * np.sin(2 * np.pi * 200 * k * t) for k in range(1, 6))    # 200 Hz: 12 st re 100 Hz
    sf.write(tmp_path / 'voice.flac', voice.astype(np.float32), 16000)
    clip_set = ClipSet([Clip(tmp_path / 'voice.flac', 'tones', 'a', 'neutral')], ['neutral'], 16000)
    extractor = MfccExtractor(FeatureConfig(normalize='none', pitch=True))
    faster = dict(train_config.DEFAULTS['augment'], noise_prob=0.0, speed_prob=1.0, speed_range=[1.25, 1.25],
                  shift_max_seconds=0.0, gain_db=[0.0, 0.0], spec_time_masks=0, spec_freq_masks=0,
                  speed_keeps_f0=keeps_f0)
    batch, _ = WindowBatcher(extractor, 48000, faster).training_batch(clip_set, [0], np.random.default_rng(0))
    assert np.median(batch[0, extractor.config.n_mfcc]) == pytest.approx(semitones, abs=0.3)


def test_training_threads_bound_torch_and_numpy_blas():
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from training.train import limit_threads
    before = torch.get_num_threads()
    with threadpool_limits():              # restores numpy's pools on the way out
        limit_threads(1)
        assert torch.get_num_threads() == 1
        blas = [pool['num_threads'] for pool in threadpool_info() if pool['user_api'] == 'blas']
        assert blas and set(blas) == {1}
    torch.set_num_threads(before)


def test_config_layers_presets_and_overrides(tmp_path):
    resolved = train_config.resolve(presets=['original_cktim'], overrides=['training.lr=0.02', 'model.n_tab=6'])
    assert resolved['training']['lr'] == 0.02 and resolved['training']['batch_size'] == 64
    assert resolved['model'] == {'name': 'cktim', 'filters': 39, 'kernel_size': 2, 'dropout': 0.1,
                                 'omega_0': 25.0, 'generator': 'conv', 'n_tab': 6}
    with pytest.raises(ValueError, match='unknown config key'):
        train_config.resolve(overrides=['training.learning_rate=1'])
    with pytest.raises(FileNotFoundError, match='presets'):
        train_config.resolve(presets=['nope'])


@pytest.fixture(scope='module')
def small_corpus(data_dir, tmp_path_factory):
    """A manifest of 48 real clips: 3 emotions x 4 EMOVO speakers x 4 sentences."""
    rows = []
    with open(data_dir / 'manifest.csv', newline='') as stream:
        for row in csv.DictReader(stream):
            if row['dataset'] == 'emovo' and row['emotion'] in ('angry', 'sad', 'neutral') and \
                    row['path'].split('-')[-1][:2] in ('b1', 'b2', 'l1', 'n1'):
                rows.append(row)
    manifest = tmp_path_factory.mktemp('corpus') / 'manifest.csv'
    with open(manifest, 'w', newline='') as stream:
        writer = csv.DictWriter(stream, fieldnames=['path', 'dataset', 'speaker', 'emotion'], extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    assert len(read_manifest(manifest, data_dir)) == 48
    return manifest


def tiny_overrides(data_dir, manifest, epochs):
    return [f'data.root={data_dir}', f'data.manifest={manifest}', 'data.datasets=[emovo]',
            'model.name=timnet', 'model.n_tab=2', f'training.epochs={epochs}', 'training.batch_size=16',
            'training.threads=1', 'split.folds=4', 'split.fold=0']


def read_history(run_dir):
    return json.loads((run_dir / 'fold0' / 'metrics.json').read_text())


def test_short_real_training_run_writes_every_output(data_dir, small_corpus, tmp_path):
    from training.train import run
    summary = run(train_config.resolve(overrides=tiny_overrides(data_dir, small_corpus, 2)), tmp_path / 'run')
    fold = tmp_path / 'run' / 'fold0'
    for name in ('metrics.json', 'test_metrics.json', 'curves.png', 'confusion.png', 'checkpoint.pt',
                 'artifact/model.json', 'artifact/model.safetensors', 'artifact/model.onnx'):
        assert (fold / name).is_file(), name
    for name in ('config.yaml', 'environment.json', 'summary.json'):
        assert (tmp_path / 'run' / name).is_file(), name
    test = json.loads((fold / 'test_metrics.json').read_text())
    assert test['n'] == 12 and 0 <= test['uar'] <= 1 and set(test['per_class']) == {'neutral', 'sad', 'angry'}
    assert len(read_history(tmp_path / 'run')) == 2
    assert summary['folds'][0]['test_speakers'] == fold_speakers(small_corpus, data_dir, 0)
    import ser_models
    predictor = ser_models.load(fold / 'artifact')
    assert predictor.labels == ['neutral', 'sad', 'angry']


def test_the_training_seed_leaves_every_side_s_speakers_and_clips_alone(data_dir, small_corpus, tmp_path):
    """training.seed reseeds the model only; split.seed alone decides who is held out (a rerun is comparable)."""
    from training.train import run
    run(train_config.resolve(overrides=[*tiny_overrides(data_dir, small_corpus, 1), 'training.seed=1']),
        tmp_path / 'run')
    model = json.loads((tmp_path / 'run' / 'fold0' / 'artifact' / 'model.json').read_text())
    held = model['provenance']['data']
    expected = make_splits(read_manifest(small_corpus, data_dir), 'speaker_kfold', 4, 0.15, 0)[0]
    for side, clips in (('train', expected.train), ('validation', expected.validation), ('test', expected.test)):
        assert held[f'{side}_speakers'] == sorted({c.speaker_key for c in clips}), side
    assert (held['train_clips'], held['validation_clips']) == (len(expected.train), len(expected.validation))


def fold_speakers(manifest, data_dir, fold):
    clips = read_manifest(manifest, data_dir)
    return sorted(speaker_folds(clips, 4)[fold])


@pytest.mark.parametrize('recipe', [[], ['training.mixup=0.4', 'training.speaker_adversarial=0.5',
                                         'training.feature_targets=mfcc_stats'],
                                    ['training.weight_average_decay=0.9']],
                         ids=['plain', 'mixup_speaker_adversary_and_feature_targets', 'weight_average'])
def test_resume_continues_exactly_where_it_stopped(data_dir, small_corpus, tmp_path, recipe):
    from training.train import run

    def config(epochs):
        return train_config.resolve(overrides=tiny_overrides(data_dir, small_corpus, epochs) + recipe)
    run(config(3), tmp_path / 'straight')
    run(config(1), tmp_path / 'interrupted')
    run(config(3), tmp_path / 'interrupted', resume=True)
    straight, resumed = read_history(tmp_path / 'straight'), read_history(tmp_path / 'interrupted')
    assert [h['epoch'] for h in resumed] == [1, 2, 3]
    for a, b in zip(straight, resumed, strict=True):
        assert a['train_loss'] == pytest.approx(b['train_loss'], rel=1e-5)
        assert a['val_loss'] == pytest.approx(b['val_loss'], rel=1e-5)


def test_weight_averaging_validates_and_keeps_the_moving_average(data_dir, small_corpus, tmp_path):
    import torch
    from safetensors.torch import load_file

    from training.train import run
    overrides = tiny_overrides(data_dir, small_corpus, 2) + ['training.select=last_epoch']
    run(train_config.resolve(overrides=overrides + ['training.weight_average_decay=0.9']), tmp_path / 'run')
    checkpoint = torch.load(tmp_path / 'run' / 'fold0' / 'checkpoint.pt', weights_only=True)
    averaged = {k.removeprefix('module.'): v for k, v in checkpoint['averaged'].items() if k.startswith('module.')}
    assert checkpoint['averaged']['n_averaged'] > 2
    kept = load_file(tmp_path / 'run' / 'fold0' / 'artifact' / 'model.safetensors')
    weights = [k for k, v in checkpoint['model'].items() if v.is_floating_point() and 'running' not in k]
    assert any(not torch.equal(checkpoint['model'][k], averaged[k]) for k in weights)
    for name in weights:
        assert torch.allclose(kept[name], averaged[name]), name
    with pytest.raises(ValueError, match='weight_average_decay must be in'):
        run(train_config.resolve(overrides=overrides + ['training.weight_average_decay=1']), tmp_path / 'bad')


def test_distillation_learns_from_a_teacher_of_the_same_fold_only(data_dir, small_corpus, tmp_path):
    import torch

    from ser_models import FeatureConfig
    from training.distill import Teacher
    from training.train import run

    def config(fold, extra=()):
        overrides = tiny_overrides(data_dir, small_corpus, 2) + [f'split.fold={fold}', *extra]
        return train_config.resolve(overrides=overrides)
    run(config(0), tmp_path / 'teacher')
    teacher = tmp_path / 'teacher' / 'fold0' / 'artifact'
    run(config(0, [f'training.teachers=[{teacher}]', 'training.distill_weight=0.7']), tmp_path / 'student')
    plain, student = read_history(tmp_path / 'teacher'), read_history(tmp_path / 'student')
    assert len(student) == 2 and student[0]['train_loss'] != pytest.approx(plain[0]['train_loss'], rel=1e-3)
    assert (tmp_path / 'student' / 'fold0' / 'artifact' / 'model.json').is_file()
    # A teacher that trained on this fold's test speakers would leak them into the student.
    with pytest.raises(ValueError, match='trained on speakers this run tests on'):
        run(config(1, [f'training.teachers=[{teacher}]']), tmp_path / 'leaky')
    with pytest.raises(ValueError, match='distill_weight must be in'):
        run(config(0, [f'training.teachers=[{teacher}]', 'training.distill_weight=1.5']), tmp_path / 'overweight')
    with pytest.raises(ValueError, match='temperature must be positive'):
        run(config(0, [f'training.teachers=[{teacher}]', 'training.distill_temperature=0']), tmp_path / 'cold')

    # The loss vanishes where the student already gives the teachers' (softened) probabilities.
    meta = json.loads((teacher / 'model.json').read_text())
    data = meta['provenance']['data']
    judge = Teacher([str(teacher)], meta['labels'], FeatureConfig.from_dict(meta['features']),
                    set(data['test_speakers']), set(data['validation_speakers']), temperature=3.0)
    # A student choosing its epoch on other speakers could choose it on clips the teacher learnt; a
    # refit, validating on nothing, chooses none.
    for validation, refused in (({'emovo:elsewhere'}, True), (set(), False)):
        with pytest.raises(ValueError, match='validated on other speakers') if refused else contextlib.nullcontext():
            Teacher([str(teacher)], meta['labels'], FeatureConfig.from_dict(meta['features']),
                    set(data['test_speakers']), validation, temperature=1.0)
    mfcc = torch.randn(4, meta['architecture']['n_mfcc'], meta['architecture']['frames'])
    targets = judge.targets(mfcc)
    assert torch.allclose(targets.sum(dim=-1), torch.ones(4))
    assert judge.loss(torch.log(targets) * 3.0, targets).item() == pytest.approx(0.0, abs=1e-5)
    assert judge.loss(torch.zeros(4, 3), targets).item() > 0


def test_a_clip_teacher_learns_each_training_clip_from_a_classifier_that_never_heard_its_speaker(
        data_dir, small_corpus, tmp_path, monkeypatch):
    import torch

    from training import classical, train
    from training.distill import Teacher
    overrides = tiny_overrides(data_dir, small_corpus, 2)
    train.run(train_config.resolve(overrides=overrides), tmp_path / 'plain')
    plain = read_history(tmp_path / 'plain')
    fits = []
    original = classical.out_of_speaker_probabilities

    def recorded(features, targets, speakers, groups, n_classes):
        fits.append((list(speakers), groups))
        return original(features, targets, speakers, groups, n_classes)
    monkeypatch.setattr(train, 'out_of_speaker_probabilities', recorded)
    clip_teacher = ['training.clip_teacher=mfcc_stats', f'training.feature_cache={tmp_path / "features"}']
    summary = train.run(train_config.resolve(overrides=overrides + clip_teacher), tmp_path / 'student')
    student = read_history(tmp_path / 'student')
    assert len(student) == 2 and student[0]['train_loss'] != pytest.approx(plain[0]['train_loss'], rel=1e-3)
    assert (tmp_path / 'features' / 'mfcc_stats.npz').is_file()
    # Only training speakers' clips were fitted and scored, never a test speaker's.
    (speakers, groups), = fits
    fold = summary['folds'][0]
    assert not set(speakers) & set(fold['test_speakers'])
    assert sorted(s for g in groups for s in g) == sorted(set(speakers))

    # Mixed windows mix their clips' probabilities; the targets are softened probabilities.
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    judge = Teacher([], ['neutral', 'sad', 'angry'], None, set(), set(), temperature=1.0,
                    clip_probabilities=probabilities)
    mixed = judge.targets(torch.zeros(2, 3, 4), np.array([0, 1]), share=0.75, partner=np.array([1, 0]))
    assert torch.allclose(mixed[0], torch.tensor([0.55, 0.175, 0.275]), atol=1e-5)
    assert torch.equal(judge.targets(torch.zeros(2, 3, 4), np.array([0, 1]), 0.75, torch.tensor([1, 0])), mixed)
    with pytest.raises(ValueError, match='needs the clips'):
        judge.targets(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match='needs artifacts or clip probabilities'):
        Teacher([], ['neutral'], None, set(), set(), temperature=1.0)


def test_feature_targets_are_training_clips_standardised_per_speaker_and_their_head_is_not_exported(
        data_dir, small_corpus, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from safetensors.torch import load_file

    from training import train
    overrides = tiny_overrides(data_dir, small_corpus, 1)
    train.run(train_config.resolve(overrides=overrides), tmp_path / 'plain')
    targets = ['training.feature_targets=mfcc_stats', f'training.feature_cache={tmp_path / "features"}']
    train.run(train_config.resolve(overrides=overrides + targets), tmp_path / 'multitask')
    plain, multitask = read_history(tmp_path / 'plain'), read_history(tmp_path / 'multitask')
    assert multitask[0]['train_loss'] != pytest.approx(plain[0]['train_loss'], rel=1e-3)
    assert (tmp_path / 'features' / 'mfcc_stats.npz').is_file()
    exported = [set(load_file(tmp_path / run / 'fold0' / 'artifact' / 'model.safetensors'))
                for run in ('plain', 'multitask')]
    assert exported[0] == exported[1]

    # Training clips only, each against its own speaker's training clips; beyond the limit clipped.
    speakers = ['a', 'a', 'a', 'b', 'b', 'b', 'a', 'c']
    clip_set = SimpleNamespace(clips=[SimpleNamespace(speaker_key=s, dataset='emovo', emotion='neutral', path=str(i))
                                      for i, s in enumerate(speakers)])
    features = np.array([[1.0, 0], [2, 0], [3, 0], [10, 5], [20, 5], [30, 5]], np.float32)
    features[2, 1] = 1e6
    monkeypatch.setattr(train, 'cached_features', lambda kind, paths, cache: features[[int(p) for p in paths]])
    monkeypatch.setattr(train, 'FEATURE_TARGET_LIMIT', 1.0)
    config = train_config.resolve(overrides=['training.feature_targets=mfcc_stats'])
    architecture = {'name': 'timnet', 'n_classes': 3, 'n_mfcc': 39, 'frames': 121, 'n_tab': 1}
    trainer = train.FoldTrainer(config, architecture, clip_set, ([0, 1, 2, 3, 4, 5], [6], [7]), None, 'cpu',
                                train.Distributed(), tmp_path)
    wanted = trainer.feature_targets
    assert wanted.shape == (8, 2) and not wanted[6:].any()
    assert np.allclose(wanted[:6, 0], [-1, 0, 1] * 2)                       # +-1.22 before clipping
    assert np.allclose(wanted[:6, 1], [-0.7071, -0.7071, 1, 0, 0, 0], atol=1e-4)  # 1.41 before clipping
    config = train_config.resolve(overrides=['training.feature_targets=mfcc_stats',
                                             'training.feature_target_weight=-1'])
    with pytest.raises(ValueError, match='feature_target_weight must be'):
        train.FoldTrainer(config, architecture, clip_set, ([0, 1, 2, 3, 4, 5], [6], [7]), None, 'cpu',
                          train.Distributed(), tmp_path)


def test_corpus_classes_only_trains_as_before_where_the_corpus_has_every_class(data_dir, small_corpus, tmp_path):
    from training import train
    overrides = tiny_overrides(data_dir, small_corpus, 1)
    train.run(train_config.resolve(overrides=overrides), tmp_path / 'plain')
    train.run(train_config.resolve(overrides=[*overrides, 'training.corpus_classes_only=true']), tmp_path / 'masked')
    plain, masked = read_history(tmp_path / 'plain'), read_history(tmp_path / 'masked')
    assert masked[0]['train_loss'] == pytest.approx(plain[0]['train_loss'], rel=1e-4)


def test_corpus_classes_only_leaves_a_corpus_s_missing_classes_out_of_both_losses():
    from types import SimpleNamespace

    import torch

    from training.distill import Teacher
    from training.train import corpus_classes, corpus_cross_entropy
    labels = ['angry', 'disgust', 'neutral']
    clips = [SimpleNamespace(dataset='emovo', emotion=e) for e in labels] + [
        SimpleNamespace(dataset='ravdess', emotion=e) for e in ('angry', 'neutral')]
    allowed = torch.from_numpy(corpus_classes(clips, labels))
    assert allowed.tolist() == [[True, True, True]] * 3 + [[True, False, True]] * 2

    logits = torch.tensor([[2.0, 1.0, 0.0], [0.5, 3.0, -1.0]], requires_grad=True)
    targets = torch.tensor([0, 2])
    everything = torch.ones(2, 3, dtype=torch.bool)
    torch_loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, targets)
    assert torch.allclose(corpus_cross_entropy(logits, targets, everything, 0.1), torch_loss)
    # Row 1 is a RAVDESS window: its disgust logit takes no probability and gets no gradient.
    mask = torch.tensor([[True, True, True], [True, False, True]])
    loss = corpus_cross_entropy(logits, targets, mask, 0.1)
    loss.backward()
    assert logits.grad[1, 1] == 0 and logits.grad[0, 1] != 0
    two_classes = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits[1:, [0, 2]].detach(), torch.tensor([1]))
    one_row = corpus_cross_entropy(logits[1:].detach(), targets[1:], mask[1:], 0.1)
    assert torch.allclose(one_row, two_classes)

    # The teachers' targets are renormalised over the window's classes; all allowed, nothing changes.
    judge = Teacher([], labels, None, set(), set(), temperature=2.0,
                    clip_probabilities=np.array([[0.2, 0.3, 0.5]] * 2, np.float32))
    soft = judge.targets(torch.zeros(2, 3, 4), np.array([0, 1]))
    assert torch.allclose(judge.loss(logits.detach(), soft, everything), judge.loss(logits.detach(), soft))
    shifted = logits.detach().clone()
    shifted[1, 1] += 5.0
    assert torch.allclose(judge.loss(logits.detach(), soft, mask), judge.loss(shifted, soft, mask))
    assert torch.isfinite(judge.loss(logits.detach(), soft, mask))


def test_gradient_reversal_flips_and_scales_the_gradient_only():
    import torch

    from training.train import GradientReversal
    x = torch.ones(3, requires_grad=True)
    y = GradientReversal.apply(x, 0.25)
    assert torch.equal(y, x)
    (2 * y).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -0.5))


def test_distributed_training_with_two_cpu_processes(data_dir, small_corpus, tmp_path):
    args = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
            '-m', 'training.train', '--out', str(tmp_path / 'ddp')]
    for override in tiny_overrides(data_dir, small_corpus, 2):
        args += ['--set', override]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:  # never leave the two workers behind
            os.killpg(process.pid, 9)
            process.wait()
    assert process.returncode == 0, output[-4000:]
    assert (tmp_path / 'ddp' / 'fold0' / 'artifact' / 'model.onnx').is_file()
    assert json.loads((tmp_path / 'ddp' / 'environment.json').read_text())['world_size'] == 2
    assert len(read_history(tmp_path / 'ddp')) == 2


def test_evaluate_command_reports_per_corpus_and_counts_unknown_labels(data_dir, small_corpus, tmp_path):
    from training.train import run
    run(train_config.resolve(overrides=tiny_overrides(data_dir, small_corpus, 1)), tmp_path / 'run')
    # Evaluate on a folder whose manifest also holds labels the model never learned.
    manifest = tmp_path / 'eval.csv'
    rows = list(csv.DictReader(open(data_dir / 'manifest.csv')))
    chosen = [r for r in rows if r['speaker'] in ('f1', '03')][:60] + \
             [r for r in rows if r['dataset'] == 'tess' and r['emotion'] == 'happy'][:5]
    with open(manifest, 'w', newline='') as stream:
        writer = csv.DictWriter(stream, fieldnames=['path', 'dataset', 'speaker', 'emotion'], extrasaction='ignore')
        writer.writeheader()
        writer.writerows(chosen)
    out = tmp_path / 'eval.json'
    result = subprocess.run([sys.executable, '-m', 'training.evaluate', '--model', str(tmp_path / 'run/fold0/artifact'),
                             '--data', str(data_dir), '--manifest', str(manifest), '--json', str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'overall' in result.stdout and 'UAR' in result.stdout
    report = json.loads(out.read_text())
    known = [r for r in chosen if r['emotion'] in ('neutral', 'sad', 'angry')]
    assert report['overall']['n'] == len(known)
    assert report['unknown_label']['n'] == len(chosen) - len(known) > 0
    for entry in [report['overall'], *report['datasets'].values()]:
        assert set(entry) >= {'n', 'uar', 'war', 'f1_macro', 'confusion'}
        assert 0 <= entry['uar'] <= 1 and 0 <= entry['war'] <= 1


def test_evaluate_scores_a_speaker_normalised_model_as_the_node_runs_it(data_dir, tmp_path):
    import ser_models
    from ser_models.windowing import predict_clips_online
    from training.data import load_audio
    from training.evaluate import evaluate
    rows = [r for r in csv.DictReader(open(data_dir / 'manifest.csv')) if r['speaker'] == 'f1'][:12]
    manifest = tmp_path / 'f1.csv'
    with open(manifest, 'w', newline='') as stream:
        writer = csv.DictWriter(stream, fieldnames=['path', 'dataset', 'speaker', 'emotion'], extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    weights = REPO / 'weights' / 'timnet'
    predictor = ser_models.load(weights)
    assert predictor.features.config.normalize == 'speaker'
    online = evaluate(weights, data_dir, manifest, statistics='stream')
    offline = evaluate(weights, data_dir, manifest)
    assert online['statistics'] == 'stream' and online['overall']['n'] == offline['overall']['n'] == len(rows)
    audio = [load_audio(data_dir / r['path'], predictor.sample_rate) for r in rows]
    order = np.random.default_rng(0).permutation(len(rows))
    direct = predict_clips_online(predictor, audio, ['emovo:f1'] * len(rows), order).argmax(axis=1)
    truth = [predictor.labels.index(r['emotion']) for r in rows]
    confusion = np.zeros((len(predictor.labels),) * 2, dtype=int)
    np.add.at(confusion, (truth, direct), 1)
    assert online['overall']['confusion'] == confusion.tolist()
    # Each window a lone predict call: what a caller without a stream gets.
    from ser_models.windowing import predict_clips_alone
    alone = evaluate(weights, data_dir, manifest, statistics='lone')
    confusion = np.zeros((len(predictor.labels),) * 2, dtype=int)
    np.add.at(confusion, (truth, predict_clips_alone(predictor, audio).argmax(axis=1)), 1)
    assert alone['statistics'] == 'lone' and alone['overall']['confusion'] == confusion.tolist()


def test_heldout_report_rebuilds_the_validation_speakers_of_a_run(data_dir):
    from training.heldout import heldout_report
    config = train_config.resolve(REPO / 'config' / 'train' / 'timnet.yaml',
                                  overrides=['split.protocol=all_speakers', f'data.root={data_dir}',
                                             'data.datasets=[emovo]'])
    report = heldout_report(config, REPO / 'weights' / 'timnet')
    emovo = report['datasets']['emovo']
    assert emovo['unseen_speakers'] and len(emovo['speakers']) == 1 and emovo['n'] == 98
    shipped = json.loads((REPO / 'weights' / 'timnet' / 'model.json').read_text())['model_id']
    assert 0 <= emovo['uar'] <= 1 and report['model'] == shipped


@pytest.mark.parametrize('validate_on, expected', [('all', [4, 5, 6]), ('unseen_speakers', [5, 6])])
def test_the_epoch_can_be_chosen_on_unseen_speakers_only(tmp_path, validate_on, expected):
    from types import SimpleNamespace

    from training.train import Distributed, FoldTrainer
    speakers = ['tess/OAF', 'tess/YAF', 'ravdess/01', 'ravdess/02', 'tess/OAF', 'ravdess/03', 'ravdess/04']
    clip_set = SimpleNamespace(clips=[SimpleNamespace(speaker_key=s, dataset=s.split('/')[0], emotion='neutral')
                                      for s in speakers])
    config = train_config.resolve(overrides=[f'training.validate_on={validate_on}'])
    architecture = {'name': 'timnet', 'n_classes': 3, 'n_mfcc': 39, 'frames': 121, 'n_tab': 1}
    trainer = FoldTrainer(config, architecture, clip_set, ([0, 1, 2, 3], [4, 5, 6], []), None, 'cpu',
                          Distributed(), tmp_path)
    assert trainer.selection_idx == expected


def test_distributed_ranks_take_one_decision_on_validation_and_stopping(tmp_path):
    """Validation that differs per rank (as BatchNorm statistics do) must not split the ranks' decisions."""
    args = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
            str(REPO / 'test' / 'ddp_agreement.py'), str(tmp_path)]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS='1'), start_new_session=True)
    try:
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    assert process.returncode == 0, output[-4000:]
    ranks = [json.loads((tmp_path / f'rank{rank}.json').read_text()) for rank in (0, 1)]
    assert [r['rank'] for r in ranks] == [0, 1]
    first, second = ranks
    # Rank 0's scores decide: best epoch 4, stop two epochs later, on both ranks alike.
    assert first['epochs'] == second['epochs'] == 6 and first['best'] == second['best'] == 4
    assert first['lr'] == second['lr']
    assert first['train_loss'] == second['train_loss'] == [1.5] * 6


def test_ship_copies_a_run_with_its_speakers_and_the_recipes_benchmark_figures(data_dir, small_corpus, tmp_path,
                                                                             monkeypatch):
    import ser_models
    from training import benchmark
    from training import ship as shipping
    from training.ship import ship
    from training.train import run
    overrides = [*tiny_overrides(data_dir, small_corpus, 1), 'features.normalize=speaker']
    run(train_config.resolve(overrides=overrides), tmp_path / 'run')
    target = ship(tmp_path / 'run' / 'fold0' / 'artifact', 'timnet', 'v9', 'timnet', out_root=tmp_path / 'weights')
    meta = json.loads((target / 'model.json').read_text())
    metrics = json.loads((target / 'metrics.json').read_text())
    stored = json.loads((benchmark.RESULTS / 'timnet.json').read_text())['summary']
    assert meta['model_id'] == metrics['model_id'] == 'timnet-ser-v9'
    figures = meta['provenance']['benchmark']
    assert figures == metrics['benchmark'] and figures['mean_of_corpora'] == stored['mean']
    assert {d: v['uar_mean'] for d, v in figures['uar'].items()} == {d: stored[d]['uar_mean']
                                                                      for d in benchmark.CORPORA}
    assert metrics['train_speakers'] == meta['provenance']['data']['train_speakers'] and metrics['train_speakers']
    assert len(metrics['history']) == 1 and (target / 'LICENSE-NOTE.md').is_file()
    assert ser_models.load(target).model_id == 'timnet-ser-v9'
    # Shipped again from the shipped copy (as a fused model is), the run's history comes along.
    again = ship(target, 'timnet', 'v10', 'timnet', out_root=tmp_path / 'again')
    assert json.loads((again / 'metrics.json').read_text())['history'] == metrics['history']
    # So it does from a kept run (benchmark keep: the artifact with the run's history beside its files).
    kept = tmp_path / 'kept' / 'final'
    shutil.copytree(tmp_path / 'run' / 'fold0' / 'artifact', kept)
    shutil.copy2(tmp_path / 'run' / 'fold0' / 'metrics.json', kept / 'metrics.json')
    from_kept = ship(kept, 'timnet', 'v11', 'timnet', out_root=tmp_path / 'from_kept')
    assert json.loads((from_kept / 'metrics.json').read_text())['history'] == metrics['history']
    # A ship that fails half way leaves the model shipped before as it was, and nothing half written.
    before = {path.name: path.read_bytes() for path in target.iterdir()}

    def unreadable(artifact):
        raise ValueError('unreadable history')
    monkeypatch.setattr(shipping, 'training_history', unreadable)
    with pytest.raises(ValueError, match='unreadable history'):
        ship(kept, 'timnet', 'v12', 'timnet', out_root=tmp_path / 'weights')
    assert {path.name: path.read_bytes() for path in target.iterdir()} == before
    assert sorted(path.name for path in (tmp_path / 'weights').iterdir()) == ['timnet']
    monkeypatch.undo()
    # A stream row ships its source's weights with the stream prior it tested, the statistics unchanged.
    trained = meta['speaker_normalization']
    stream_row = 'timnet_pitch_distilled_lmu_prior05'
    restreamed = json.loads((ship(tmp_path / 'run' / 'fold0' / 'artifact', 'timnet', 'v9', stream_row,
                                  out_root=tmp_path / 'weights') / 'model.json').read_text())
    seconds = benchmark.ROWS[stream_row].settings['stream_prior_seconds']
    frames_per_second = meta['features']['sample_rate'] / meta['features']['hop_length']
    assert restreamed['speaker_normalization'] == {**trained, 'frames': seconds * frames_per_second}
    assert restreamed['provenance']['benchmark']['row'] == stream_row


def test_an_ensemble_row_ships_its_members_each_in_a_folder_and_the_node_serves_their_mean(data_dir, small_corpus,
                                                                                          tmp_path):
    import ser_models
    from training import benchmark
    from training.ship import ship
    from training.train import run
    row = 'ensemble_timnet_partial_rerun_refit_seeds_prior1'
    members = benchmark.ROWS[benchmark.weights_row(row)].settings['members']
    artifacts = []
    for seed in (0, 1):
        overrides = [*tiny_overrides(data_dir, small_corpus, 1), 'features.normalize=speaker', f'training.seed={seed}']
        run(train_config.resolve(overrides=overrides), tmp_path / f'seed{seed}')
        artifacts.append(tmp_path / f'seed{seed}' / 'fold0' / 'artifact')
    with pytest.raises(SystemExit, match='give as many artifacts'):
        ship(artifacts[0], 'timnet', 'v9', row, out_root=tmp_path / 'weights')
    elsewhere = tmp_path / 'elsewhere'     # a member that learned from other clips
    shutil.copytree(artifacts[1], elsewhere)
    meta = json.loads((elsewhere / 'model.json').read_text())
    meta['provenance']['data']['train_clips'] += 1
    (elsewhere / 'model.json').write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match='different speakers or clips'):
        ship([artifacts[0], elsewhere], 'timnet', 'v9', row, out_root=tmp_path / 'weights')
    assert not (tmp_path / 'weights' / 'timnet').exists()
    target = ship(artifacts, 'timnet', 'v9', row, out_root=tmp_path / 'weights')
    meta = json.loads((target / 'model.json').read_text())
    assert [entry['directory'] for entry in meta['members']] == members and 'architecture' not in meta
    assert meta['provenance']['benchmark']['row'] == row
    seconds = benchmark.ROWS[row].settings['stream_prior_seconds']
    frames_per_second = meta['features']['sample_rate'] / meta['features']['hop_length']
    assert meta['speaker_normalization']['frames'] == seconds * frames_per_second
    metrics = json.loads((target / 'metrics.json').read_text())
    assert [m['directory'] for m in metrics['members']] == members and metrics['train_speakers']
    assert all(len(m['history']) == 1 for m in metrics['members'])
    served = ser_models.load(target)
    alone = [ser_models.load(target / member) for member in members]
    assert served.model_id == 'timnet-ser-v9' and [m.model_id for m in served.members] == [
        f'timnet-ser-v9:{member}' for member in members]
    windows = np.random.default_rng(0).normal(0, 0.1, (2, served.window_samples)).astype(np.float32)
    np.testing.assert_allclose(served.predict_windows(windows),
                               np.mean([m.predict_windows(windows) for m in alone], axis=0), atol=1e-6)
    assert not np.allclose(alone[0].predict_windows(windows), alone[1].predict_windows(windows), atol=1e-4)
    # Shipped again from its own member folders as a row that serves lone calls otherwise: each member's
    # history comes along, and the ensemble's model.json carries the lone window weight.
    lone = f'{row}_lone05'
    again = ship([target / member for member in members], 'timnet', 'v10', lone, out_root=tmp_path / 'again')
    assert [m['history'] for m in json.loads((again / 'metrics.json').read_text())['members']] == [
        m['history'] for m in metrics['members']]
    weight = benchmark.ROWS[lone].settings['lone_window_weight']
    assert json.loads((again / 'model.json').read_text())['lone_window_weight'] == weight
    assert ser_models.load(again).lone_window_weight == weight != served.lone_window_weight


def test_a_shipped_cktim_declares_the_fastest_spectral_mix_within_the_bound(data_dir, small_corpus, tmp_path,
                                                                            library):
    import ser_models
    from training.ship import ship
    from training.train import run
    overrides = [*tiny_overrides(data_dir, small_corpus, 1), 'model.name=cktim', 'model.n_tab=1']
    run(train_config.resolve(overrides=overrides), tmp_path / 'run')
    target = ship(tmp_path / 'run' / 'fold0' / 'artifact', 'cktim', 'v9', 'timnet', out_root=tmp_path / 'weights',
                  data=data_dir)
    meta = json.loads((target / 'model.json').read_text())
    measured = meta['provenance']['spectral_mix_gaps']
    with open(data_dir / 'manifest.csv', newline='') as stream:
        speakers = {(row['dataset'], row['speaker']) for row in csv.DictReader(stream)}
    assert measured['windows'] == len(speakers)
    gaps = measured['max_abs_probability']
    assert set(gaps) == set(ser_models.SPECTRAL_MIX) and gaps['onnx'] < 1e-4
    faster = ser_models.SPECTRAL_MIX[:ser_models.SPECTRAL_MIX.index(meta['spectral_mix'])]
    assert gaps[meta['spectral_mix']] <= ser_models.SPECTRAL_MIX_ATOL
    assert all(gaps[mix] > ser_models.SPECTRAL_MIX_ATOL for mix in faster)
    assert ser_models.load(target).spectral_mix == meta['spectral_mix']


def test_fewer_speakers_may_give_whole_speakers_to_validation_leaving_the_other_corpora_s_carve_alone():
    from training.datasets import Clip
    from training.splits import carve_validation
    clips = [Clip(f'{corpus}-{speaker}-{emotion}-{take}.flac', corpus, speaker, emotion)
             for corpus, speakers in (('emovo', 'abc'), ('ravdess', 'defghijk'))
             for speaker in speakers for emotion in ('neutral', 'angry', 'sad') for take in range(4)]

    def held(validation, corpus):
        return {c.speaker for c in validation if c.dataset == corpus}
    keep, default = carve_validation(clips, 0.25, 0)
    assert held(default, 'emovo') == set('abc') and len(held(default, 'ravdess')) == 2   # clips of every one
    keep, lowered = carve_validation(clips, 0.25, 0, min_speakers=3)
    assert len(held(lowered, 'emovo')) == 1
    assert not held(lowered, 'emovo') & {c.speaker for c in keep if c.dataset == 'emovo'}
    assert [c for c in lowered if c.dataset == 'ravdess'] == [c for c in default if c.dataset == 'ravdess']


def test_a_refit_trains_on_the_validation_carve_and_keeps_the_test_speakers_out():
    """split.validation_into_training: each fold's validation clips join its training side, the test side
    as before; the config refuses it unless the last epoch is kept."""
    from training.config import resolve
    from training.datasets import Clip
    from training.splits import make_splits
    clips = [Clip(f'{corpus}-{speaker}-{emotion}-{take}.flac', corpus, speaker, emotion)
             for corpus, speakers in (('emovo', 'abcd'), ('ravdess', 'efghijklmnop'))
             for speaker in speakers for emotion in ('neutral', 'angry', 'sad') for take in range(4)]
    carved = make_splits(clips, 'speaker_kfold', 4, 0.25, 0, 3)
    refit = make_splits(clips, 'speaker_kfold', 4, 0.25, 0, 3, validation_into_training=True)
    for before, after in zip(carved, refit, strict=True):
        assert before.validation and not after.validation
        assert sorted(c.path for c in after.train) == sorted(c.path for c in before.train + before.validation)
        assert after.test == before.test
    with pytest.raises(ValueError, match='last_epoch'):
        resolve(overrides=['split.validation_into_training=true'])
    assert resolve(overrides=['split.validation_into_training=true', 'training.select=last_epoch'])


def test_the_steps_scheduler_replays_a_plateau_schedule_s_drops():
    """scheduler steps: the learning rate falls by plateau_factor at the start of each epoch in lr_drops."""
    import torch

    from training.train import make_scheduler
    optimizer = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=0.004)
    scheduler = make_scheduler(optimizer, {'scheduler': 'steps', 'lr_drops': [3, 5], 'plateau_factor': 0.25}, 'min')
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.004, 0.004, 0.001, 0.001, 0.00025, 0.00025])
