"""Score a shipped model on the validation speakers its training run held out.

    python -m training.heldout --config config/train/timnet.yaml --model weights/timnet [--json OUT]

The all-speakers run that produced the shipped weights carved its validation set from the corpora
deterministically (seed, fraction, corpora from the config): whole speakers where a corpus has at
least four (RAVDESS, EMOVO), a share of clips otherwise (TESS). This rebuilds that split and reports
per corpus which speakers were unseen and how the model does on them, with the node's windowing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import ser_models
from ser_models.windowing import predict_clips, speaker_normalizers

from . import config as config_module
from .data import load_audio
from .datasets import load_clips
from .metrics import classification_metrics
from .splits import make_splits

REPO = Path(__file__).resolve().parents[1]


def heldout_report(config: dict, model_dir) -> dict:
    data = config['data']
    root = Path(data['root']) if Path(data['root']).is_absolute() else (REPO / data['root']).resolve()
    clips = load_clips(root, data.get('manifest'), data.get('datasets'))
    settings = config['split']
    split = make_splits(clips, 'all_speakers', 1, settings['validation_fraction'], settings['seed'],
                        settings['min_validation_speakers'])[0]
    predictor = ser_models.load(model_dir)
    report = {'model': predictor.model_id, 'datasets': {}}
    for dataset in sorted({c.dataset for c in split.validation}):
        group = [c for c in split.validation if c.dataset == dataset]
        speakers = sorted({c.speaker for c in group})
        whole = len({c.speaker for c in clips if c.dataset == dataset}) >= settings['min_validation_speakers']
        truth = [predictor.labels.index(c.emotion) for c in group]
        audio = [load_audio(c.path, predictor.sample_rate) for c in group]
        speakers_of_clips = [c.speaker_key for c in group]
        guess = np.argmax(predict_clips(predictor, audio, predictor.sample_rate, speakers=speakers_of_clips,
                                        normalizers=speaker_normalizers(predictor, audio, speakers_of_clips)), axis=1)
        metrics = classification_metrics(truth, guess, predictor.labels)
        report['datasets'][dataset] = {'unseen_speakers': whole, 'speakers': speakers,
                                       **{k: metrics[k] for k in ('n', 'uar', 'war', 'f1_macro')}}
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True)
    parser.add_argument('--model', required=True)
    parser.add_argument('--json')
    args = parser.parse_args(argv)
    report = heldout_report(config_module.resolve(args.config, overrides=['split.protocol=all_speakers']),
                            args.model)
    for dataset, row in report['datasets'].items():
        kind = 'unseen speakers' if row['unseen_speakers'] else 'unseen clips of training speakers'
        print(f"{report['model']:<15} {dataset:<8} n={row['n']:<4} UAR {row['uar']:.3f}  WAR {row['war']:.3f}  "
              f"F1 {row['f1_macro']:.3f}  ({kind}: {', '.join(row['speakers'])})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
