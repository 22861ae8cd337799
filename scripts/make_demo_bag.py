#!/usr/bin/env python3
"""Regenerate test/data/demo_bag (rosbag2, mcap) and its sidecar from clips in ../shared/data.

The bag holds what audio_capture publishes with format:=wave at 16 kHz mono S16LE:
/audio/audio_stamped (AudioDataStamped, 1024 frames = 64 ms per message) and a latched
/audio/audio_info (AudioInfo). Clips of several emotions and corpora are separated by 1 s of
silence; demo_bag.json gives every clip's span (seconds from the first sample), emotion and source.

    python scripts/make_demo_bag.py [--data ../shared/data] [--out test/data/demo_bag]
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ser_ros.bag_audio import AUDIO_INFO, AUDIO_STAMPED, typestore  # noqa: E402

CLIPS = [
    'ravdess/Actor_05/03-01-05-02-01-01-05.flac',   # angry
    'tess/YAF_happy/YAF_chair_happy.flac',          # happy
    'emovo/f2/tri-f2-b2.flac',                      # sad
    'ravdess/Actor_10/03-01-01-01-01-01-10.flac',   # neutral
    'tess/OAF_fear/OAF_wheat_fear.flac',            # fearful
    'emovo/f1/dis-f1-l3.flac',                      # disgust
    'tess/YAF_ps/YAF_mouse_ps.flac',                # surprised
    'emovo/m1/rab-m1-b1.flac',                      # angry
    'ravdess/Actor_08/03-01-03-02-02-01-08.flac',   # happy
    'tess/OAF_sad/OAF_dog_sad.flac',                # sad
    'emovo/m2/neu-m2-l1.flac',                      # neutral
]
RATE = 16000
CHUNK_FRAMES = 1024
LEAD_IN, PAUSE = 0.5, 1.0
START_NS = 1_767_225_600 * 1_000_000_000   # 2026-01-01T00:00:00Z, fixed so the bag is reproducible


def build_audio(data_dir: Path):
    manifest = {row['path']: row for row in csv.DictReader(open(data_dir / 'manifest.csv', newline=''))}
    pieces, spans, position = [np.zeros(int(LEAD_IN * RATE), dtype=np.float32)], [], LEAD_IN
    for relative in CLIPS:
        audio, rate = sf.read(data_dir / relative, dtype='float32')
        assert rate == RATE, f'{relative}: {rate} Hz'
        row = manifest[relative]
        spans.append({'start': round(position, 4), 'end': round(position + len(audio) / RATE, 4),
                      'emotion': row['emotion'], 'dataset': row['dataset'], 'speaker': row['speaker'],
                      'source': relative})
        pieces += [audio, np.zeros(int(PAUSE * RATE), dtype=np.float32)]
        position += len(audio) / RATE + PAUSE
    return np.concatenate(pieces), spans


def write_bag(out: Path, audio: np.ndarray) -> int:
    from rosbags.rosbag2 import StoragePlugin, Writer
    store = typestore()
    types = store.types
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype('<i2')
    if out.exists():
        shutil.rmtree(out)
    count = 0
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        info_conn = writer.add_connection('/audio/audio_info', AUDIO_INFO, typestore=store)
        audio_conn = writer.add_connection('/audio/audio_stamped', AUDIO_STAMPED, typestore=store)
        info = types[AUDIO_INFO](channels=1, sample_rate=RATE, sample_format='S16LE', bitrate=RATE * 16,
                         coding_format='wave')
        writer.write(info_conn, START_NS, store.serialize_cdr(info, AUDIO_INFO))
        for first in range(0, len(pcm), CHUNK_FRAMES):
            chunk = pcm[first:first + CHUNK_FRAMES]
            stamp = START_NS + first * 1_000_000_000 // RATE
            time = types['builtin_interfaces/msg/Time'](sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
            msg = types[AUDIO_STAMPED](
                header=types['std_msgs/msg/Header'](stamp=time, frame_id='microphone'),
                audio=types['audio_common_msgs/msg/AudioData'](data=np.frombuffer(chunk.tobytes(), dtype=np.uint8)))
            # Logged when the chunk's last sample is in, as a live recording would.
            arrival = stamp + len(chunk) * 1_000_000_000 // RATE
            writer.write(audio_conn, arrival, store.serialize_cdr(msg, AUDIO_STAMPED))
            count += 1
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default=str(REPO.parent / 'shared' / 'data'))
    parser.add_argument('--out', default=str(REPO / 'test' / 'data' / 'demo_bag'))
    args = parser.parse_args(argv)
    out = Path(args.out)
    audio, spans = build_audio(Path(args.data))
    messages = write_bag(out, audio)
    sidecar = {'bag': out.name, 'audio_topic': '/audio/audio_stamped', 'info_topic': '/audio/audio_info',
               'sample_rate': RATE, 'sample_format': 'S16LE', 'chunk_frames': CHUNK_FRAMES,
               'start_ns': START_NS, 'duration': round(len(audio) / RATE, 4), 'messages': messages,
               'clips': spans}
    out.with_suffix('.json').write_text(json.dumps(sidecar, indent=2) + '\n')
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f'{out}: {messages} audio messages, {len(audio) / RATE:.1f} s, {size / 1e6:.2f} MB; '
          f'labels in {out.with_suffix(".json")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
