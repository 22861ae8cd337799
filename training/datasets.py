"""Emotional speech corpora: file-name parsers, folder scanning and manifest CSVs.

Every clip is mapped onto one canonical label set and keeps its speaker, qualified by corpus
(e.g. 'emovo:f1'), so speaker-independent splits can never mix two corpora's 'speaker 01'.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CANONICAL_LABELS = ('neutral', 'calm', 'happy', 'sad', 'angry', 'fearful', 'surprised', 'disgust')
AUDIO_SUFFIXES = ('.wav', '.flac')


@dataclass(frozen=True)
class Clip:
    path: Path
    dataset: str
    speaker: str        # as the corpus names it
    emotion: str        # canonical label

    @property
    def speaker_key(self) -> str:
        return f'{self.dataset}:{self.speaker}'


class UnknownLabelError(ValueError):
    """A file name parsed, but its emotion has no canonical label (e.g. EmoDB boredom)."""


def _lookup(table: dict, code: str, name: str) -> str:
    if code not in table:
        raise UnknownLabelError(f'{name}: emotion code {code!r} has no canonical label')
    return table[code]


EMOVO = {'dis': 'disgust', 'gio': 'happy', 'pau': 'fearful', 'rab': 'angry', 'sor': 'surprised', 'tri': 'sad',
         'neu': 'neutral'}
RAVDESS = {'01': 'neutral', '02': 'calm', '03': 'happy', '04': 'sad', '05': 'angry', '06': 'fearful',
           '07': 'disgust', '08': 'surprised'}
TESS = {'angry': 'angry', 'disgust': 'disgust', 'fear': 'fearful', 'happy': 'happy', 'neutral': 'neutral',
        'ps': 'surprised', 'sad': 'sad'}
CREMAD = {'ANG': 'angry', 'DIS': 'disgust', 'FEA': 'fearful', 'HAP': 'happy', 'NEU': 'neutral', 'SAD': 'sad'}
SAVEE = {'a': 'angry', 'd': 'disgust', 'f': 'fearful', 'h': 'happy', 'n': 'neutral', 'sa': 'sad', 'su': 'surprised'}
EMODB = {'W': 'angry', 'E': 'disgust', 'A': 'fearful', 'F': 'happy', 'N': 'neutral', 'T': 'sad'}  # L: boredom
NEMO = {'anger': 'angry', 'fear': 'fearful', 'happiness': 'happy', 'neutral': 'neutral', 'sadness': 'sad',
        'surprised': 'surprised'}

PATTERNS = {
    'emovo': re.compile(r'^(?P<emotion>[a-z]{3})-(?P<speaker>[fm]\d)-[a-z]\d+$'),
    'ravdess': re.compile(r'^\d\d-\d\d-(?P<emotion>\d\d)-\d\d-\d\d-\d\d-(?P<speaker>\d\d)$'),
    'tess': re.compile(r'^(?P<speaker>[A-Z]{2,3})_(?P<word>[a-z]+)_(?P<emotion>[a-z]+)$'),
    'cremad': re.compile(r'^(?P<speaker>\d{4})_[A-Z]{3}_(?P<emotion>[A-Z]{3})_[A-Z]{1,2}$'),
    'savee': re.compile(r'^(?P<speaker>[A-Z]{2})_(?P<emotion>[a-z]{1,2})\d\d$'),
    'emodb': re.compile(r'^(?P<speaker>\d\d)[a-z]\d\d(?P<emotion>[A-Z])[a-z]$'),
    'nemo': re.compile(r'^(?P<speaker>[A-Z]{2}\d)_(?P<emotion>[a-z]+)_\d+$'),
}
TABLES = {'emovo': EMOVO, 'ravdess': RAVDESS, 'tess': TESS, 'cremad': CREMAD, 'savee': SAVEE, 'emodb': EMODB,
          'nemo': NEMO}


def parse_name(dataset: str, path) -> tuple[str, str]:
    """(speaker, canonical emotion) from a corpus's original file name; ValueError if it does not fit."""
    stem = Path(path).stem
    match = PATTERNS[dataset].match(stem)
    if not match:
        raise ValueError(f'{path}: not a {dataset} file name')
    speaker = match['speaker']
    if dataset == 'tess' and speaker == 'OA':
        speaker = 'OAF'  # OA_bite_neutral: a typo in the original corpus
    return speaker, _lookup(TABLES[dataset], match['emotion'], str(path))


def detect_dataset(path: Path) -> str | None:
    """The corpus a file belongs to, from a folder name on its path or, failing that, its name pattern."""
    folders = {part.lower().replace('-', '').replace('_', '') for part in path.parts[:-1]}
    for dataset in TABLES:
        if dataset in folders:
            return dataset
    matching = [d for d, pattern in PATTERNS.items() if pattern.match(path.stem)]
    return matching[0] if len(matching) == 1 else None


def scan_folder(root, datasets: Iterable[str] | None = None) -> tuple[list[Clip], list[tuple[Path, str]]]:
    """Clips of every recognised audio file under root, plus (path, reason) for the files skipped."""
    root = Path(root)
    wanted = set(datasets) if datasets else None
    clips, skipped = [], []
    for path in sorted(p for p in root.rglob('*') if p.suffix.lower() in AUDIO_SUFFIXES):
        dataset = detect_dataset(path.relative_to(root))
        if dataset is None:
            skipped.append((path, 'no known corpus naming'))
            continue
        if wanted and dataset not in wanted:
            continue
        try:
            speaker, emotion = parse_name(dataset, path)
        except ValueError as error:
            skipped.append((path, str(error)))
            continue
        clips.append(Clip(path, dataset, speaker, emotion))
    return clips, skipped


def read_manifest(manifest, root=None, datasets: Iterable[str] | None = None) -> list[Clip]:
    """Clips from a CSV with columns path,dataset,speaker,emotion (paths relative to root or the CSV)."""
    manifest = Path(manifest)
    root = Path(root) if root else manifest.parent
    wanted = set(datasets) if datasets else None
    clips = []
    with open(manifest, newline='') as stream:
        reader = csv.DictReader(stream)
        missing = {'path', 'dataset', 'speaker', 'emotion'} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f'{manifest}: missing columns {sorted(missing)}')
        for line, row in enumerate(reader, start=2):
            if wanted and row['dataset'] not in wanted:
                continue
            if row['emotion'] not in CANONICAL_LABELS:
                raise ValueError(f'{manifest}:{line}: emotion {row["emotion"]!r} is not a canonical label')
            clips.append(Clip(root / row['path'], row['dataset'], row['speaker'], row['emotion']))
    return clips


def load_clips(root, manifest=None, datasets: Iterable[str] | None = None) -> list[Clip]:
    """Clips from root/manifest.csv (or the given manifest) when present, else by scanning root."""
    manifest = Path(manifest) if manifest else Path(root) / 'manifest.csv'
    if manifest.is_file():
        return read_manifest(manifest, root, datasets)
    return scan_folder(root, datasets)[0]


def labels_present(clips: Iterable[Clip]) -> list[str]:
    """The canonical labels that occur, in canonical order."""
    present = {clip.emotion for clip in clips}
    return [label for label in CANONICAL_LABELS if label in present]
