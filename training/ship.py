"""Copy a trained artifact into weights/<name> as a shipped model, with its metrics and licence note.

    python -m training.ship --artifact runs/final_timnet/all/artifact --name timnet \
        --benchmark-row timnet_speakernorm [--version v2] [--data ../shared/data]

An ensemble row's recipe ships one artifact per member row, in the row's order, each in a folder named
after its row, under a model.json that names them (ser_models.load serves their mean).

The copy gets the model id <name>-ser-<version>; model.json keeps the run's provenance (which
speakers trained, which validated) and gains the benchmark figures of its recipe: the per-corpus
UAR on unseen speakers from docs/benchmark/<row>.json, the only accuracy it states (a stream row's
weights are its source row's final run, and the stream prior it tested goes into model.json). metrics.json
holds the same speakers and figures beside the run's per-epoch history (whose validation scores
chose the epoch and are no test). LICENSE-NOTE.md says which corpora's non-commercial terms carry over.
A CkTIM's model.json also declares the fastest spectral mix whose probabilities stay within
ser_models.SPECTRAL_MIX_ATOL of the torch model on a window of real speech from each speaker in --data;
the node runs that one unless told otherwise.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from ser_models.artifact import WEIGHTS_FILE, ensemble_model_json, read_model_json, window_samples, write_model_json
from ser_models.export import export_from_weights
from ser_models.pipeline import EmotionPipeline
from ser_models.predictor import Predictor, fastest_faithful_spectral_mix, fit_to_length, has_ckconvs, spectral_mix_gaps
from ser_ros.model_paths import MODELS

from .data import load_audio
from .datasets import load_clips

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'
LICENCE_NOTE = """# Licence of these weights

These weights were learned from EMOVO (free for research use, Fondazione Ugo Bordoni),
RAVDESS (CC BY-NC-SA 4.0), TESS (CC BY-NC-ND 4.0) and nEMO (CC BY-NC-SA 4.0). The
non-commercial terms of those corpora carry over: use the weights for research and
non-commercial purposes only, and cite the corpora (see ../shared/data/README.md) when you
report results obtained with them.
"""
FUNCTIONALS_NOTE = """
This model also computes eGeMAPS functionals with openSMILE (the `opensmile` package), which
audEERING licenses for research and other non-commercial purposes only (its audEERING Research
License Agreement); a commercial use needs a licence from audEERING.
"""


def benchmark_figures(row: str) -> dict:
    """The recipe's unseen-speaker scores from the benchmark: per corpus UAR mean, sd and folds."""
    from .benchmark import CORPORA, ONLINE
    result = json.loads((REPO / 'docs' / 'benchmark' / f'{row}.json').read_text())
    summary = result['summary']

    def per_corpus(s: dict) -> dict:
        return {d: {k: s[d][k] for k in ('uar_mean', 'uar_std', 'folds', 'n')} for d in CORPORA if d in s}
    figures = {'row': row, 'command': result['command'], 'finished': result['finished'],
               'protocol': 'speaker folds over every corpus (training.benchmark); the test speakers chose nothing',
               'uar': per_corpus(summary), 'mean_of_corpora': summary['mean']}
    if 'online' in summary:   # speaker-normalised: also as the node computes the statistics
        figures['node_stream'] = {ONLINE[v]: {'uar': per_corpus(s), 'mean_of_corpora': s['mean']}
                                  for v, s in summary['online'].items()}
    return figures


def speaker_windows(data: Path, meta: dict) -> np.ndarray:
    """The centre window of each speaker's first clip, for every speaker of every corpus in data."""
    first = {}
    for clip in load_clips(data):
        first.setdefault(clip.speaker_key, clip)
    if not first:
        raise FileNotFoundError(f'{data}: no clips to measure the spectral mix on')
    return np.stack([fit_to_length(load_audio(clip.path, meta['sample_rate']), window_samples(meta))
                     for clip in first.values()])


def fitted_functionals(meta: dict, settings: dict, target: Path, data: Path) -> tuple[dict, dict]:
    """A fused row's classifier on window functionals, fitted on every clip in data with one of the
    network's labels, written into target; its model.json entry and provenance."""
    from ser_models.artifact import stream_prior_seconds
    from ser_models.windowing import HOP_SECONDS

    from .benchmark import early_statistics_fit, virtual_window_functionals, window_functionals
    from .classical import export_functionals, fit_on_windows, fit_options
    clips = [c for c in load_clips(data) if c.emotion in meta['labels']]
    one_pass = settings.get('one_pass', '')
    window, hop = window_samples(meta), int(round(HOP_SECONDS * meta['sample_rate']))
    vectors = window_functionals(settings['functionals'], clips, window, hop, one_pass)
    speakers = [c.speaker_key for c in clips]
    options = fit_options(settings)
    model, pooled = fit_on_windows(settings['classifier'], vectors, speakers,
                                   [meta['labels'].index(c.emotion) for c in clips], **options,
                                   virtual=virtual_window_functionals(settings, clips, window, hop),
                                   early=early_statistics_fit(settings, meta))
    prior = pooled.summary(stream_prior_seconds(meta) / meta['window_seconds'])
    entry = export_functionals(model, target, settings['functionals'], meta['labels'], prior,
                               settings.get('weight', 0.5), bool(one_pass), settings.get('fusion', 'mean'))
    return entry, {'classifier': settings['classifier'], **options,
                   **{key: settings[key] for key in ('svm_virtual_speeds', 'svm_early_share', 'svm_early_clips')
                      if key in settings},
                   'speakers': sorted(set(speakers)), 'clips': len(clips),
                   'windows': int(sum(len(v) for v in vectors))}


def training_history(artifact: Path) -> list[dict]:
    """The per-epoch history of the run that trained `artifact`: beside a training run's artifact, in a
    kept run's folder (benchmark keep: the history itself), or in a shipped model's own metrics.json when
    a shipped network is shipped again (fused, say; a shipped ensemble's member: its entry there)."""
    for path in (artifact / 'metrics.json', artifact.parent / 'metrics.json'):
        if path.is_file():
            stored = json.loads(path.read_text())
            if isinstance(stored, list):
                return stored
            member = [m for m in stored.get('members', []) if m['directory'] == artifact.name]
            return (member[0] if member else stored)['history']
    return []


def member_rows(benchmark_row: str) -> list[str]:
    """The network rows whose models an ensemble row averages, in order; [] for a row of one network."""
    from .benchmark import ROWS, weights_row
    source = ROWS[weights_row(benchmark_row)]
    return list(source.settings['members']) if source.kind == 'ensemble' else []


def ship(artifacts: Path | list[Path], name: str, version: str, benchmark_row: str, out_root: Path = REPO / 'weights',
         data: Path = SHARED_DATA) -> Path:
    """Ship the artifact of a row's recipe (an ensemble row's: one artifact per member row, in its order)."""
    import ser_models
    from ser_models.ensemble import AveragedPredictor

    from .benchmark import ROWS, as_served
    artifacts = [Path(artifacts)] if isinstance(artifacts, (str, Path)) else [Path(a) for a in artifacts]
    members = member_rows(benchmark_row)
    if len(artifacts) != max(1, len(members)):
        raise SystemExit(f'{benchmark_row} ships {" and ".join(members) or "one network"}: give as many artifacts, '
                         f'in that order (got {len(artifacts)})')
    metas = [read_model_json(artifact) for artifact in artifacts]
    settings = ROWS[benchmark_row].settings
    try:   # before anything is written: a row served as the node cannot serve it does not ship
        if members:
            if len({json.dumps(meta.get('provenance', {}).get('data'), sort_keys=True) for meta in metas}) > 1:
                raise ValueError('its members trained on different speakers or clips')
            if settings.get('prior_correction'):
                raise ValueError('a label prior for an ensemble is not supported')
            networks = [ser_models.load(artifact) for artifact in artifacts]
            for network in networks:   # as they will be served: each with the row's stream prior
                network.meta = as_served(network.meta, settings)
            AveragedPredictor(networks)
        EmotionPipeline.check_model(Predictor(as_served(metas[0], settings)))
    except ValueError as error:
        raise SystemExit(f'{benchmark_row} cannot ship: {error}') from None
    figures = benchmark_figures(benchmark_row)
    shipped = out_root / name
    target = out_root / f'.{name}.shipping'   # filled apart, so a failed ship leaves the shipped model as it was
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        write_shipped_model(artifacts, metas, f'{name}-ser-{version}', benchmark_row, figures, target, data)
        ser_models.load(target)  # the copy must load
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    replaced = out_root / f'.{name}.replaced'
    shutil.rmtree(replaced, ignore_errors=True)
    if shipped.exists():
        shipped.rename(replaced)
    target.rename(shipped)
    shutil.rmtree(replaced, ignore_errors=True)
    return shipped


def write_network(artifact: Path, meta: dict, model_id: str, settings: dict, target: Path, data: Path) -> dict:
    """Writes the network of `artifact` (model.json meta) into the empty folder target, served as a row with
    these settings serves it; returns its model.json."""
    from .benchmark import as_served
    shutil.copyfile(artifact / meta['weights']['file'], target / WEIGHTS_FILE)
    # The ONNX graph is exported again from the weights with the current exporter.
    meta = export_from_weights(meta, target)
    provenance = {key: value for key, value in meta.get('provenance', {}).items()
                  if key not in ('benchmark', 'functionals')}   # a shipped model's, shipped again
    meta = {**as_served(meta, settings), 'model_id': model_id, 'provenance': provenance}
    meta.pop('functionals', None)
    write_model_json(target, meta)
    if has_ckconvs(meta['architecture']):
        windows = speaker_windows(data, meta)
        gaps = spectral_mix_gaps(target, windows)
        meta['spectral_mix'] = fastest_faithful_spectral_mix(gaps)
        meta['provenance']['spectral_mix_gaps'] = {'windows': len(windows), 'max_abs_probability': gaps}
        write_model_json(target, meta)
        print(f"{model_id}: spectral mix {meta['spectral_mix']} (max |dp| against torch over {len(windows)} "
              f"speakers' windows: {', '.join(f'{mix} {gap:.1e}' for mix, gap in gaps.items())})")
    return meta


def write_shipped_model(artifacts: list[Path], metas: list[dict], model_id: str, benchmark_row: str, figures: dict,
                        target: Path, data: Path) -> None:
    """Writes the shipped model of `artifacts` (their model.json metas; several: an ensemble's members, one
    folder each, named after their rows) into the empty folder target."""
    from .benchmark import ROWS, benchmark_clips, with_training_label_prior
    settings = ROWS[benchmark_row].settings
    members = member_rows(benchmark_row)
    if not members:
        meta = write_network(artifacts[0], metas[0], model_id, settings, target, data)
        networks = [meta]
    else:
        networks = []
        for artifact, meta, member in zip(artifacts, metas, members, strict=True):
            (target / member).mkdir()
            networks.append(write_network(artifact, meta, f'{model_id}:{member}', settings, target / member, data))
        meta = ensemble_model_json(target, members, model_id)
    if settings.get('prior_correction'):    # the shares of every clip, a final run's (a network's: ship checks)
        meta = with_training_label_prior(benchmark_row, meta, benchmark_clips(data))
    meta['provenance']['benchmark'] = figures
    if 'functionals' in settings:    # a fused row: its classical half, fitted on all of data
        meta['functionals'], meta['provenance']['functionals'] = fitted_functionals(meta, settings, target, data)
    write_model_json(target, meta)
    speakers = meta['provenance'].get('data') or {}
    metrics = {'model_id': model_id, 'benchmark': figures,
               'train_speakers': speakers.get('train_speakers'),
               'validation_speakers': speakers.get('validation_speakers')}
    histories = [{'selected_epoch': network['provenance'].get('selected_epoch'), 'history': training_history(artifact)}
                 for network, artifact in zip(networks, artifacts, strict=True)]
    if members:
        metrics['members'] = [{'directory': member, 'model_id': network['model_id'], **history}
                              for member, network, history in zip(members, networks, histories, strict=True)]
    else:
        metrics.update(histories[0])
    (target / 'metrics.json').write_text(json.dumps(metrics, indent=1) + '\n')
    (target / 'LICENSE-NOTE.md').write_text(LICENCE_NOTE + (FUNCTIONALS_NOTE if 'functionals' in meta else ''))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--artifact', required=True, type=Path, nargs='+',
                        help="the run's artifact; an ensemble row's: one per member row, in the row's order")
    parser.add_argument('--name', required=True, choices=MODELS)
    parser.add_argument('--benchmark-row', required=True, help='the training.benchmark row of this recipe')
    parser.add_argument('--version', default='v2')
    parser.add_argument('--data', type=Path, default=SHARED_DATA,
                        help="corpus root whose speakers' speech measures a CkTIM's spectral mix")
    args = parser.parse_args(argv)
    target = ship(args.artifact, args.name, args.version, args.benchmark_row, data=args.data)
    print(f'shipped {target}: {json.loads((target / "model.json").read_text())["model_id"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
