"""PNG plots of a run: confusion matrix and learning curves (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion(confusion, labels, path: Path, title: str) -> None:
    matrix = np.asarray(confusion, dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(normalised, cmap='Blues', vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha='right')
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if matrix[i, j]:
                ax.text(j, i, f'{int(matrix[i, j])}', ha='center', va='center',
                        color='white' if normalised[i, j] > 0.5 else 'black', fontsize=8)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label='recall')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history: list[dict], path: Path) -> None:
    if not history:
        return
    epochs = [h['epoch'] for h in history]
    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(11, 4))
    loss_ax.plot(epochs, [h['train_loss'] for h in history], label='train')
    score_ax.plot(epochs, [h['train_accuracy'] for h in history], label='train accuracy')
    if 'val_loss' in history[0]:
        loss_ax.plot(epochs, [h['val_loss'] for h in history], label='validation')
        score_ax.plot(epochs, [h['val_war'] for h in history], label='validation accuracy (WAR)')
        score_ax.plot(epochs, [h['val_uar'] for h in history], label='validation UAR')
    loss_ax.set_xlabel('epoch')
    loss_ax.set_ylabel('loss')
    loss_ax.legend()
    score_ax.set_xlabel('epoch')
    score_ax.set_ylim(0, 1)
    score_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
