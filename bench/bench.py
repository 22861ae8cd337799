"""Benchmark ser_ros: front end, models, the node on real DDS, and a wav2vec2-base peer.

    python bench/bench.py [--quick] [--json bench/results.json] [--sections front,models,functionals,node,scale,peer]

Prints a table and writes JSON. Model latencies are batch-1 for one 3 s window (121 MFCC frames),
median and p95 over repeated calls after warm-up, at 1 and 2 threads, on onnxruntime and torch.
Node figures come from ser_node in its own process on loopback DDS. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ser_ros.model_paths import MODELS  # noqa: E402  (the repository on the path first)

WINDOW = 48000
BATCH = 16


def stats(samples_s) -> dict:
    ms = np.asarray(samples_s) * 1e3
    return {'median_ms': float(np.median(ms)), 'p95_ms': float(np.percentile(ms, 95)),
            'p99_ms': float(np.percentile(ms, 99)), 'n': int(len(ms))}


def time_calls(fn, repeats: int, warmup: int = 10) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return stats(samples)


def weights_dir(model: str) -> Path:
    return REPO / 'weights' / model


def bench_front_end(repeats: int) -> list[dict]:
    """One isolated window, and the node's streaming case: each window 0.5 s after the last; MFCCs
    alone, then with the F0 and voicing channels (features.pitch)."""
    from threadpoolctl import threadpool_limits

    from ser_models.features import FeatureConfig, MfccExtractor, StreamingMfcc
    audio = (np.random.default_rng(0).standard_normal(WINDOW + 8000 * (repeats + 20)) * 0.1).astype(np.float32)
    window = audio[:WINDOW]
    rows = []
    for name, streamed_name, config in (
            ('front end (MFCC, numpy)', 'front end, streaming at 0.5 s hop', FeatureConfig()),
            ('front end + F0 and voicing (numpy)', 'front end + F0 and voicing, streaming at 0.5 s hop',
             FeatureConfig(pitch=True))):
        extract = MfccExtractor(config)
        for threads in (1, 2):
            with threadpool_limits(threads):
                rows.append({'what': name, 'backend': 'numpy', 'threads': threads,
                             **time_calls(lambda extract=extract: extract(window), repeats)})
                streaming = StreamingMfcc(extract)
                ends = iter(range(WINDOW, audio.size + 1, 8000))

                def next_window(streaming=streaming, ends=ends):
                    end = next(ends)
                    streaming(audio[end - WINDOW:end], end)
                rows.append({'what': streamed_name, 'backend': 'numpy',
                             'threads': threads, **time_calls(next_window, repeats)})
    return rows


def spectral_mixes(model: str) -> tuple:
    """The onnxruntime spectral-mix settings worth timing for a model: all three for CkTIM (the one
    its model.json declares is the node's default), only the first for models without CKConvs."""
    import ser_models
    return ser_models.SPECTRAL_MIX if model == 'cktim' else ser_models.SPECTRAL_MIX[:1]


def model_name(model: str, predictor) -> str:
    from ser_models.predictor import declared_spectral_mix
    suffix = ''
    if model == 'cktim' and predictor.backend == 'onnxruntime':
        default = ', the default' if predictor.spectral_mix == declared_spectral_mix(predictor.meta) else ''
        suffix = f', {predictor.spectral_mix} mix{default}'
    return f'{model} ({predictor.model_id}){suffix}'


def network_logits(networks: list, mfcc: np.ndarray) -> list:
    """The networks' logits for model inputs (each member of an ensemble in turn)."""
    return [network._logits(mfcc) for network in networks]


def bench_models(repeats: int) -> list[dict]:
    import ser_models
    rows = []
    window = (np.random.default_rng(1).standard_normal((1, WINDOW)) * 0.1).astype(np.float32)
    for model in MODELS:
        path = weights_dir(model)
        if not (path / 'model.json').is_file():
            rows.append({'what': model, 'skipped': f'no shipped weights at {path}'})
            continue
        variants = [('onnxruntime', mix) for mix in spectral_mixes(model)] + [('torch', None)]
        for backend, mix in variants:
            for threads in (1, 2):
                options = {'spectral_mix': mix} if mix else {}
                predictor = ser_models.load(path, backend=backend, threads=threads, **options)
                mfcc = predictor.model_inputs(window)
                networks = getattr(predictor, 'members', [predictor])   # an ensemble runs each member
                n_params = None
                if backend == 'torch':
                    n_params = sum(p.numel() for network in networks for p in network.model.parameters())
                name = model_name(model, predictor)
                timed = time_calls(lambda n=networks, m=mfcc: network_logits(n, m), repeats)
                rows.append({'what': name, 'backend': backend, 'threads': threads, 'spectral_mix': mix,
                             'parameters': n_params, **timed})
                if predictor.functionals is not None and backend == 'onnxruntime' and threads == 1:
                    rows.append({'what': f'{name}, classical half: eGeMAPS functionals and the SVM', 'backend':
                                 'opensmile + onnxruntime', 'threads': 1,
                                 **time_calls(lambda f=predictor.functionals, w=window[0]:
                                              f.classify(f.extractor(w)[None]), max(10, repeats // 10))})
                if backend == 'onnxruntime' and threads == 1:
                    # What one call costs per window when the node batches several streams.
                    batch = np.repeat(mfcc, BATCH, axis=0)
                    per_call = time_calls(lambda n=networks, m=batch: network_logits(n, m), max(10, repeats // 4))
                    rows.append({'what': f'{name}, per window in a batch of {BATCH}', 'backend': backend,
                                 'threads': threads, 'batch': BATCH, 'spectral_mix': mix,
                                 **{k: v / BATCH if k.endswith('_ms') else v for k, v in per_call.items()}})
    return rows


def model_quality(model: str, spectral_mix: str) -> dict:
    """Beside a model's latency: its unseen-speaker UAR from the benchmark (model.json, as the node
    runs it), and the largest probability gap between onnxruntime and the torch model on real speech.
    The gap is promised (within ser_models.SPECTRAL_MIX_ATOL) for the spectral mix the model declares
    and the more exact ones after it in SPECTRAL_MIX, not for a faster one."""
    import ser_models
    from ser_models.predictor import parity_promised
    from training.benchmark import ONLINE
    path = weights_dir(model)
    onnx, torch_model = ser_models.load(path, spectral_mix=spectral_mix), ser_models.load(path, backend='torch')
    speech = np.frombuffer(speech_pcm(12.0), dtype='<i2').astype(np.float32) / 32768
    windows = np.stack([speech[start:start + WINDOW] for start in range(0, len(speech) - WINDOW + 1, 8000)])
    mfcc = onnx.model_inputs(windows)
    figures = onnx.meta.get('provenance', {}).get('benchmark')
    uar = None
    if figures:
        view = figures.get('node_stream', {}).get(ONLINE['shuffled'], figures)
        uar = {'row': figures['row'], 'mean_of_corpora': view['mean_of_corpora'],
               **{corpus: v['uar_mean'] for corpus, v in view['uar'].items()}}
    gap = np.abs(onnx.predict_features(mfcc) - torch_model.predict_features(mfcc)).max()
    return {'model': model, 'model_id': onnx.model_id, 'what': model_name(model, onnx), 'spectral_mix': spectral_mix,
            'parity_promised': parity_promised(onnx.meta, spectral_mix), 'parity_max_abs_probability': float(gap),
            'parity_windows': int(len(windows)), 'unseen_speaker_uar': uar}


def bench_peer(repeats: int) -> list[dict]:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    torch.manual_seed(0)
    model = Wav2Vec2Model(Wav2Vec2Config()).eval()   # wav2vec2-base shape, random weights
    parameters = sum(p.numel() for p in model.parameters())
    audio = torch.randn(1, WINDOW) * 0.1
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            rows.append({'what': 'wav2vec2-base encoder (peer)', 'backend': 'torch', 'threads': threads,
                         'parameters': parameters, **time_calls(lambda: model(audio), max(5, repeats // 20), 2)})
    return rows


# ---------------------------------------------------------------------------------------------- node
def node_env() -> dict:
    return dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')


def start_node(namespace: str, params: dict, cpu: int | None = None):
    """ser_node in its own process; cpu pins it (and its DDS threads) to that one core."""
    from ser_ros.bag_eval import ser_node_command
    args = ser_node_command() + ['--ros-args', '-r', f'__ns:=/{namespace}']
    for key, value in params.items():
        args += ['-p', f'{key}:={value}']
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    return subprocess.Popen(args, env=node_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=pin)


def process_cpu_seconds(pid: int) -> float:
    import psutil
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def status_mb(pid: int, field: str) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1]) / 1024
    return float('nan')


def peak_rss_mb(pid: int) -> float:
    return status_mb(pid, 'VmHWM')


def rss_mb(pid: int) -> float:
    """Resident now, after the run (peak_rss_mb includes what model loading used and freed)."""
    return status_mb(pid, 'VmRSS')


class Probe:
    """The test side of the graph: publishes audio to one ser_node stream, receives its Emotion."""

    def __init__(self, namespace: str, **options):
        import rclpy
        from audio_common_msgs.msg import AudioData
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        self.rclpy, self.AudioData = rclpy, AudioData
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f'bench_{namespace}', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.connect(namespace, **options)

    def connect(self, namespace: str):
        from ser_msgs.msg import Emotion
        self.received = []
        self.node.create_subscription(Emotion, f'/{namespace}/emotion',
                                      lambda m: self.received.append((time.perf_counter(), m)), self.qos)
        self.publisher = self.node.create_publisher(self.AudioData, f'/{namespace}/audio/audio', self.qos)

    def listen(self, topic: str) -> list:
        """The Emotion messages on another topic, from now on."""
        from ser_msgs.msg import Emotion
        received = []
        self.node.create_subscription(Emotion, topic, received.append, self.qos)
        return received

    def spin_for(self, seconds: float):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.executor.spin_once(timeout_sec=max(0.0, min(0.01, end - time.perf_counter())))

    def wait_until(self, predicate, timeout: float) -> bool:
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.005)
        return predicate()

    def publish(self, pcm: bytes):
        self.publisher.publish(self.AudioData(data=pcm))

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def speech_pcm(seconds: float) -> bytes:
    """Real speech from the bundled bag, looped to the length asked for, as S16LE."""
    from ser_ros.bag_audio import read_audio
    raw = b''.join(m.data for m in read_audio(REPO / 'test' / 'data' / 'demo_bag') if m.kind == 'data')
    need = int(seconds * 16000) * 2
    return (raw * (need // len(raw) + 1))[:need]


FUNCTIONALS_SECONDS = (0.5, 1.0, 3.0, 6.0)


def bench_functionals(repeats: int) -> tuple[list[dict], dict]:
    """openSMILE's eGeMAPS functionals (the fused default's classical half) of real speech of each length
    in FUNCTIONALS_SECONDS, and a least-squares split of the median into a fixed cost a call and a cost
    a second of audio."""
    from ser_models.functionals import FunctionalsExtractor
    extractor = FunctionalsExtractor('egemaps', 16000)
    speech = np.frombuffer(speech_pcm(max(FUNCTIONALS_SECONDS)), np.int16).astype(np.float32) / 32768.0
    rows = [{'what': f'eGeMAPS functionals of {seconds:g} s of speech', 'backend': 'opensmile', 'threads': 1,
             'audio_seconds': seconds, **time_calls(lambda n=int(seconds * 16000): extractor(speech[:n]), repeats)}
            for seconds in FUNCTIONALS_SECONDS]
    per_second, fixed = np.polyfit([r['audio_seconds'] for r in rows], [r['median_ms'] for r in rows], 1)
    return rows, {'fixed_ms_per_call': float(fixed), 'ms_per_audio_second': float(per_second),
                  **sliding_against_windows(extractor)}


def sliding_against_windows(extractor, seconds: float = 30.0) -> dict:
    """The node's 3 s windows every 0.5 s over `seconds` of speech: their functionals from one openSMILE
    pass (FunctionalsExtractor.sliding) against one call a window, the cost a window of each and how far
    apart the two are (|difference| over each functional's sd across the windows, median and p90)."""
    speech = np.frombuffer(speech_pcm(seconds), np.int16).astype(np.float32) / 32768.0
    started = time.perf_counter()
    starts, sliding = extractor.sliding(speech, WINDOW / 16000, 0.5)
    sliding_seconds = time.perf_counter() - started
    cut = np.stack([speech[int(s * 16000):int(s * 16000) + WINDOW] for s in starts])
    started = time.perf_counter()
    apart = extractor.windows(cut)
    windows_seconds = time.perf_counter() - started
    gap = np.abs(sliding - apart) / (apart.std(axis=0) + 1e-9)
    return {'sliding_windows': len(starts), 'sliding_ms_per_window': 1e3 * sliding_seconds / len(starts),
            'windows_ms_per_window': 1e3 * windows_seconds / len(starts),
            'sliding_gap_sd_median': float(np.median(gap)), 'sliding_gap_sd_p90': float(np.percentile(gap, 90)),
            **stream_functionals_cost(extractor, speech)}


def stream_functionals_cost(extractor, speech: np.ndarray, block_seconds: float = 0.1) -> dict:
    """The same windows computed live (StreamFunctionals, as a node stream of a one-pass fused model does):
    fed in block_seconds blocks, each window taken once STREAM_LOOKAHEAD s follow it. CPU of this process
    (openSMILE's thread included) a second of audio, the wait for a window whose lookahead is written
    (median, max), the largest difference from one pass over the whole signal, and the resident memory
    added by feeding it ten times the audio."""
    import resource

    from ser_models.functionals import STREAM_LOOKAHEAD
    block, lookahead = int(block_seconds * 16000), int(STREAM_LOOKAHEAD * 16000)
    _, whole = extractor.sliding(speech, WINDOW / 16000, 0.5)
    stream = extractor.stream(WINDOW, 8000)
    waits, got, index = [], [], 0
    started = time.process_time()
    for repeat in range(10):
        for begin in range(0, speech.size, block):
            stream.write(speech[begin:begin + block])
            while stream.window_end(index) + lookahead <= stream.written:
                waited = time.perf_counter()
                got.append(stream.ready(index))
                waits.append(time.perf_counter() - waited)
                index += 1
        if repeat == 0:
            cpu_first = time.process_time() - started
            rss_first = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_first
    stream.close()
    first = np.stack(got[:len(whole)])
    return {'stream_cpu_ms_per_audio_second': 1e3 * cpu_first / (speech.size / 16000),
            'stream_wait_ms_median': 1e3 * float(np.median(waits)), 'stream_wait_ms_max': 1e3 * max(waits),
            'stream_max_difference': float(np.abs(first - whole).max()),
            'stream_rss_growth_mb': rss_growth / 1024, 'stream_rss_growth_seconds': 9 * speech.size / 16000,
            'stream_instance_mb': stream_instance_mb(extractor, speech)}


def stream_instance_mb(extractor, speech: np.ndarray, instances: int = 8) -> float:
    """Resident memory one stream's openSMILE instance holds (a node stream of a one-pass fused model
    has one): `instances` of them fed 5 s of speech each, the growth divided among them, after one more
    made first takes what the first instance alone loads."""
    streams = [extractor.stream(WINDOW, 8000)]
    streams[0].write(speech[:5 * 16000])
    before = rss_mb(os.getpid())
    for _ in range(instances):
        streams.append(extractor.stream(WINDOW, 8000))
        streams[-1].write(speech[:5 * 16000])
    held = (rss_mb(os.getpid()) - before) / instances
    for stream in streams:
        stream.close()
    return held


def bench_node(model: str, backend: str, windows: int, realtime_seconds: float) -> dict:
    namespace = f'bench_{model}_{backend}_{os.getpid()}'
    started = time.perf_counter()
    process = start_node(namespace, {'weights': str(weights_dir(model)), 'backend': backend, 'hop': 0.1,
                                     'qos_reliability': 'reliable', 'queue_size': 1000})
    probe = Probe(namespace)
    result = {'model': model, 'backend': backend}
    try:
        assert probe.wait_until(lambda: probe.publisher.get_subscription_count() > 0, 60), 'node did not start'
        probe.spin_for(1.0)
        # Startup: process start to the first /emotion, feeding 3 s of audio as soon as it listens.
        first = speech_pcm(3.0)
        for offset in range(0, len(first), 3200):
            probe.publish(first[offset:offset + 3200])
        assert probe.wait_until(lambda: probe.received, 60), 'no /emotion'
        result['startup_to_first_emotion_s'] = probe.received[0][0] - started
        # End to end: publish the 0.1 s chunk that completes a window, time until its /emotion. A one-pass
        # fused model holds a window until the audio after it is in: the chunks ahead go out first, and
        # the timed chunk is the one that completes what window `index` waits for.
        lead = -(-held_samples(model) // 1600)
        pcm = speech_pcm((windows + lead) * 0.1 + 1)
        for index in range(lead):
            probe.publish(pcm[index * 3200:(index + 1) * 3200])
        latencies = []
        for index in range(windows):
            count = len(probe.received)
            sent = time.perf_counter()
            probe.publish(pcm[(index + lead) * 3200:(index + lead + 1) * 3200])
            if not probe.wait_until(lambda c=count: len(probe.received) > c, 10):
                raise RuntimeError(f'window {index}: no /emotion within 10 s')
            latencies.append(probe.received[-1][0] - sent)
        result['end_to_end'] = stats(latencies[20:])   # first 20 are warm-up
        # CPU per stream: real-time 16 kHz audio in 64 ms chunks, default hop 0.5 s.
        set_hop(probe, namespace, 0.5)
        cpu_before = process_cpu_seconds(process.pid)
        wall = publish_realtime(probe, realtime_seconds)
        cpu = process_cpu_seconds(process.pid) - cpu_before
        result['cpu_core_share_per_stream'] = cpu / wall
        result['cpu_seconds_per_audio_second'] = cpu / realtime_seconds
        # Again with someone listening on emotion/utterance: the node then scores each utterance as a clip.
        utterances = probe.listen(f'/{namespace}/emotion/utterance')
        probe.spin_for(1.0)
        cpu_before = process_cpu_seconds(process.pid)
        wall = publish_realtime(probe, realtime_seconds)
        result['cpu_core_share_per_stream_with_utterances'] = (process_cpu_seconds(process.pid) - cpu_before) / wall
        result['utterances_per_audio_minute'] = 60 * len(utterances) / realtime_seconds
        result['peak_rss_mb'] = peak_rss_mb(process.pid)
        result['rss_mb'] = rss_mb(process.pid)
        result['torch_imported'] = torch_loaded(process.pid)
    finally:
        probe.close()
        stop(process)
    return result


def publish_realtime(probe: Probe, seconds: float) -> float:
    """Real speech in 64 ms chunks (2048 bytes of S16LE), paced in real time; returns the wall time."""
    audio = speech_pcm(seconds)
    wall = time.perf_counter()
    for index, offset in enumerate(range(0, len(audio), 2048)):
        probe.publish(audio[offset:offset + 2048])
        probe.spin_for(max(0.0, wall + (index + 1) * 0.064 - time.perf_counter()))
    probe.spin_for(1.0)
    return time.perf_counter() - wall


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGINT a measured node or subscriber; one stuck in shutdown (figures taken already) is killed
    after `timeout` s rather than losing the run."""
    process.send_signal(2)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bench_rclpy_floor(seconds: float) -> dict:
    """CPU of a bare rclpy subscriber (no work in its callback) taking the same 64 ms chunks: what any
    Python node pays per stream before doing anything with the audio."""
    namespace = f'bench_floor_{os.getpid()}'
    process = subprocess.Popen([sys.executable, __file__, '--bare-subscriber', f'/{namespace}/audio/audio'],
                               env=node_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = Probe(namespace)
    try:
        assert probe.wait_until(lambda: probe.publisher.get_subscription_count() > 0, 60), 'no bare subscriber'
        probe.spin_for(1.0)
        cpu_before = process_cpu_seconds(process.pid)
        wall = publish_realtime(probe, seconds)
        cpu = process_cpu_seconds(process.pid) - cpu_before
        return {'what': 'bare rclpy subscriber, 15.6 msg/s', 'cpu_core_share': cpu / wall,
                'cpu_ms_per_message': cpu / (seconds / 0.064) * 1e3}
    finally:
        probe.close()
        stop(process)


def bare_subscriber(topic: str) -> int:
    import rclpy
    from audio_common_msgs.msg import AudioData
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    rclpy.init()
    node = rclpy.create_node('bare_subscriber')
    node.create_subscription(AudioData, topic, lambda message: None,
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, Exception):
        pass
    rclpy.try_shutdown()
    return 0


def torch_loaded(pid: int) -> bool:
    maps = Path(f'/proc/{pid}/maps').read_text()
    return 'libtorch' in maps


def set_hop(probe: Probe, namespace: str, hop: float):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    client = probe.node.create_client(SetParameters, f'/{namespace}/ser_node/set_parameters')
    assert probe.wait_until(client.service_is_ready, 10)
    future = client.call_async(SetParameters.Request(parameters=[Parameter('hop', value=hop).to_parameter_msg()]))
    assert probe.wait_until(future.done, 10) and future.result().results[0].successful


# ---------------------------------------------------------------------------------------------- scale
class ScaleProbe(Probe):
    """Publishes n real-time streams to one node and times each stream's /emotion."""

    def connect(self, namespace: str, streams: int):
        from ser_msgs.msg import Emotion
        self.received = [[] for _ in range(streams)]
        self.publishers = [self.node.create_publisher(self.AudioData, f'/{namespace}/s{i}/audio', self.qos)
                           for i in range(streams)]
        for i in range(streams):
            self.node.create_subscription(Emotion, f'/{namespace}/s{i}/emotion',
                                          lambda m, i=i: self.received[i].append(time.perf_counter()), self.qos)

    def all_subscribed(self) -> bool:
        return all(publisher.get_subscription_count() for publisher in self.publishers)

    def all_received(self, windows: int) -> bool:
        return all(len(arrivals) >= windows for arrivals in self.received)


def held_samples(model: str) -> int:
    """Samples of audio a model's stream waits for after a window before classifying it: STREAM_LOOKAHEAD
    for a fused model on one-pass functionals, else none."""
    from ser_models.functionals import STREAM_LOOKAHEAD
    meta = json.loads((weights_dir(model) / 'model.json').read_text())
    return int(round(STREAM_LOOKAHEAD * 16000)) if meta.get('functionals', {}).get('one_pass') else 0


def bench_scale(model: str, counts: list[int], seconds: float, phases: int, chunk: int = 1024) -> list[dict]:
    """Most concurrent 16 kHz streams one node process on one core keeps up with, at the default hop.

    The node is pinned to core 0 and this process to core 1. Every stream sends real speech in
    real time (64 ms chunks, as audio_capture does). phases=1: all streams' chunks are sent at
    once, as from one capture clock (a microphone array); phases=8: the streams are spread over
    the chunk period, as independent microphones are. A count passes when every stream gets every
    window and none comes later than one hop (0.5 s) after the chunk that completed it (for a fused
    model on one-pass functionals, the chunk that completed the audio it waits for after it).
    """
    rows = []
    all_cores = os.sched_getaffinity(0)
    pinned = len(all_cores) >= 2
    if pinned:
        os.sched_setaffinity(0, {1})
    pcm = speech_pcm(seconds)
    chunk_bytes = chunk * 2
    n_chunks = len(pcm) // chunk_bytes
    chunk_seconds = chunk / 16000
    # Windows end every 8000 samples from 48000 on; a one-pass fused model holds each until the audio
    # after it is in. The chunk that completes window j (and what it waits for):
    held = held_samples(model)
    window_ends = range(48000, n_chunks * chunk - held + 1, 8000)
    completing_chunk = [-(-(end + held) // chunk) - 1 for end in window_ends]
    for streams in counts:
        namespace = f'scale_{streams}_{os.getpid()}'
        topics = '[' + ', '.join(f's{i}/audio' for i in range(streams)) + ']'
        process = start_node(namespace, {'weights': str(weights_dir(model)), 'audio_topics': topics,
                                         'qos_reliability': 'reliable', 'queue_size': 64}, cpu=0 if pinned else None)
        probe = ScaleProbe(namespace, streams=streams)
        row = {'model': model, 'streams': streams, 'phases': phases, 'seconds': seconds}
        try:
            ready = probe.wait_until(probe.all_subscribed, 120)
            assert ready, 'node did not subscribe to every stream'
            probe.spin_for(2.0)
            groups = [list(range(g, streams, phases)) for g in range(min(phases, streams))]
            sent_at = np.zeros((n_chunks, streams))
            cpu_before = process_cpu_seconds(process.pid)
            wall = time.perf_counter()
            for index in range(n_chunks):
                message = probe.AudioData(data=pcm[index * chunk_bytes:(index + 1) * chunk_bytes])
                for number, group in enumerate(groups):
                    probe.spin_for(max(0.0, wall + (index + number / len(groups)) * chunk_seconds
                                       - time.perf_counter()))
                    for stream in group:
                        probe.publishers[stream].publish(message)
                    sent_at[index, group] = time.perf_counter()
            probe.spin_for(max(0.0, wall + n_chunks * chunk_seconds - time.perf_counter()))
            busy = process_cpu_seconds(process.pid) - cpu_before
            elapsed = time.perf_counter() - wall
            probe.wait_until(functools.partial(probe.all_received, len(completing_chunk)), 10)
            lags = [arrival - sent_at[completing_chunk[j], stream] for stream, received in enumerate(probe.received)
                    for j, arrival in enumerate(received[:len(completing_chunk)])]
            complete = sum(min(len(r), len(completing_chunk)) for r in probe.received)
            expected = streams * len(completing_chunk)
            row.update(windows_expected=expected, windows_received=complete,
                       node_cpu_share=busy / elapsed,
                       lag=stats(lags) if lags else {}, lag_max_ms=float(max(lags)) * 1e3 if lags else None,
                       sustained=bool(complete == expected and lags and max(lags) < 0.5))
        except AssertionError as error:
            row.update(sustained=False, error=str(error))
        finally:
            probe.close()
            stop(process, timeout=30)
        rows.append(row)
        print(f"scale, {phases} phase(s): {streams} streams: "
              f"{row.get('windows_received')}/{row.get('windows_expected')} windows, "
              f"node CPU {row.get('node_cpu_share', 0) * 100:.0f} % of a core, "
              f"lag p95 {row.get('lag', {}).get('p95_ms', float('nan')):.0f} ms, "
              f"max {row.get('lag_max_ms') or float('nan'):.0f} ms -> "
              f"{'sustained' if row['sustained'] else 'NOT sustained'}", flush=True)
        if not row['sustained']:
            break
    os.sched_setaffinity(0, all_cores)
    return rows


# ---------------------------------------------------------------------------------------------- output
def print_table(report: dict):
    print(f"\nser_ros benchmark, {report['date']} on {report['machine']}")
    print(f"{'what':<60}{'backend':<13}{'thr':>4}{'median ms':>11}{'p95 ms':>9}{'params':>11}")
    for row in report.get('latency', []):
        if 'skipped' in row:
            print(f"{row['what']:<60}skipped: {row['skipped']}")
            continue
        params = f"{row['parameters']:,}" if row.get('parameters') else ''
        print(f"{row['what']:<60}{row['backend']:<13}{row['threads']:>4}{row['median_ms']:>11.3f}"
              f"{row['p95_ms']:>9.3f}{params:>11}")
    for row in report.get('quality', []):
        uar = row['unseen_speaker_uar']
        shown = (f"unseen-speaker UAR {uar['mean_of_corpora']:.3f} (benchmark row {uar['row']})" if uar
                 else 'unseen-speaker UAR: not on the benchmark')
        print(f"{row.get('what', row['model_id'])}: {shown}; onnxruntime vs torch max |dp| "
              f"{row['parity_max_abs_probability']:.1e} over {row['parity_windows']} real-speech windows"
              f"{'' if row.get('parity_promised', True) else ' (faster than the model declares: no bound)'}")
    for row in report.get('node', []):
        e2e = row.get('end_to_end', {})
        print(f"\nnode {row['model']} on {row['backend']}: end-to-end p50 {e2e.get('median_ms', 0):.2f} ms, "
              f"p95 {e2e.get('p95_ms', 0):.2f} ms, p99 {e2e.get('p99_ms', 0):.2f} ms over {e2e.get('n', 0)} windows; "
              f"CPU {row['cpu_core_share_per_stream'] * 100:.2f} % of a core per stream, "
              f"{row['cpu_core_share_per_stream_with_utterances'] * 100:.2f} % with an emotion/utterance "
              f"subscriber ({row['utterances_per_audio_minute']:.0f} utterances a minute); peak RSS "
              f"{row['peak_rss_mb']:.0f} MB, {row['rss_mb']:.0f} MB after the run (torch loaded: "
              f"{row['torch_imported']}); startup to first /emotion "
              f"{row['startup_to_first_emotion_s']:.2f} s")
    cost = report.get('functionals_cost')
    if cost:
        print(f"eGeMAPS functionals: {cost['fixed_ms_per_call']:.1f} ms a call + {cost['ms_per_audio_second']:.1f} ms "
              'a second of audio (least squares over the lengths above); '
              f"{cost['sliding_windows']} node windows over 30 s of speech: {cost['sliding_ms_per_window']:.1f} ms a "
              f"window from one pass against {cost['windows_ms_per_window']:.1f} ms a call each, functionals apart by "
              f"{cost['sliding_gap_sd_median']:.3f} sd median, {cost['sliding_gap_sd_p90']:.3f} p90")
        print(f"live (StreamFunctionals, 0.1 s blocks): {cost['stream_cpu_ms_per_audio_second']:.1f} ms of CPU a "
              f"second of audio; a window's wait once its lookahead is in {cost['stream_wait_ms_median']:.1f} ms "
              f"median, {cost['stream_wait_ms_max']:.1f} ms max; max difference from one pass "
              f"{cost['stream_max_difference']:g}; resident memory +{cost['stream_rss_growth_mb']:.1f} MB over "
              f"{cost['stream_rss_growth_seconds']:.0f} s more; {cost['stream_instance_mb']:.1f} MB resident a "
              "stream's instance")
    floor = report.get('rclpy_floor')
    if floor:
        print(f"{floor['what']}: CPU {floor['cpu_core_share'] * 100:.2f} % of a core, "
              f"{floor['cpu_ms_per_message']:.2f} ms per message")
    for row in report.get('scale', []):
        lag = row.get('lag', {})
        phases = 'in phase' if row['phases'] == 1 else f"{row['phases']} phases"
        print(f"scale ({phases}) {row['streams']} streams: "
              f"{row.get('windows_received')}/{row.get('windows_expected')} windows, node CPU "
              f"{row.get('node_cpu_share', 0) * 100:.0f} %, lag p95 {lag.get('p95_ms', float('nan')):.0f} ms -> "
              f"{'sustained' if row['sustained'] else 'not sustained'}")
    if report.get('peer_ratio'):
        for model, ratio in report['peer_ratio'].items():
            print(f'wav2vec2-base peer / {model} (1 thread, best backend): {ratio:.0f}x')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='fewer repetitions (a smoke run)')
    parser.add_argument('--json', default=str(REPO / 'bench' / 'results.json'))
    parser.add_argument('--sections', default='front,models,functionals,node,scale,peer')
    parser.add_argument('--scale-counts', default='25,50,100,125,150,200',
                        help='stream counts tried in turn until one is not sustained (streams in phase)')
    parser.add_argument('--scale-counts-staggered', default='25,50,75,100',
                        help='the same for streams spread over the chunk period')
    parser.add_argument('--scale-model', default='timnet', help='the model the scale section serves')
    parser.add_argument('--node-models', default=','.join(MODELS))
    parser.add_argument('--bare-subscriber', metavar='TOPIC', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_subscriber:
        return bare_subscriber(args.bare_subscriber)
    sections = set(args.sections.split(','))
    repeats = 30 if args.quick else 200
    report = {'date': time.strftime('%Y-%m-%d %H:%M %Z'), 'machine': machine(), 'latency': [], 'node': []}
    if 'front' in sections:
        report['latency'] += bench_front_end(repeats)
    if 'models' in sections:
        report['latency'] += bench_models(repeats)
        report['quality'] = [model_quality(m, mix) for m in MODELS if (weights_dir(m) / 'model.json').is_file()
                             for mix in spectral_mixes(m)]
    if 'functionals' in sections:
        rows, report['functionals_cost'] = bench_functionals(max(10, repeats // 10))
        report['latency'] += rows
    if 'peer' in sections:
        report['latency'] += bench_peer(repeats)
    if 'scale' in sections:
        seconds = 12 if args.quick else 30
        report['scale'] = bench_scale(args.scale_model, [int(n) for n in args.scale_counts.split(',')], seconds, 1)
        report['scale'] += bench_scale(args.scale_model, [int(n) for n in args.scale_counts_staggered.split(',')],
                                       seconds, 8)
    if 'node' in sections:
        for model in args.node_models.split(','):
            if (weights_dir(model) / 'model.json').is_file():
                report['node'].append(bench_node(model, 'onnxruntime', 120 if args.quick else 520,
                                                 10 if args.quick else 30))
        report['rclpy_floor'] = bench_rclpy_floor(10 if args.quick else 30)
        if 'timnet' in args.node_models and (weights_dir('timnet') / 'model.json').is_file():
            torch_row = bench_node('timnet', 'torch', 60, 10)
            report['node'].append(torch_row)
    report['peer_ratio'] = peer_ratios(report)
    Path(args.json).write_text(json.dumps(report, indent=2) + '\n')
    print_table(report)
    print(f'\nwritten: {args.json}')
    return 0


def peer_ratios(report: dict) -> dict:
    """wav2vec2-base's forward pass over each model's front end + batch-1 forward pass, 1 thread."""
    single = [r for r in report['latency'] if r.get('threads') == 1 and 'median_ms' in r and 'batch' not in r]
    peer = [r['median_ms'] for r in single if r['what'].startswith('wav2vec2')]
    front = [r['median_ms'] for r in single if r['what'].startswith('front end (MFCC')]
    ratios = {}
    for model in MODELS:
        ours = [r['median_ms'] for r in single if r['what'].startswith(f'{model} (')]
        if peer and ours:
            ratios[model] = peer[0] / (min(ours) + (front[0] if front else 0.0))
    return ratios


def machine() -> str:
    cpu = ''
    try:
        cpu = next(line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                   if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{cpu or platform.processor()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}'


if __name__ == '__main__':
    sys.exit(main())
