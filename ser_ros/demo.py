"""ser-demo: the main job. Start ser_node on the shipped weights, replay the bundled bag of real
speech into it, print every /emotion message as it arrives, then write the timeline PNG.

    ser-demo [--model timnet_egemaps|timnet|cktim|cktim_egemaps|lmu|lmu_egemaps] [--rate 1.0] [--bag BAG] [--png PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .bag_eval import emotion_to_timed, live
from .model_paths import DEFAULT_MODEL, MODELS, resolve_model_dir
from .timeline import agreement, load_sidecar, plot_timeline

SOURCE_BAG = Path(__file__).resolve().parents[1] / 'test' / 'data' / 'demo_bag'


def bundled_bag() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory('ser_ros')) / 'data' / 'demo_bag'
        if installed.is_dir():
            return installed
    except (ImportError, LookupError, ValueError):
        pass
    return SOURCE_BAG


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default=DEFAULT_MODEL, help=f'shipped model: one of {MODELS}')
    parser.add_argument('--weights', default='', help='artifact directory instead of a shipped model')
    parser.add_argument('--bag', default=str(bundled_bag()))
    parser.add_argument('--rate', type=float, default=1.0, help='replay speed (1.0 = real time)')
    parser.add_argument('--png', default='ser_demo_timeline.png')
    args = parser.parse_args(argv)
    bag = Path(args.bag)
    sidecar = load_sidecar(bag.with_suffix('.json'))
    origin = sidecar['start_ns']
    model_dir = resolve_model_dir(args.model, args.weights)
    truth = {round(c['start'], 1): c['emotion'] for c in sidecar['clips']}
    print(f'ser_node on {model_dir.name}, replaying {bag.name} ({sidecar["duration"]:.0f} s of speech, '
          f'{len(truth)} labelled clips) at {args.rate}x; /emotion:')
    print(f'{"t (s)":>7}  {"label":<10} {"conf":>5}  {"voiced":<6} {"infer ms":>8}')

    def show(msg):
        window = emotion_to_timed(msg, origin)
        label = msg.label if msg.voiced else '-'
        print(f'{window.end:7.2f}  {label:<10} {msg.confidence:5.2f}  {str(msg.voiced):<6} '
              f'{msg.inference_time * 1e3:8.2f}', flush=True)
    heard = []
    messages = live(bag, {'weights': str(model_dir), 'input_type': 'stamped'}, rate=args.rate, on_emotion=show,
                    utterances=heard)
    windows = [emotion_to_timed(m, origin) for m in messages]
    utterances = [emotion_to_timed(m, origin) for m in heard]
    print('/emotion/utterance:')
    for utterance, msg in zip(utterances, heard, strict=True):
        print(f'{utterance.start:7.2f} to {utterance.end:6.2f}  {msg.label:<10} {msg.confidence:5.2f}', flush=True)
    metrics = agreement(windows, sidecar, utterances)
    model_id = messages[0].model if messages else model_dir.name
    png = plot_timeline(windows, sidecar, args.png,
                        f'{model_id} live on {bag.name}: clip accuracy {metrics["clip_accuracy"]:.0%}')
    print(json.dumps({k: metrics[k] for k in ('windows_published', 'windows_voiced', 'clip_accuracy',
                                              'window_accuracy', 'utterances_published', 'utterance_accuracy')}))
    print(f'timeline: {Path(png).resolve()}')
    return 0 if messages else 1


if __name__ == '__main__':
    sys.exit(main())
