"""ser-bag-eval: run the node's pipeline over a rosbag2 and score it against a label sidecar.

    ser-bag-eval BAG [--labels BAG.json] [--model timnet_egemaps | --weights DIR] [--backend onnxruntime]
                 [--live [--rate 4]] [--png timeline.png] [--json metrics.json]

Offline (default): the same decoding, windowing and model as ser_node, straight from the bag, no
ROS graph. --live: start ser_node, replay the bag onto the live graph, and record /emotion.
Both write a timeline PNG (probabilities over time, labelled clips shaded) and agreement metrics.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import ser_models
from ser_models.pipeline import EmotionPipeline, PipelineSettings
from ser_models.stream import AudioFormatError, StreamFormat

from .bag_audio import read_audio
from .model_paths import DEFAULT_MODEL, MODELS, resolve_model_dir
from .timeline import TimedEmotion, agreement, load_sidecar, plot_timeline

BATCH = 32


def ser_node_command() -> list[str]:
    """How `ros2 run ser_ros ser_node` starts the node: lib/ser_ros/ser_node under the package prefix."""
    from ament_index_python.packages import get_package_prefix
    path = Path(get_package_prefix('ser_ros')) / 'lib' / 'ser_ros' / 'ser_node'
    if not path.is_file():
        raise FileNotFoundError(f'{path} is missing: build the workspace (scripts/setup.sh or colcon build)')
    return [str(path)]


def offline(bag, predictor, settings: PipelineSettings | None = None, audio_topic=None) -> tuple[list, dict]:
    """WindowResults for a bag through EmotionPipeline, fed exactly as the node is fed."""
    pipeline, fmt = None, StreamFormat()
    pending, results, rejected = [], [], 0
    for message in read_audio(bag, audio_topic):
        if message.kind == 'info':
            info = message.info
            fmt = StreamFormat(int(info.sample_rate), int(info.channels), info.sample_format or 'S16LE',
                               info.coding_format or 'wave')
            if pipeline is not None:
                pipeline.set_format(fmt)
            continue
        if pipeline is None:
            pipeline = EmotionPipeline(predictor, fmt, settings)
        try:
            pending += pipeline.push(message.data, message.stamp_ns, message.log_ns)
        except AudioFormatError:
            rejected += 1
        if len(pending) >= BATCH:
            results += pipeline.classify(pending)
            pending = []
    if pipeline is not None:
        pending += pipeline.flush()     # windows held for audio after them: the bag's audio has ended
        pipeline.close()
    if pipeline is not None and pending:
        results += pipeline.classify(pending)
    if pipeline is not None and results:
        results[-1].utterances += pipeline.end_utterance()     # one still open when the bag ends
    return results, {'rejected': rejected, 'mp3_frames_dropped': pipeline.stream.mp3_frames_dropped if pipeline else 0}


def to_timed(results, origin_ns: int) -> list[TimedEmotion]:
    """WindowResults, or Utterances, on the bag's time line."""
    return [TimedEmotion((r.start_ns - origin_ns) / 1e9, (r.end_ns - origin_ns) / 1e9, r.voiced, r.label,
                         list(r.labels), [] if r.probabilities is None else [float(p) for p in r.probabilities])
            for r in results]


def emotion_to_timed(msg, origin_ns: int) -> TimedEmotion:
    start = msg.window_start.sec * 1_000_000_000 + msg.window_start.nanosec
    end = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    return TimedEmotion((start - origin_ns) / 1e9, (end - origin_ns) / 1e9, msg.voiced, msg.label,
                        list(msg.labels), list(msg.probabilities))


def live(bag, node_params: dict, rate: float = 1.0, namespace: str = '', on_emotion=None,
         audio_topic='/audio/audio_stamped', settle: float = 1.0, idle_timeout: float = 8.0,
         utterances: list | None = None) -> list:
    """Start ser_node, replay the bag into it, and return the Emotion messages it published on emotion
    (those on emotion/utterance go to `utterances`, if given)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from ser_msgs.msg import Emotion

    from .replay import BagPlayer

    prefix = f'/{namespace}' if namespace else ''
    args = ser_node_command() + ['--ros-args', '-r', f'audio:={prefix}{audio_topic}',
                                 '-r', f'audio_info:={prefix}/audio/audio_info', '-r', f'emotion:={prefix}/emotion',
                                 '-r', '__node:=ser_node_replay' if namespace else '__node:=ser_node']
    for key, value in node_params.items():
        args += ['-p', f'{key}:={value}']
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    node_process = subprocess.Popen(args, env=env)
    context = rclpy.Context()
    rclpy.init(context=context)
    listener = rclpy.create_node('ser_bag_eval', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    received = []

    def on_message(msg):
        received.append(msg)
        if on_emotion:
            on_emotion(msg)
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    listener.create_subscription(Emotion, f'{prefix}/emotion', on_message,
                                 QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    if utterances is not None:
        listener.create_subscription(Emotion, f'{prefix}/emotion/utterance', utterances.append,
                                     QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    try:
        remap = {'/audio/audio_stamped': f'{prefix}/audio/audio_stamped', '/audio/audio': f'{prefix}/audio/audio',
                 '/audio/audio_info': f'{prefix}/audio/audio_info'}
        player = BagPlayer(listener, bag, rate=rate, remap=remap)

        def spin(seconds):
            executor.spin_once(timeout_sec=seconds)
        deadline = time.monotonic() + 60
        while not all(p.get_subscription_count() for p in player.publishers.values()):
            if node_process.poll() is not None:
                raise RuntimeError(f'ser_node exited with {node_process.returncode} before the replay')
            if time.monotonic() > deadline:
                raise RuntimeError('ser_node did not subscribe to the bag topics within 60 s')
            spin(0.05)
        end = time.monotonic() + settle
        while time.monotonic() < end:   # let the node's side of discovery finish as well
            spin(0.05)
        player.play_once(spin)
        last_count, last_change = len(received), time.monotonic()
        while time.monotonic() - last_change < idle_timeout:
            spin(0.1)
            if len(received) != last_count:
                last_count, last_change = len(received), time.monotonic()
            elif last_count and time.monotonic() - last_change > 2.0:
                break
    finally:
        node_process.send_signal(2)
        try:
            node_process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node_process.kill()
        executor.shutdown()
        listener.destroy_node()
        context.try_shutdown()
    return received


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bag')
    parser.add_argument('--labels', help='sidecar JSON with clip spans (default: BAG.json)')
    parser.add_argument('--model', default=DEFAULT_MODEL, help=f'shipped model: one of {MODELS}')
    parser.add_argument('--weights', default='', help='artifact directory instead of a shipped model')
    parser.add_argument('--backend', default='onnxruntime', choices=ser_models.BACKENDS)
    parser.add_argument('--live', action='store_true', help='replay through a running ser_node instead')
    parser.add_argument('--rate', type=float, default=1.0, help='replay speed for --live')
    parser.add_argument('--png', help='timeline image (default: BAG-timeline.png)')
    parser.add_argument('--json', help='write metrics here')
    args = parser.parse_args(argv)
    bag = Path(args.bag)
    sidecar = load_sidecar(args.labels or bag.with_suffix('.json'))
    model_dir = resolve_model_dir(args.model, args.weights)
    origin = sidecar['start_ns']
    if args.live:
        heard = []
        messages = live(bag, {'weights': str(model_dir), 'backend': args.backend, 'input_type': 'stamped',
                              'qos_reliability': 'reliable'}, rate=args.rate, utterances=heard)
        windows = [emotion_to_timed(m, origin) for m in messages]
        utterances = [emotion_to_timed(m, origin) for m in heard]
        model_id = messages[0].model if messages else str(model_dir)
    else:
        predictor = ser_models.load(model_dir, backend=args.backend)
        results, _ = offline(bag, predictor)
        windows = to_timed(results, origin)
        utterances = to_timed([u for result in results for u in result.utterances], origin)
        model_id = predictor.model_id
    metrics = agreement(windows, sidecar, utterances)
    png = plot_timeline(windows, sidecar, args.png or f'{bag}-timeline.png',
                        f'{model_id} on {bag.name} ({"live" if args.live else "offline"}): clip accuracy '
                        f'{metrics["clip_accuracy"]:.0%}, window accuracy {metrics["window_accuracy"]:.0%}')
    print(f'{metrics["windows_published"]} windows ({metrics["windows_voiced"]} voiced); '
          f'clip accuracy {metrics["clip_accuracy"]:.3f} over {metrics["clips_scored"]} clips, '
          f'window accuracy {metrics["window_accuracy"]:.3f} over {metrics["windows_scored"]} windows, '
          f'utterance accuracy {metrics["utterance_accuracy"]:.3f} over {metrics["utterances_scored"]} utterances')
    print(f'timeline: {png}')
    if args.json:
        Path(args.json).write_text(json.dumps({'model': model_id, 'mode': 'live' if args.live else 'offline',
                                               **metrics}, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
