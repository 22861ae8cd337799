"""Run under torchrun with 2 processes: FoldTrainer.fit with validation scores that differ per rank.

Each rank writes rank<N>.json into the folder named by the first argument: its epochs, learning rates and
chosen epoch. Files, not stdout, because the ranks share one pipe and their lines can interleave.
Used by test_training.
"""
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import config as train_config  # noqa: E402
from training import train  # noqa: E402


def main() -> None:
    dist = train.Distributed()
    dist.start('cpu')
    # Rank 0 improves for four epochs; rank 1 would see no gain after the first and stop early.
    uar = {0: [0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5], 1: [0.9] + [0.1] * 7}[dist.rank]
    epoch = {'now': 0}

    def fake_score(model, clip_set, indices, config, device):
        return {'loss': 1.0, 'uar': uar[epoch['now']], 'war': 0.5, 'f1_macro': 0.5}

    def fake_epoch(number):
        epoch['now'] = number
        return {'loss': 1.0 + dist.rank, 'accuracy': 0.5}

    train.score = fake_score
    config = train_config.resolve(overrides=['training.epochs=8', 'training.early_stop_patience=2',
                                             'training.plateau_patience=0', 'training.plateau_factor=0.5'])
    clip_set = SimpleNamespace(clips=[SimpleNamespace(speaker_key=f'ravdess:{i}', dataset='ravdess', emotion='neutral')
                                      for i in range(4)])
    architecture = {'name': 'timnet', 'n_classes': 3, 'n_mfcc': 39, 'frames': 121, 'n_tab': 1}
    with tempfile.TemporaryDirectory() as directory:
        trainer = train.FoldTrainer(config, architecture, clip_set, ([0, 1], [2, 3], []), None, 'cpu', dist,
                                    Path(directory))
        trainer.train_epoch = fake_epoch
        trainer.fit(resume=False)
    result = {'rank': dist.rank, 'epochs': len(trainer.history), 'best': trainer.best['epoch'],
              'lr': [h['lr'] for h in trainer.history], 'train_loss': [h['train_loss'] for h in trainer.history]}
    (Path(sys.argv[1]) / f'rank{dist.rank}.json').write_text(json.dumps(result))
    dist.stop()


if __name__ == '__main__':
    main()
