"""Soak tests: feed ser_node a long stream of real speech, and account for every window.

    python bench/soak.py [--minutes 60] [--model timnet] [--json bench/soak.json]
    python bench/soak.py --realtime --minutes 30 --streams 8 [--json bench/soak_realtime.json]

Fast (default): the bundled bag's audio is looped into /audio/audio in 64 ms messages, in blocks of
4 s; the next block goes out once the node has published every window the audio so far must
produce. Reports the node's RSS growth after warm-up, windows expected against windows received
(none may be unaccounted for), and drift of the per-window inference time and of the block turnaround.

--realtime: the same speech in real time, 64 ms chunks, to --streams audio topics of one node (the
node's audio_topics), for --minutes of wall clock. Reports, per minute and overall, windows expected
and received, the node's RSS, and the lag of each window behind the chunk that completed it.
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
        bench.stop(process)
    return result


def realtime_soak(minutes: float, streams: int, model: str) -> dict:
    """Real speech at real time into `streams` topics of one node for `minutes` of wall clock."""
    namespace = f'soak_rt_{os.getpid()}'
    topics = '[' + ', '.join(f's{i}/audio' for i in range(streams)) + ']'
    process = bench.start_node(namespace, {'weights': str(bench.weights_dir(model)), 'audio_topics': topics,
                                           'qos_reliability': 'reliable', 'qos_depth': 1000})
    probe = bench.ScaleProbe(namespace, streams=streams)
    audio = bench.speech_pcm(60.0)
    chunk_seconds = CHUNK_BYTES // 2 / 16000
    n_chunks = int(minutes * 60 / chunk_seconds)
    sent_at = np.zeros(n_chunks)
    per_minute = []
    try:
        assert probe.wait_until(probe.all_subscribed, 120), 'node did not subscribe to every stream'
        probe.spin_for(2.0)
        started = time.perf_counter()
        for index in range(n_chunks):
            probe.spin_for(max(0.0, started + index * chunk_seconds - time.perf_counter()))
            offset = index * CHUNK_BYTES % (len(audio) - CHUNK_BYTES)
            message = probe.AudioData(data=audio[offset:offset + CHUNK_BYTES])
            for publisher in probe.publishers:
                publisher.publish(message)
            sent_at[index] = time.perf_counter()
            if (index + 1) % int(60 / chunk_seconds) == 0:
                per_minute.append({'minute': len(per_minute) + 1, 'rss_mb': round(rss_mb(process.pid), 1),
                                   'windows_received': sum(len(r) for r in probe.received)})
        probe.spin_for(3.0)
    finally:
        received = [list(r) for r in probe.received]
        probe.close()
        bench.stop(process, timeout=30)
    samples = n_chunks * CHUNK_BYTES // 2
    windows = 1 + (samples - 48000) // 8000
    completing = [-(-(48000 + 8000 * j) * 2 // CHUNK_BYTES) - 1 for j in range(windows)]
    lags = np.array([[arrival - sent_at[completing[j]] for j, arrival in enumerate(r[:windows])] for r in received
                     if len(r) >= windows]) * 1e3
    minute_of_window = np.array([(completing[j] + 1) * chunk_seconds // 60 for j in range(windows)]).astype(int)
    for entry in per_minute:
        in_minute = lags[:, minute_of_window == entry['minute'] - 1] if lags.size else np.zeros(0)
        entry['windows_expected'] = streams * (1 + (entry['minute'] * 60 * 16000 - 48000) // 8000)
        if in_minute.size:
            entry['lag_ms_p50'] = round(float(np.percentile(in_minute, 50)), 1)
            entry['lag_ms_p95'] = round(float(np.percentile(in_minute, 95)), 1)
    warm = [m['rss_mb'] for m in per_minute[len(per_minute) // 3:]] or [m['rss_mb'] for m in per_minute]
    tenth = max(1, windows // 10)
    got = int(sum(min(len(r), windows) for r in received))
    return {
        'model': model, 'streams': streams, 'wall_minutes': minutes,
        'windows_expected': int(streams * windows), 'windows_received': got,
        'windows_unaccounted': int(streams * windows - got),
        'lag_ms_p50_first_tenth': float(np.percentile(lags[:, :tenth], 50)) if lags.size else None,
        'lag_ms_p50_last_tenth': float(np.percentile(lags[:, -tenth:], 50)) if lags.size else None,
        'lag_ms_p95_first_tenth': float(np.percentile(lags[:, :tenth], 95)) if lags.size else None,
        'lag_ms_p95_last_tenth': float(np.percentile(lags[:, -tenth:], 95)) if lags.size else None,
        'rss_mb_after_first_third': warm[0], 'rss_mb_end': warm[-1],
        'rss_growth_percent': (warm[-1] - warm[0]) / warm[0] * 100,
        'per_minute': per_minute,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=float, default=60.0, help='minutes of audio to push through')
    parser.add_argument('--model', default='timnet')
    parser.add_argument('--realtime', action='store_true', help='real time, several streams, wall-clock minutes')
    parser.add_argument('--streams', type=int, default=8, help='audio topics (with --realtime)')
    parser.add_argument('--json', help='default: bench/soak.json, or bench/soak_realtime.json with --realtime')
    args = parser.parse_args(argv)
    if args.realtime:
        result = realtime_soak(args.minutes, args.streams, args.model)
    else:
        result = soak(args.minutes, args.model)
    default = 'soak_realtime.json' if args.realtime else 'soak.json'
    Path(args.json or REPO / 'bench' / default).write_text(json.dumps(result, indent=2) + '\n')
    for key, value in result.items():
        if key == 'per_minute':
            for entry in value:
                print('  ' + ', '.join(f'{k} {v}' for k, v in entry.items()))
            continue
        print(f'{key:>42}: {value:.3f}' if isinstance(value, float) else f'{key:>42}: {value}')
    return 0 if result['windows_unaccounted'] == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
