"""Run the experiment grid behind docs/results.md and render its tables from the run summaries.

    python -m training.experiments run [--only NAME ...] [--jobs 2] [--epochs 25]
    python -m training.experiments report > docs/results-tables.md

Every experiment is one `python -m training.train` command (printed, and stored in
runs/experiments/<name>/command.txt), so any number in the report can be reproduced alone.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / 'runs' / 'experiments'

# EMOVO is small (about 290 training clips a fold): batch 16 gives enough optimiser steps per epoch.
EMOVO = ['data.datasets=[emovo]', 'split.folds=4', 'training.batch_size=16', 'training.early_stop_patience=10']
COMMON = ['training.threads=1', 'training.plateau_patience=4', 'training.early_stop_patience=8']
DEFAULT_LR = 'training.lr=0.005'   # unless the experiment sets its own

# name -> (group, description, overrides); epochs are added at run time
EXPERIMENTS = {
    **{f'emovo_timnet{n}': ('EMOVO, speaker 4-fold: TIM-Net vs CkTIM', f'TIM-Net, {n} TAB{"s" * (n > 1)}',
                            EMOVO + ['model.name=timnet', f'model.n_tab={n}']) for n in (1, 3, 6, 8)},
    **{f'emovo_cktim{n}': ('EMOVO, speaker 4-fold: TIM-Net vs CkTIM', f'CkTIM, {n} TAB{"s" * (n > 1)}',
                           EMOVO + ['model.name=cktim', f'model.n_tab={n}']) for n in (1, 3, 6, 8)},
    # The CkTIM ablations use one TAB per direction: the cheapest CkTIM, compared with emovo_cktim1.
    **{f'emovo_cktim1_omega{w}': ('EMOVO, speaker 4-fold: omega_0 (CkTIM, 1 TAB; 25 is emovo_cktim1)',
                                  f'omega_0 = {w}', EMOVO + ['model.name=cktim', 'model.n_tab=1', f'model.omega_0={w}'])
       for w in (20, 30)},
    'emovo_cktim1_kan': ('EMOVO, speaker 4-fold: kernel generator (CkTIM, 1 TAB; conv is emovo_cktim1)',
                         'convKan generator', EMOVO + ['model.name=cktim', 'model.n_tab=1', 'model.generator=convKan']),
    'emovo_timnet8_noaug': ('EMOVO, speaker 4-fold: augmentation', 'TIM-Net 8, no augmentation',
                            EMOVO + ['model.name=timnet', '--preset', 'no_augment']),
    'emovo_cktim1_noaug': ('EMOVO, speaker 4-fold: augmentation', 'CkTIM 1, no augmentation',
                           EMOVO + ['model.name=cktim', 'model.n_tab=1', '--preset', 'no_augment']),
    'emovo_timnet8_origaug': ('EMOVO, speaker 4-fold: augmentation', "TIM-Net 8, original project's set (5x)",
                              EMOVO + ['model.name=timnet', '--preset', 'original_augment']),
    # The paper trains 500 epochs at lr 1e-3, batch 64; 25 epochs of batch 16 at 5e-3 fit this machine.
    'emovo_paper_timnet8': ('EMOVO, TIM-Net paper protocol (random 10-fold, last epoch)',
                            'TIM-Net, 8 TABs (25 epochs, batch 16, lr 5e-3)',
                            ['--preset', 'paper_protocol', 'data.datasets=[emovo]', 'training.epochs=25',
                             'training.batch_size=16', 'training.lr=0.005']),
    # The larger sets: one speaker-disjoint half for training, the other half for testing (fold 0 of 2).
    'ravtess_lmu': ('RAVDESS + TESS, speakers split in halves (fold 0 of 2)', 'LMU',
                    ['data.datasets=[ravdess,tess]', 'split.folds=2', 'split.fold=0', 'model.name=lmu',
                     'training.lr=0.003', 'training.epochs=20']),
    'all_timnet8': ('EMOVO + RAVDESS + TESS, speakers split in halves (fold 0 of 2)', 'TIM-Net, 8 TABs',
                    ['split.folds=2', 'split.fold=0', 'model.name=timnet', 'training.epochs=20']),
    'all_timnet8_unseenval': ('EMOVO + RAVDESS + TESS, speakers split in halves (fold 0 of 2)',
                              'TIM-Net, 8 TABs, epoch chosen on unseen validation speakers only',
                              ['split.folds=2', 'split.fold=0', 'model.name=timnet', 'training.epochs=20',
                               'training.validate_on=unseen_speakers']),
    'all_lmu': ('EMOVO + RAVDESS + TESS, speakers split in halves (fold 0 of 2)', 'LMU',
                ['split.folds=2', 'split.fold=0', 'model.name=lmu', 'training.lr=0.003', 'training.epochs=20']),
    'all_cktim8': ('EMOVO + RAVDESS + TESS, speakers split in halves (fold 0 of 2)', 'CkTIM, 8 TABs',
                   ['split.folds=2', 'split.fold=0', 'model.name=cktim', 'training.epochs=20']),
}


def command(name: str, epochs: int) -> list[str]:
    _, _, overrides = EXPERIMENTS[name]
    args = [sys.executable, '-m', 'training.train', '--out', str((RUNS / name).relative_to(REPO))]
    own_lr = any(item.startswith('training.lr=') for item in overrides)
    items = COMMON + ([] if own_lr else [DEFAULT_LR]) + [f'training.epochs={epochs}'] + overrides
    index = 0
    while index < len(items):
        if items[index] == '--preset':
            args += ['--preset', items[index + 1]]
            index += 2
            continue
        args += ['--set', items[index]]
        index += 1
    return args


def run_one(name: str, epochs: int) -> tuple[str, int, float]:
    args = command(name, epochs)
    out = RUNS / name
    out.mkdir(parents=True, exist_ok=True)
    printable = ' '.join(shlex.quote(a) for a in ['python'] + args[1:])
    (out / 'command.txt').write_text(printable + '\n')
    started = time.time()
    with open(out / 'log.txt', 'w') as log:
        code = subprocess.run(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    print(f'[experiments] {name}: exit {code} after {time.time() - started:.0f} s', flush=True)
    return name, code, time.time() - started


def report() -> str:
    lines = []
    groups: dict[str, list[str]] = {}
    for name, (group, _, _) in EXPERIMENTS.items():
        groups.setdefault(group, []).append(name)
    for group, names in groups.items():
        lines += [f'### {group}', '', '| model | folds | UAR | WAR | macro F1 | per corpus UAR | experiment |',
                  '|---|---|---|---|---|---|---|']
        for name in names:
            summary_path = RUNS / name / 'summary.json'
            description = EXPERIMENTS[name][1]
            if not summary_path.is_file():
                lines.append(f'| {description} | – | not run | | | | `{name}` |')
                continue
            s = json.loads(summary_path.read_text())
            corpora = ', '.join(f"{d} {v['uar_mean']:.3f}" for d, v in s.get('per_dataset', {}).items())
            lines.append(f"| {description} | {len(s['folds'])} | {s['test_uar_mean']:.3f} ± {s['test_uar_std']:.3f} "
                         f"| {s['test_war_mean']:.3f} ± {s['test_war_std']:.3f} | {s['test_f1_macro_mean']:.3f} "
                         f"| {corpora} | `{name}` |")
        lines.append('')
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('action', choices=['run', 'report', 'commands'])
    parser.add_argument('--only', nargs='*', help='experiment names (default: all)')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--epochs', type=int, default=40)
    args = parser.parse_args(argv)
    names = args.only or list(EXPERIMENTS)
    if args.action == 'report':
        print(report())
    elif args.action == 'commands':
        for name in names:
            print(' '.join(shlex.quote(a) for a in ['python'] + command(name, args.epochs)[1:]))
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda n: run_one(n, args.epochs), names))
        return 1 if any(code for _, code, _ in results) else 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
