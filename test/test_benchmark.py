"""The speaker-independent benchmark: folds, scoring over a corpus's own classes, summaries, report."""
import json
import shutil

import numpy as np
import pytest

from training import benchmark
from training.classical import extract, make_classifier, standardise_per_speaker


def test_every_speaker_is_tested_exactly_once_and_never_validates_its_own_fold(data_dir):
    clips = benchmark.benchmark_clips(data_dir)
    assert {c.dataset for c in clips} == set(benchmark.CORPORA)
    splits = benchmark.benchmark_splits(clips)
    tested = [c.speaker_key for s in splits for c in s.test]
    assert sorted(set(tested)) == sorted({c.speaker_key for c in clips})
    owners = {}
    for number, split in enumerate(splits):
        test = {c.speaker_key for c in split.test}
        assert not test & {c.speaker_key for c in split.train + split.validation}
        for speaker in test:
            assert owners.setdefault(speaker, number) == number
        # EMOVO and nEMO: leave one speaker out; RAVDESS: five actors a fold.
        per_corpus = {d: sum(k.startswith(d + ':') for k in test) for d in benchmark.CORPORA}
        assert per_corpus['emovo'] == per_corpus['nemo'] == 1 and per_corpus['ravdess'] == 5
        # RAVDESS validation is whole speakers carved from the training side.
        validation = {c.speaker_key for c in split.validation if c.dataset == 'ravdess'}
        assert validation and not validation & {c.speaker_key for c in split.train}
    assert sum(any(c.dataset == 'tess' for c in s.test) for s in splits) == 2
    # A row trained with split.min_validation_speakers=3 is scored on the folds it trained on: the same
    # test speakers, and one whole EMOVO and nEMO speaker of each fold's training side validating.
    for split, row_split in zip(splits, benchmark.benchmark_splits(clips, 'timnet_v6_speaker_validation_speeds'),
                                strict=True):
        assert {c.path for c in row_split.test} == {c.path for c in split.test}
        for corpus in ('emovo', 'nemo'):
            validating = {c.speaker_key for c in row_split.validation if c.dataset == corpus}
            assert len(validating) == 1 and not validating & {c.speaker_key for c in row_split.train}
    # Its validation figures come from other clips, so the report compares them with no other row's.
    assert not benchmark.default_validation('timnet_v6_speaker_validation_speeds')
    assert benchmark.default_validation('timnet_partial_rerun_speeds')
    report = benchmark.validation_report()
    assert benchmark.ROWS['lmu_teacher_speaker_validation'].description not in report
    assert benchmark.ROWS['timnet_partial_rerun'].description in report


def test_argmax_runs_over_the_corpus_classes_only():
    labels = ['neutral', 'happy', 'disgust']
    scores = np.array([[0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    assert benchmark.restricted_argmax(scores, labels, {'neutral', 'happy'}).tolist() == [1, 0]
    assert benchmark.restricted_argmax(scores, labels, set(labels)).tolist() == [2, 0]


def test_summary_is_mean_and_sd_over_the_folds_that_test_a_corpus():
    def fold(uar, with_tess):
        corpora = {'emovo': {'n': 10, 'uar': uar, 'war': uar, 'f1_macro': uar, 'confusion': [[1, 0], [0, 1]]}}
        if with_tess:
            corpora['tess'] = {'n': 4, 'uar': 1.0, 'war': 1.0, 'f1_macro': 1.0, 'confusion': [[2, 0], [0, 2]]}
        return {'corpora': corpora}
    summary = benchmark.summarize([fold(0.4, True), fold(0.6, False)], ['a', 'b'])
    assert summary['emovo']['uar_mean'] == pytest.approx(0.5) and summary['emovo']['uar_std'] == pytest.approx(0.1)
    assert summary['tess']['folds'] == 1 and summary['emovo']['confusion'] == [[2, 0], [0, 2]]
    assert summary['mean'] == pytest.approx(0.75) and 'ravdess' not in summary
    # Validation figures are summarised apart from the test figures, never mixed into them.
    folds = [{**fold(test, True), 'validation': fold(validation, False)['corpora']}
             for test, validation in ((0.4, 0.9), (0.6, 0.7))]
    summary = benchmark.summarize(folds, ['a', 'b'])
    assert summary['emovo']['uar_mean'] == pytest.approx(0.5) and summary['validation']['mean'] == pytest.approx(0.8)


def test_validation_agreement_ranks_rows_against_their_test_figures():
    def summary(test, validation):
        corpora = lambda uars: {c: {'uar_mean': u} for c, u in zip(benchmark.CORPORA, uars, strict=True)}  # noqa: E731
        return {**corpora(test), 'mean': float(np.mean(test)),
                'validation': {**corpora(validation), 'mean': float(np.mean(validation))}}
    # EMOVO's validation runs against its test figures; RAVDESS's follows them exactly.
    rows = [summary([0.3, 0.5, 0.7, 0.4], [0.9, 0.55, 0.98, 0.8]),
            summary([0.4, 0.6, 0.8, 0.5], [0.8, 0.65, 1.0, 0.9]),
            summary([0.5, 0.7, 0.9, 0.6], [0.7, 0.75, 0.99, 0.95])]
    agreement = benchmark.validation_agreement(rows)
    assert agreement['emovo']['corpus_pearson'] == pytest.approx(-1.0)
    assert agreement['ravdess']['corpus_pearson'] == pytest.approx(1.0)
    assert agreement['ravdess']['others_spearman'] == pytest.approx(1.0)
    assert agreement['nemo']['corpus_spearman'] == pytest.approx(1.0)
    assert 'corpus_pearson' not in agreement['mean'] and -1.0 <= agreement['mean']['mean_pearson'] <= 1.0


def test_rows_that_differ_only_in_their_training_seed_are_draws_of_one_recipe():
    v6 = benchmark.recipe('timnet_pitch_distilled_lmu_partial')
    assert benchmark.recipe('timnet_partial_rerun') == v6
    assert benchmark.recipe('timnet_partial_seed1') == v6
    assert benchmark.recipe('timnet_partial_no_gain') != v6
    assert (benchmark.recipe('timnet_partial_speed_keeps_f0_seed1')
            == benchmark.recipe('timnet_partial_speed_keeps_f0') != v6)


def test_classical_features_and_speaker_standardisation(data_dir):
    paths = [data_dir / 'emovo/f1/rab-f1-b1.flac', data_dir / 'ravdess/Actor_01/03-01-05-01-01-01-01.flac',
             data_dir / 'emovo/f1/gio-f1-b1.flac']
    features = extract('mfcc_stats', paths)
    assert features.shape == (3, 156) and np.all(np.isfinite(features))
    np.testing.assert_array_equal(extract('mfcc_stats', paths, jobs=2), features)   # shares keep clip order
    rng = np.random.default_rng(0)
    values = rng.normal(5, 3, size=(6, 4))
    standardised = standardise_per_speaker(values, ['a', 'a', 'a', 'b', 'b', 'b'])
    np.testing.assert_allclose(standardised[:3].mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(standardised[3:].std(axis=0), 1, atol=1e-4)
    model = make_classifier('svm').fit(rng.normal(size=(20, 4)), np.arange(20) % 3)
    assert model.decision_function(rng.normal(size=(2, 4))).shape == (2, 3)


def section(path, begin, end):
    return path.read_text().split(begin, 1)[1].split(end, 1)[0].strip()


def test_out_of_speaker_probabilities_never_hear_the_clips_speaker(tmp_path, monkeypatch):
    from training import classical
    rng = np.random.default_rng(0)
    speakers = np.repeat([f's{i}' for i in range(6)], 20)
    targets = np.tile(np.arange(3), 40)
    features = rng.normal(size=(120, 5)) + targets[:, None] * 1.5 + np.repeat(rng.normal(size=(6, 5)) * 3, 20, axis=0)
    groups = [['s0', 's3'], ['s1', 's4'], ['s2', 's5']]
    probabilities = classical.out_of_speaker_probabilities(features, targets, speakers, groups, 4)
    assert probabilities.shape == (120, 4) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.all(probabilities[:, 3] == 0)            # a class no clip has gets nothing
    assert np.mean(probabilities.argmax(axis=1) == targets) > 0.8
    # Relabelling s0's clips leaves s0's probabilities as they were: its group's model never saw them.
    shuffled = targets.copy()
    shuffled[speakers == 's0'] = rng.permutation(shuffled[speakers == 's0'])
    again = classical.out_of_speaker_probabilities(features, shuffled, speakers, groups, 4)
    assert np.allclose(again[speakers == 's0'], probabilities[speakers == 's0'])
    assert not np.allclose(again[speakers == 's1'], probabilities[speakers == 's1'])

    # The feature cache extracts each clip once, and only the clips it lacks.
    extracted = []
    monkeypatch.setattr(classical, 'extract', lambda kind, paths, jobs: extracted.append(list(paths)) or
                        np.array([[len(str(p))] for p in paths], np.float32))
    first = classical.cached_features('mfcc_stats', [tmp_path / 'a.flac', tmp_path / 'bb.flac'], tmp_path / 'cache')
    second = classical.cached_features('mfcc_stats', [tmp_path / 'bb.flac', tmp_path / 'ccc.flac'], tmp_path / 'cache')
    assert [len(batch) for batch in extracted] == [2, 1] and second[0] == first[1]


def test_the_documents_show_the_tables_the_stored_results_give():
    """docs/results.md and README.md carry exactly what `python -m training.benchmark report` renders."""
    assert section(benchmark.REPO / 'docs' / 'results.md', benchmark.BEGIN, benchmark.END) == \
        benchmark.results_section()
    assert section(benchmark.REPO / 'README.md', benchmark.HEADLINE_BEGIN, benchmark.HEADLINE_END) == \
        benchmark.headline()
    for path in benchmark.RESULTS.glob('*.json'):
        result = json.loads(path.read_text())
        assert result['row'] in benchmark.ROWS and len(result['folds']) == benchmark.FOLDS


def test_every_shipped_model_is_shown_as_emotion_utterance_publishes_it():
    """Each model in weights/ has a stored per-utterance view of its test speakers, and the results show it."""
    table = benchmark.utterance_report()
    for name, meta, row in benchmark.shipped_models():
        assert row, f'{name} is not on the benchmark'
        assert f"`{name}`, {meta['model_id']}" in table
        assert f'utterances --only {row}`' in table


def test_the_shipped_recipe_runs_for_the_epochs_its_folds_chose(tmp_path, monkeypatch):
    name = 'timnet_speakernorm_long'
    fold_sets = [a for a in benchmark.network_command(name, 0) if '=' in a]
    assert 'training.select=last_epoch' not in fold_sets and 'split.fold=0' in fold_sets
    monkeypatch.setattr(benchmark, 'RUNS', tmp_path)
    with pytest.raises(SystemExit, match='train its 4 folds first'):
        benchmark.network_command(name, None)
    for fold, epoch in enumerate([31, 36, 40, 36]):
        (tmp_path / name / f'fold{fold}').mkdir(parents=True)
        (tmp_path / name / f'fold{fold}' / 'summary.json').write_text(
            json.dumps({'folds': [{'fold': f'fold{fold}', 'selected_epoch': epoch}]}))
    sets = [a for a in benchmark.network_command(name, None) if '=' in a]
    assert 'split.protocol=all_speakers' in sets and 'features.normalize=speaker' in sets
    # Later --set wins: the fold median replaces the row's cap, and nothing stops it early.
    assert [a for a in sets if a.startswith('training.epochs=')][-1] == 'training.epochs=36'
    assert sets[-1] == 'training.select=last_epoch'


def test_without_run_folders_the_shipped_recipe_takes_the_epochs_stored_with_the_result(tmp_path, monkeypatch):
    name = 'lmu_small_speakernorm_speed'
    monkeypatch.setattr(benchmark, 'RUNS', tmp_path / 'runs')
    monkeypatch.setattr(benchmark, 'RESULTS', tmp_path / 'results')
    (tmp_path / 'results').mkdir()
    folds = [{'fold': fold, 'selected_epoch': epoch} for fold, epoch in enumerate([16, 18, 14, 12])]
    (tmp_path / 'results' / f'{name}.json').write_text(json.dumps({'folds': folds}))
    assert benchmark.final_epochs(name) == 15
    folds[2]['selected_epoch'] = None       # a result stored before the epochs were kept
    (tmp_path / 'results' / f'{name}.json').write_text(json.dumps({'folds': folds}))
    with pytest.raises(SystemExit, match='train its 4 folds first'):
        benchmark.final_epochs(name)


def test_a_row_run_again_keeps_its_choice_tables_only_while_its_models_score_as_before(tmp_path, monkeypatch):
    name = 'lmu_small_speakernorm_speed_pitch_ema_40'
    before = json.loads((benchmark.RESULTS / f'{name}.json').read_text())
    monkeypatch.setattr(benchmark, 'RESULTS', tmp_path)
    (tmp_path / f'{name}.json').write_text(json.dumps(before))
    folds, labels = before['folds'], before['summary']['labels']
    assert benchmark.save_result(name, folds, labels)['stream_prior'] == before['stream_prior']
    retrained = json.loads(json.dumps(folds))
    retrained[0]['corpora']['emovo']['uar'] += 0.01
    assert 'stream_prior' not in benchmark.save_result(name, retrained, labels)
    assert 'stream_prior' not in json.loads((tmp_path / f'{name}.json').read_text())


def test_a_fold_stopped_part_way_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(benchmark, 'RUNS', tmp_path)
    monkeypatch.setattr(benchmark, 'network_command', lambda name, fold: ['train', name, str(fold)])
    monkeypatch.setattr(benchmark.subprocess, 'run',
                        lambda args, **kwargs: calls.append(args) or type('Done', (), {'returncode': 0})())
    assert benchmark.train_network_fold('timnet', 0) == 0
    (tmp_path / 'timnet' / 'fold1' / 'fold1').mkdir(parents=True)
    (tmp_path / 'timnet' / 'fold1' / 'fold1' / 'checkpoint.pt').write_bytes(b'')
    assert benchmark.train_network_fold('timnet', 1) == 0
    assert calls == [['train', 'timnet', '0'], ['train', 'timnet', '1', '--resume']]


def test_kept_fold_models_stand_in_for_run_folders_a_fresh_checkout_lacks(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, 'RUNS', tmp_path / 'runs')
    monkeypatch.setattr(benchmark, 'KEPT', tmp_path / 'kept')
    monkeypatch.setattr(benchmark, 'REPO', tmp_path)
    monkeypatch.setattr(benchmark.subprocess, 'run', lambda *args, **kwargs: pytest.fail('nothing to train'))
    with pytest.raises(SystemExit, match='timnet fold 0 is not trained here'):
        benchmark.keep(['timnet'])
    with pytest.raises(SystemExit, match='only network rows'):
        benchmark.keep(['svm_mfcc'])
    for fold in range(benchmark.FOLDS):
        artifact = tmp_path / 'runs' / 'timnet' / f'fold{fold}' / f'fold{fold}' / 'artifact'
        artifact.mkdir(parents=True)
        for file in ('model.json', 'model.onnx', 'model.safetensors'):
            (artifact / file).write_text(f'{file} {fold}')
        (artifact.parent / 'metrics.json').write_text(json.dumps([{'epoch': 1, 'lr': 0.01}, {'epoch': 2, 'lr': 0.005}]))
    assert benchmark.fold_artifact('timnet', 1) == tmp_path / 'runs' / 'timnet' / 'fold1' / 'fold1' / 'artifact'
    assert benchmark.keep(['timnet']) == 0
    kept = tmp_path / 'kept' / 'timnet' / 'fold1'
    assert sorted(f.name for f in kept.iterdir()) == ['metrics.json', 'model.json', 'model.onnx', 'model.safetensors']
    assert (kept / 'model.safetensors').read_text() == 'model.safetensors 1'   # the graph's weights
    shutil.rmtree(tmp_path / 'runs')
    assert benchmark.fold_artifact('timnet', 1) == kept
    (kept / 'model.safetensors').unlink()    # kept as before the weights were: it cannot load, so it trains again
    assert benchmark.fold_artifact('timnet', 1) == tmp_path / 'runs' / 'timnet' / 'fold1' / 'fold1' / 'artifact'
    (kept / 'model.safetensors').write_text('model.safetensors 1')
    assert benchmark.lr_drops('timnet', 1) == [2]    # a refit replays them from the kept history
    assert benchmark.train_network_fold('timnet', 1) == 0


def test_a_kept_final_run_stands_in_for_the_final_folder_a_fresh_checkout_lacks(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, 'RUNS', tmp_path / 'runs')
    monkeypatch.setattr(benchmark, 'FINAL', tmp_path / 'final')
    monkeypatch.setattr(benchmark, 'KEPT', tmp_path / 'kept')
    monkeypatch.setattr(benchmark, 'REPO', tmp_path)
    monkeypatch.setattr(benchmark.subprocess, 'run', lambda *args, **kwargs: pytest.fail('nothing to train'))
    for fold in [*range(benchmark.FOLDS), None]:
        artifact = benchmark.trained_artifact('timnet', fold)
        artifact.mkdir(parents=True)
        for file in ('model.json', 'model.onnx', 'model.safetensors'):
            (artifact / file).write_text(f'{file} {fold}')
        (artifact.parent / 'metrics.json').write_text('[]')
    assert benchmark.keep(['timnet']) == 0
    kept = tmp_path / 'kept' / 'timnet' / 'final'
    assert (kept / 'model.safetensors').read_text() == 'model.safetensors None'
    shutil.rmtree(tmp_path / 'final')
    assert benchmark.fold_artifact('timnet', None) == kept
    assert benchmark.train_network_fold('timnet', None) == 0   # a row it teaches learns from the kept one


def test_a_longer_recipe_continues_the_shorter_runs_checkpoint_only_when_that_run_went_its_full_length(
        tmp_path, monkeypatch):
    torch = pytest.importorskip('torch')
    calls = []
    monkeypatch.setattr(benchmark, 'RUNS', tmp_path)
    monkeypatch.setattr(benchmark, 'network_command', lambda name, fold: ['train', name, str(fold)])
    monkeypatch.setattr(benchmark.subprocess, 'run',
                        lambda args, **kwargs: calls.append(args) or type('Done', (), {'returncode': 0})())
    source = benchmark.ROWS['timnet_speakernorm_80'].settings['continues']
    full = benchmark.epochs_of(source)
    for fold, ran in ((0, full), (1, full - 3)):     # fold 1 stopped early
        checkpoint = tmp_path / source / f'fold{fold}' / f'fold{fold}' / 'checkpoint.pt'
        checkpoint.parent.mkdir(parents=True)
        torch.save({'epoch': ran - 1, 'history': json.dumps([{'epoch': e + 1} for e in range(ran)])}, checkpoint)
    assert benchmark.train_network_fold('timnet_speakernorm_80', 0) == 0
    assert benchmark.train_network_fold('timnet_speakernorm_80', 1) == 0
    assert (tmp_path / 'timnet_speakernorm_80' / 'fold0' / 'fold0' / 'checkpoint.pt').is_file()
    assert not (tmp_path / 'timnet_speakernorm_80' / 'fold1' / 'fold1').exists()
    assert calls == [['train', 'timnet_speakernorm_80', '0', '--resume'], ['train', 'timnet_speakernorm_80', '1']]


def test_a_distilled_row_learns_from_its_teachers_of_the_same_fold_and_trains_missing_final_teachers_first(
        tmp_path, monkeypatch):
    name = 'lmu_distilled_pitch'
    teachers = benchmark.ROWS[name].settings['teachers']
    calls = []
    monkeypatch.setattr(benchmark, 'RUNS', tmp_path / 'runs')
    monkeypatch.setattr(benchmark, 'FINAL', tmp_path / 'final')
    monkeypatch.setattr(benchmark, 'final_epochs', lambda row: 20)
    monkeypatch.setattr(benchmark, 'REPO', tmp_path)

    def train(args, **kwargs):
        calls.append(args)
        out = tmp_path / args[args.index('--out') + 1] / 'all' / 'artifact'
        if 'split.protocol=all_speakers' in args:     # a final run leaves its artifact
            out.mkdir(parents=True)
            (out / 'model.json').write_text('{}')
        return type('Done', (), {'returncode': 0})()
    monkeypatch.setattr(benchmark.subprocess, 'run', train)

    fold_sets = [a for a in benchmark.network_command(name, 2) if '=' in a]
    assert fold_sets[-1] == (f'training.teachers=[runs/{teachers[0]}/fold2/fold2/artifact,'
                             f'runs/{teachers[1]}/fold2/fold2/artifact]')
    with pytest.raises(SystemExit, match=f'teacher {teachers[0]} fold 2 is not trained'):
        benchmark.train_network_fold(name, 2)
    assert benchmark.train_network_fold(name, None) == 0
    trained = [args[args.index('--out') + 1] for args in calls]
    assert trained == [f'final/{teachers[0]}', f'final/{teachers[1]}', f'final/{name}']
    assert f'training.teachers=[final/{teachers[0]}/all/artifact,final/{teachers[1]}/all/artifact]' in calls[-1]


def test_a_stream_row_scores_its_source_rows_fold_models_with_its_own_stream_prior(tmp_path, monkeypatch):
    from types import SimpleNamespace
    source = 'timnet_pitch_distilled_lmu'
    monkeypatch.setitem(benchmark.ROWS, 'probe', benchmark.Row(
        benchmark.NETWORKS, 'probe', 'stream',
        {'weights_of': source, 'stream_prior_seconds': 2.0, 'lone_window_weight': 0.5}))
    monkeypatch.setattr(benchmark, 'RUNS', tmp_path)
    artifact = benchmark.fold_artifact(source, 1)
    artifact.mkdir(parents=True)
    (artifact / 'model.json').write_text(json.dumps({'provenance': {'data': {'test_speakers': ['emovo:f1']}}}))
    (tmp_path / source / 'fold1' / 'summary.json').write_text(json.dumps({'folds': [{'selected_epoch': 17}]}))
    shipped = json.loads((benchmark.REPO / 'weights' / 'timnet' / 'model.json').read_text())
    loaded = []
    split = SimpleNamespace(test=[SimpleNamespace(speaker_key='emovo:f1')])
    predictor = benchmark.fold_predictor(
        'probe', 1, split, load=lambda path: loaded.append(path) or SimpleNamespace(meta=shipped))
    assert loaded == [artifact] and benchmark.fold_selected_epoch('probe', 1) == 17
    frames_per_second = shipped['features']['sample_rate'] / shipped['features']['hop_length']
    assert predictor.meta['speaker_normalization']['frames'] == 2.0 * frames_per_second
    assert predictor.meta['speaker_normalization']['mean'] == shipped['speaker_normalization']['mean']
    assert predictor.meta['lone_window_weight'] == 0.5
    split.test[0].speaker_key = 'emovo:m1'
    with pytest.raises(SystemExit, match='held out other speakers'):
        benchmark.fold_predictor('probe', 1, split, load=lambda path: SimpleNamespace(meta=shipped))


def test_a_fusion_row_fits_its_classifier_on_the_training_clips_only_and_scores_both_sides(monkeypatch):
    from types import SimpleNamespace

    from training import classical
    from training.datasets import Clip
    from training.splits import Split
    emotions = ['neutral', 'happy', 'sad']
    clips = [Clip(f'{speaker}_{emotion}_{take}.flac', 'nemo', speaker, emotion)
             for speaker in ('A', 'B', 'C') for emotion in emotions for take in range(2)]
    split = Split('fold0', train=clips[:6], validation=clips[6:12], test=clips[12:])
    monkeypatch.setitem(benchmark.ROWS, 'probe', benchmark.Row(
        benchmark.FUSIONS, 'probe', 'fusion', {'weights_of': 'timnet_partial_rerun', 'classical': 'svm_mfcc'}))
    monkeypatch.setattr(benchmark, 'classical_features', lambda kind, group: np.arange(len(group))[:, None] * 1.0)
    monkeypatch.setattr(benchmark, 'fold_predictor', lambda name, number, split: SimpleNamespace(labels=emotions))
    fitted = []

    class Recorder:
        classes_ = np.arange(3)

        def fit(self, features, targets):
            fitted.append(features[:, 0].tolist())
            return self
    monkeypatch.setattr(classical, 'make_classifier', lambda kind, probabilities: Recorder())
    # The fused scores name each clip's own label, so every side scores perfectly if it was scored at all.
    monkeypatch.setattr(benchmark, 'fused_probabilities', lambda predictor, model, group, features: np.eye(3)[
        [emotions.index(c.emotion) for c in group]])
    folds = benchmark.score_fusion('probe', clips, [split])
    assert fitted == [list(range(6))]
    assert folds[0]['corpora']['nemo']['n'] == 6 and folds[0]['corpora']['nemo']['uar'] == 1.0
    assert folds[0]['validation']['nemo']['n'] == 6 and folds[0]['validation']['nemo']['uar'] == 1.0
    assert folds[0]['test_speakers'] == ['nemo:C']
    assert benchmark.recipe('fusion_timnet_rerun_egemaps') == benchmark.recipe('fusion_timnet_seed1_egemaps')
    assert benchmark.recipe('fused_timnet_partial_rerun_egemaps_chosen') != benchmark.recipe(
        'fused_timnet_partial_rerun_egemaps') == benchmark.recipe('fused_timnet_partial_seed1_egemaps')


def test_ship_refuses_a_row_served_in_a_way_the_node_refuses(tmp_path):
    """A stream row with test-time speed copies scores offline only, so training.ship stops before it
    writes a model.json the node would refuse."""
    from training.ship import ship
    assert benchmark.ROWS['timnet_partial_rerun_speeds'].settings['test_time_speeds'] != [1.0]
    with pytest.raises(SystemExit, match='test_time_speeds'):
        ship(benchmark.REPO / 'weights' / 'timnet', 'timnet', 'v0', 'timnet_partial_rerun_speeds', out_root=tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_fused_rows_choice_scores_every_prior_and_share_on_the_validation_clips_only(tmp_path, monkeypatch):
    """stream-prior on a fused row: each stream prior reaches both halves, each share weighs them, and
    only the validation clips are heard (the classifier fits on the training clips)."""
    from types import SimpleNamespace

    import ser_models.windowing
    from ser_models.features import SpeakerNormalizer
    from training.datasets import Clip
    from training.splits import Split
    emotions = ['neutral', 'happy', 'sad']
    clips = [Clip(f'{speaker}_{emotion}_{take}.flac', 'nemo', speaker, emotion)
             for speaker in ('A', 'B', 'C') for emotion in emotions for take in range(2)]
    split = Split('fold0', train=clips[:6], validation=clips[6:12], test=clips[12:])
    monkeypatch.setattr(benchmark, 'RESULTS', tmp_path)
    monkeypatch.setattr(benchmark, 'benchmark_splits', lambda clips, name: [split])
    (tmp_path / 'fused_timnet_partial_rerun_egemaps.json').write_text(json.dumps({'summary': {'labels': emotions}}))
    predictor = SimpleNamespace(labels=emotions, sample_rate=16000, window_samples=48000, window_seconds=3.0,
                                meta={}, features=SimpleNamespace(config=SimpleNamespace(normalize='speaker')))
    priors, fitted = [], []
    monkeypatch.setattr(benchmark, 'fold_predictor', lambda name, number, split: predictor)
    monkeypatch.setattr(benchmark, 'with_prior', lambda p, seconds: priors.append(seconds) or p)
    monkeypatch.setattr(benchmark, 'validation_audio', lambda p, split: [np.zeros(8)] * len(split.validation))
    monkeypatch.setattr(benchmark, 'window_functionals',
                        lambda kind, group, window, hop, one_pass='': [np.ones((2, 4))] * len(group))
    truth = [emotions.index(c.emotion) for c in split.validation]

    def classifier(settings, vectors, group, labels, virtual=None, early=None):
        fitted.append(group)
        return (lambda rows: np.tile(np.eye(3)[0], (len(rows), 1))), SpeakerNormalizer(4)
    monkeypatch.setattr(benchmark, 'fold_classifier', classifier)
    # The network is right on every clip, the classifier only on neutral ones: a share above 0.5 hands
    # the other clips to neutral.
    orders = []
    monkeypatch.setattr(ser_models.windowing, 'predict_clips_online',
                        lambda p, audio, speakers, order: orders.append(list(order)) or np.eye(3)[truth])
    benchmark.fusion_choice('fused_timnet_partial_rerun_egemaps', clips, {'nemo': set(emotions)})
    assert priors == list(benchmark.STREAM_PRIORS) * 2 and fitted == [split.train]
    # Each prior heard in random order, then each with every speaker's clips grouped by emotion.
    grouped = [[split.validation[i].emotion for i in order] for order in orders]
    assert grouped[-1] == sorted(grouped[-1]) and sorted(orders[0]) == list(range(len(split.validation)))
    stored = json.loads((tmp_path / 'fused_timnet_partial_rerun_egemaps.json').read_text())
    for choice in (stored['fusion_choice'], stored['fusion_choice_by_emotion']):
        assert set(choice) == {str(s) for s in benchmark.STREAM_PRIORS}
        for weights in choice.values():
            assert weights['0.4']['nemo']['uar_mean'] == 1.0
            assert weights['0.6']['nemo']['uar_mean'] == pytest.approx(1 / 3)
            assert weights['0.6']['nemo']['n'] == len(split.validation)


def test_a_refit_trains_every_fold_and_the_final_run_on_the_carve_for_the_epochs_and_drops_validation_chose(
        tmp_path, monkeypatch):
    from training.datasets import Clip
    from training.splits import Split
    source, name = 'timnet_partial_rerun', 'timnet_partial_rerun_refit'
    for setting, path in (('REPO', tmp_path), ('RUNS', tmp_path), ('FINAL', tmp_path / 'final'),
                          ('KEPT', tmp_path / 'kept')):
        monkeypatch.setattr(benchmark, setting, path)
    # Each fold: (chosen epoch, epochs it ran, the epochs its learning rate fell at).
    runs = [(20, 30, [26]), (22, 32, [28]), (39, 40, [33, 38]), (29, 39, [25, 35])]
    for fold, (chosen, ran, drops) in enumerate(runs):
        folder = tmp_path / source / f'fold{fold}'
        (folder / f'fold{fold}').mkdir(parents=True)
        (folder / 'summary.json').write_text(json.dumps({'folds': [{'selected_epoch': chosen}]}))
        history = [{'epoch': e, 'lr': 0.005 * 0.5 ** sum(e >= d for d in drops)} for e in range(1, ran + 1)]
        (folder / f'fold{fold}' / 'metrics.json').write_text(json.dumps(history))
    # Drops after a fold's chosen epoch never trained its model; two folds of four dropped before theirs.
    assert benchmark.final_lr_drops(source) == [29]
    fold2 = [a for a in benchmark.network_command(name, 2) if '=' in a]
    assert 'split.validation_into_training=true' in fold2 and 'split.fold=2' in fold2
    assert fold2[-4:] == ['training.epochs=39', 'training.select=last_epoch', 'training.scheduler=steps',
                          'training.lr_drops=[33,38]']
    final = [a for a in benchmark.network_command(name, None) if '=' in a]
    assert 'split.protocol=all_speakers' in final and 'split.validation_into_training=true' in final
    assert final[-4:] == ['training.epochs=26', 'training.select=last_epoch', 'training.scheduler=steps',
                          'training.lr_drops=[29]']
    # Its fused row's SVM fits on the validation speakers too, as the shipped one fits on every speaker.
    clips = [Clip(f'{s}.flac', 'nemo', s, 'neutral') for s in 'ABC']
    split = Split('fold0', clips[:1], clips[1:2], clips[2:])
    assert benchmark.classifier_clips('fused_timnet_partial_rerun_refit_egemaps_one_pass_through_end', split) == \
        clips[:2]
    assert benchmark.classifier_clips('fused_timnet_partial_rerun_egemaps_one_pass_through_end', split) == clips[:1]
    # Validation figures of clips a refit trained on choose nothing and rank nothing.
    assert benchmark.default_validation(source) and not benchmark.default_validation(name)


def test_a_prior_corrected_row_serves_its_folds_with_the_label_shares_their_networks_trained_on():
    from types import SimpleNamespace
    name = 'fused_timnet_v6_speaker_validation_egemaps_one_pass_through_end_prior_corrected'
    labels = ['neutral', 'happy', 'disgust']
    # Corpus-balanced draws (the recipe's data.balance): half the draws EMOVO's, half TESS's.
    clips = [SimpleNamespace(dataset='emovo', emotion=e) for e in ('neutral', 'happy', 'disgust', 'disgust')]
    clips += [SimpleNamespace(dataset='tess', emotion=e) for e in ('neutral', 'happy') * 3]
    meta = {'labels': labels, 'provenance': {'data': {'train_clips': len(clips)}}}
    served = benchmark.with_training_label_prior(name, meta, clips)
    assert served['label_prior'] == {'shares': pytest.approx([1 / 8 + 1 / 4, 1 / 8 + 1 / 4, 1 / 4]), 'correction': 1.0}
    assert benchmark.with_training_label_prior(name.replace('prior_corrected', 'prior_corrected05'), meta,
                                               clips)['label_prior']['correction'] == 0.5
    unchanged = name.removesuffix('_prior_corrected')
    assert benchmark.with_training_label_prior(unchanged, meta, clips) is meta
    with pytest.raises(SystemExit, match='trained on 10 clips, not the 9'):
        benchmark.with_training_label_prior(name, meta, clips[:-1])


def test_lone_call_views_extract_each_batch_of_windows_once():
    """Scoring several lone window weights, a fused row's functionals are extracted once per batch."""
    class CountingExtractor:
        calls = 0
        dims = 3

        def windows(self, windows):
            self.calls += 1
            return windows[:, :3] * 2

    counting = CountingExtractor()
    once = benchmark.ExtractedOnce(counting)
    batch = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(once.windows(batch), batch[:, :3] * 2)
    np.testing.assert_array_equal(once.windows(batch.copy()), batch[:, :3] * 2)
    assert counting.calls == 1 and once.dims == 3
    once.windows(batch + 1)
    assert counting.calls == 2


def test_views_stored_by_two_processes_on_one_row_both_stay(tmp_path, monkeypatch):
    """A view is written into the stored result as it is on disk when the view is done, so one process
    scoring utterances and another scoring lone calls of the same row do not erase each other's."""
    monkeypatch.setattr(benchmark, 'RESULTS', tmp_path)
    (tmp_path / 'probe.json').write_text(json.dumps({'summary': {'mean': 0.5}}))
    view = {'mean': 0.4, 'emovo': {'uar_mean': 0.3}}
    benchmark.keep_view('probe', 'utterance_view', 'test 1.5 s', view, 'utterances')
    benchmark.keep_view('probe', 'lone_call_view', 'test weight 1', view, 'lone calls')
    benchmark.keep_view('probe', 'lone_call_view', 'test weight 0.5', {**view, 'mean': 0.45}, 'lone calls')
    benchmark.rewrite_result('probe', {'stream_prior': {'1.0': {'mean': 0.6}}})
    stored = json.loads((tmp_path / 'probe.json').read_text())
    assert stored['summary'] == {'mean': 0.5} and stored['utterance_view'] == {'test 1.5 s': view}
    assert stored['lone_call_view'] == {'test weight 1': view, 'test weight 0.5': {**view, 'mean': 0.45}}
    assert stored['stream_prior'] == {'1.0': {'mean': 0.6}}
