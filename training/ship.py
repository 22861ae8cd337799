"""Copy a trained artifact into weights/<name> as a shipped model, with its metrics and licence note.

    python -m training.ship --artifact runs/final_cktim/all/artifact --name cktim [--version v1]

The copy gets the model id <name>-ser-<version>; model.json keeps the run's provenance. The run's
per-epoch metrics are copied as metrics.json, and LICENSE-NOTE.md says which corpora's
non-commercial terms carry over.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file

from ser_models import build
from ser_models.artifact import ONNX_FILE, WEIGHTS_FILE, read_model_json, sha256_of, write_model_json
from ser_models.export import export_onnx, share_weights_with_safetensors

REPO = Path(__file__).resolve().parents[1]
LICENCE_NOTE = """# Licence of these weights

These weights were learned from EMOVO (free for research use, Fondazione Ugo Bordoni),
RAVDESS (CC BY-NC-SA 4.0) and TESS (CC BY-NC-ND 4.0). The non-commercial terms of those
corpora carry over: use the weights for research and non-commercial purposes only, and cite
the corpora (see ../shared/data/README.md) when you report results obtained with them.
"""


def ship(artifact: Path, name: str, version: str, out_root: Path = REPO / 'weights') -> Path:
    meta = read_model_json(artifact)
    target = out_root / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copyfile(artifact / meta['weights']['file'], target / WEIGHTS_FILE)
    # The ONNX graph is exported again from the weights with the current exporter.
    model = build(meta['architecture'])
    model.load_state_dict(load_file(str(target / WEIGHTS_FILE)))
    export_onnx(model, target / ONNX_FILE, meta['architecture']['n_mfcc'], meta['architecture']['frames'])
    share_weights_with_safetensors(target / ONNX_FILE, target / WEIGHTS_FILE)
    meta['weights'] = {'file': WEIGHTS_FILE, 'sha256': sha256_of(target / WEIGHTS_FILE)}
    meta['onnx'] = {'file': ONNX_FILE, 'sha256': sha256_of(target / ONNX_FILE)}
    meta['model_id'] = f'{name}-ser-{version}'
    write_model_json(target, meta)
    history = artifact.parent / 'metrics.json'
    if history.is_file():
        shutil.copyfile(history, target / 'metrics.json')
    (target / 'LICENSE-NOTE.md').write_text(LICENCE_NOTE)
    read_model_json(target)  # the copy must load
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--artifact', required=True, type=Path)
    parser.add_argument('--name', required=True, choices=['cktim', 'lmu', 'timnet'])
    parser.add_argument('--version', default='v1')
    args = parser.parse_args(argv)
    target = ship(args.artifact, args.name, args.version)
    print(f'shipped {target}: {json.loads((target / "model.json").read_text())["model_id"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
