"""Soak test: feed ser_node a long stream of real speech as fast as it takes it, and account for it.

    python bench/soak.py [--minutes 60] [--model timnet] [--json bench/soak.json]

The bundled bag's audio is looped into /audio/audio in 64 ms messages, in blocks of 4 s; the next
block goes out once the node has published every window the audio so far must produce. Reports
the node's RSS growth after warm-up, windows expected against windows received (none may be
unaccounted for), and drift of the per-window inference time and of the block turnaround.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'bench'))

import bench  # noqa: E402

BLOCK_SECONDS = 4.0
CHUNK_BYTES = 2048          # 1024 frames, S16LE mono
WARMUP_SECONDS = 600.0     # allocator pools and onnxruntime arenas settle within the first minutes


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def soak(minutes: float, model: str) -> dict:
    namespace = f'soak_{os.getpid()}'
    process = bench.start_node(namespace, {'weights': str(bench.weights_dir(model)), 'qos_reliability': 'reliable',
                                           'qos_depth': 1000, 'queue_size': 1000})
    probe = bench.Probe(namespace)
    audio = bench.speech_pcm(60.0)                                   # one minute, looped
    total_seconds = minutes * 60
    block_bytes = int(BLOCK_SECONDS * 16000) * 2
    sent_samples, offset, blocks = 0, 0, []
    rss = []
    try:
        assert probe.wait_until(lambda: probe.publisher.get_subscription_count() > 0, 60), 'node did not start'
        probe.spin_for(1.0)
        started = time.perf_counter()
        while sent_samples < total_seconds * 16000:
            block = (audio[offset:] + audio)[:block_bytes]
            offset = (offset + block_bytes) % len(audio)
            block_start = time.perf_counter()
            for i in range(0, len(block), CHUNK_BYTES):
                probe.publish(block[i:i + CHUNK_BYTES])
            sent_samples += len(block) // 2
            expected = 1 + (sent_samples - 48000) // 8000 if sent_samples >= 48000 else 0
            if not probe.wait_until(lambda e=expected: len(probe.received) >= e, 60):
                raise RuntimeError(f'after {sent_samples / 16000:.0f} s of audio: {len(probe.received)} of '
                                   f'{expected} windows')
            blocks.append(time.perf_counter() - block_start)
            rss.append((sent_samples / 16000, rss_mb(process.pid)))
        probe.spin_for(2.0)
        wall = time.perf_counter() - started
        expected = 1 + (sent_samples - 48000) // 8000
        inference = np.array([m.inference_time for _, m in probe.received if m.voiced]) * 1e3
        tenth = max(1, len(inference) // 10)
        warm = [value for seconds, value in rss if seconds >= min(WARMUP_SECONDS, total_seconds / 4)]
        turnaround = np.array(blocks) * 1e3
        result = {
            'model': model, 'audio_seconds': sent_samples / 16000, 'wall_seconds': wall,
            'speed_vs_real_time': sent_samples / 16000 / wall,
            'windows_expected': int(expected), 'windows_received': len(probe.received),
            'windows_unaccounted': int(expected - len(probe.received)),
            'rss_mb_after_warmup': warm[0], 'rss_mb_end': warm[-1], 'rss_mb_max_after_warmup': max(warm),
            'rss_growth_percent': (warm[-1] - warm[0]) / warm[0] * 100,
            'inference_ms_first_tenth_median': float(np.median(inference[:tenth])),
            'inference_ms_last_tenth_median': float(np.median(inference[-tenth:])),
            'block_turnaround_ms_first_tenth_median': float(np.median(turnaround[:max(1, len(turnaround) // 10)])),
            'block_turnaround_ms_last_tenth_median': float(np.median(turnaround[-max(1, len(turnaround) // 10):])),
            'rss_mb_every_5_minutes': [round(value, 1) for seconds, value in rss if seconds % 300 < BLOCK_SECONDS],
        }
    finally:
        probe.close()
        process.send_signal(2)
        process.wait(timeout=15)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=float, default=60.0, help='minutes of audio to push through')
    parser.add_argument('--model', default='timnet')
    parser.add_argument('--json', default=str(REPO / 'bench' / 'soak.json'))
    args = parser.parse_args(argv)
    result = soak(args.minutes, args.model)
    Path(args.json).write_text(json.dumps(result, indent=2) + '\n')
    for key, value in result.items():
        print(f'{key:>42}: {value:.3f}' if isinstance(value, float) else f'{key:>42}: {value}')
    return 0 if result['windows_unaccounted'] == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
