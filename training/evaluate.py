"""Evaluate any artifact on any folder laid out like ../shared/data.

    python -m training.evaluate --model ARTIFACT_DIR --data ROOT [--manifest CSV] [--json OUT.json]
        [--backend onnxruntime|torch] [--hop 0.5] [--datasets emovo ravdess] [--statistics speaker|stream|lone]

Each clip is cut into the node's windows (window from model.json, hop 0.5 s) and the window
probabilities are averaged. A model on speaker-normalised features gets each speaker's statistics
from all of that speaker's clips in the data (no label used), as a stream converges to its voice;
with --statistics stream, from the node's running stream statistics instead, each speaker's clips
played in a fixed random order (the benchmark's node view); with --statistics lone, every window is a
lone Predictor.predict call (no stream, nothing heard before).
Prints n, UAR, WAR and macro F1 per corpus and overall; the JSON holds the same (as fractions in
0..1) with confusion matrices, under 'overall' and 'datasets'. Clips whose
label the model does not know are counted under 'unknown_label', never scored.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

import ser_models
from ser_models.windowing import predict_clips, predict_clips_alone, predict_clips_online, speaker_normalizers

from .data import load_audio
from .datasets import load_clips
from .metrics import classification_metrics

SUMMARY_KEYS = ('n', 'uar', 'war', 'f1_macro')


def evaluate(model_dir, data_root, manifest=None, backend='onnxruntime', hop_seconds=0.5, datasets=None,
             statistics='speaker') -> dict:
    predictor = ser_models.load(model_dir, backend=backend)
    labels = predictor.labels
    clips = load_clips(data_root, manifest, datasets)
    if not clips:
        raise SystemExit(f'no clips found under {data_root}')
    known, unknown = [], Counter()
    for clip in clips:
        if clip.emotion in labels:
            known.append(clip)
        else:
            unknown[f'{clip.dataset}:{clip.emotion}'] += 1
    by_speaker = defaultdict(list)
    for clip in known:
        by_speaker[clip.speaker_key].append(clip)
    truth, guess, groups = [], [], defaultdict(list)
    for speaker, group in by_speaker.items():   # one speaker at a time: their statistics, bounded memory
        audio = [load_audio(clip.path, predictor.sample_rate) for clip in group]
        if statistics == 'lone':
            probabilities = predict_clips_alone(predictor, audio, hop_seconds)
        elif statistics == 'stream' and predictor.features.config.normalize == 'speaker':
            order = np.random.default_rng(0).permutation(len(audio))
            probabilities = predict_clips_online(predictor, audio, [speaker] * len(group), order, hop_seconds)
        else:
            probabilities = predict_clips(predictor, audio, predictor.sample_rate, hop_seconds,
                                          normalizers=speaker_normalizers(predictor, audio, [speaker] * len(group)),
                                          speakers=[speaker] * len(group))
        for clip, row in zip(group, probabilities, strict=True):
            groups[clip.dataset].append(len(truth))
            truth.append(labels.index(clip.emotion))
            guess.append(int(np.argmax(row)))
    truth, guess = np.array(truth), np.array(guess)
    result = {
        'model': predictor.model_id, 'backend': predictor.backend, 'data': str(data_root), 'statistics': statistics,
        'overall': classification_metrics(truth, guess, labels),
        'datasets': {name: classification_metrics(truth[idx], guess[idx], labels)
                     for name, idx in sorted(groups.items())},
        'unknown_label': {'n': int(sum(unknown.values())), 'by_dataset_and_label': dict(unknown)},
    }
    return result


def print_table(result: dict) -> None:
    print(f"model {result['model']} ({result['backend']}) on {result['data']}")
    print(f"{'set':<12}{'n':>7}{'UAR':>8}{'WAR':>8}{'F1':>8}")
    rows = list(result['datasets'].items()) + [('overall', result['overall'])]
    for name, m in rows:
        print(f"{name:<12}{m['n']:>7}{m['uar']:>8.3f}{m['war']:>8.3f}{m['f1_macro']:>8.3f}")
    if result['unknown_label']['n']:
        print(f"skipped (label unknown to the model): {result['unknown_label']['by_dataset_and_label']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, help='artifact directory (with model.json)')
    parser.add_argument('--data', required=True, help='corpus root, laid out like ../shared/data')
    parser.add_argument('--manifest', help='CSV path,dataset,speaker,emotion (default: DATA/manifest.csv if present)')
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--backend', default='onnxruntime', choices=ser_models.BACKENDS)
    parser.add_argument('--hop', type=float, default=0.5, help='seconds between windows of a clip')
    parser.add_argument('--datasets', nargs='*', help='only these corpora')
    parser.add_argument('--statistics', default='speaker', choices=['speaker', 'stream', 'lone'],
                        help="speaker-normalised models: each speaker's statistics over all their clips, the "
                             "node's running stream statistics, or each window a lone predict call")
    args = parser.parse_args(argv)
    result = evaluate(args.model, args.data, args.manifest, args.backend, args.hop, args.datasets, args.statistics)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
