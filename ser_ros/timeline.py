"""Emotion timelines against labelled clip spans: agreement metrics and a PNG."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_OVERLAP_SECONDS = 1.0   # a window belongs to the clip it overlaps most, if by at least this much


@dataclass
class TimedEmotion:
    """One published window, from the offline pipeline or from a live Emotion message."""
    start: float               # seconds from the bag's first sample
    end: float
    voiced: bool
    label: str
    labels: list[str]
    probabilities: list[float]


def load_sidecar(path) -> dict:
    return json.loads(Path(path).read_text())


def window_truth(window: TimedEmotion, clips: list[dict]) -> int | None:
    """Index of the clip the window overlaps most (>= MIN_OVERLAP_SECONDS), else None."""
    overlaps = [max(0.0, min(window.end, c['end']) - max(window.start, c['start'])) for c in clips]
    best = int(np.argmax(overlaps)) if overlaps else -1
    return best if best >= 0 and overlaps[best] >= MIN_OVERLAP_SECONDS else None


def agreement(windows: list[TimedEmotion], sidecar: dict, utterances: list[TimedEmotion] | None = None) -> dict:
    """Window-level and clip-level agreement of the predicted labels with the sidecar's emotions; with
    utterances (emotion/utterance), theirs too, each against the clip its speech overlaps most."""
    clips = sidecar['clips']
    per_clip: dict[int, list[TimedEmotion]] = {}
    hits = total = 0
    for window in windows:
        if not window.voiced:
            continue
        index = window_truth(window, clips)
        if index is None or clips[index]['emotion'] not in window.labels:
            continue
        per_clip.setdefault(index, []).append(window)
        total += 1
        hits += window.label == clips[index]['emotion']
    clip_rows = []
    for index, clip in enumerate(clips):
        group = per_clip.get(index, [])
        predicted = ''
        if group:
            mean = np.mean([w.probabilities for w in group], axis=0)
            predicted = group[0].labels[int(np.argmax(mean))]
        clip_rows.append({'source': clip['source'], 'emotion': clip['emotion'], 'predicted': predicted,
                          'windows': len(group), 'correct': predicted == clip['emotion']})
    scored = [row for row in clip_rows if row['windows']]
    utterance_hits = []
    for utterance in utterances or []:
        overlaps = [min(utterance.end, c['end']) - max(utterance.start, c['start']) for c in clips]
        index = int(np.argmax(overlaps)) if overlaps else -1
        if index >= 0 and overlaps[index] > 0 and clips[index]['emotion'] in utterance.labels:
            utterance_hits.append(utterance.label == clips[index]['emotion'])
    return {
        'windows_published': len(windows), 'windows_voiced': sum(w.voiced for w in windows),
        'windows_scored': total, 'window_accuracy': hits / total if total else 0.0,
        'clips_scored': len(scored),
        'clip_accuracy': sum(r['correct'] for r in scored) / len(scored) if scored else 0.0,
        'clips': clip_rows,
        **({'utterances_published': len(utterances), 'utterances_scored': len(utterance_hits),
            'utterance_accuracy': float(np.mean(utterance_hits)) if utterance_hits else 0.0}
           if utterances is not None else {}),
    }


def plot_timeline(windows: list[TimedEmotion], sidecar: dict, path, title: str) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    labels = next((w.labels for w in windows if w.labels), [])
    colours = {label: plt.get_cmap('tab10')(i) for i, label in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(14, 4.8))
    for clip in sidecar['clips']:
        colour = colours.get(clip['emotion'], (0.6, 0.6, 0.6, 1))
        ax.axvspan(clip['start'], clip['end'], color=colour, alpha=0.15, lw=0)
        ax.text((clip['start'] + clip['end']) / 2, 1.02, clip['emotion'], ha='center', va='bottom', fontsize=8,
                color=colour, transform=ax.get_xaxis_transform())
    voiced = [w for w in windows if w.voiced]
    if voiced:
        times = np.array([(w.start + w.end) / 2 for w in voiced])
        probabilities = np.array([w.probabilities for w in voiced])
        for index, label in enumerate(labels):
            ax.plot(times, probabilities[:, index], color=colours[label], lw=1.6, label=label)
        best = probabilities.max(axis=1)
        ax.scatter(times, best, c=[colours[w.label] for w in voiced], s=14, zorder=3, edgecolors='k',
                   linewidths=0.3)
    ax.set_xlim(0, sidecar.get('duration', max((w.end for w in windows), default=1.0)))
    ax.set_ylim(0, 1)
    ax.set_xlabel('time in the bag (s), at the centre of each 3 s window; shaded: labelled clips')
    ax.set_ylabel('probability')
    ax.set_title(title, pad=18)
    ax.legend(loc='upper left', bbox_to_anchor=(1.005, 1.0), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
