"""Run ser_node as its own process and talk to it over real DDS from the test process."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
from conftest import spin_until

from ser_ros.bag_eval import ser_node_command

REPO = Path(__file__).resolve().parents[1]


def default_weights() -> Path:
    return REPO / 'weights' / 'timnet'


class NodeProcess:
    """ser_node with the given parameters, its namespace unique to the test."""

    def __init__(self, namespace: str, params: dict | None = None, remaps: dict | None = None,
                 params_file: str | None = None):
        self.namespace = namespace
        args = ser_node_command() + ['--ros-args', '-r', f'__ns:=/{namespace}']
        if params_file:
            args += ['--params-file', params_file]
        for key, value in (params or {}).items():
            args += ['-p', f'{key}:={value}']
        for key, value in (remaps or {}).items():
            args += ['-r', f'{key}:={value}']
        env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', PYTHONUNBUFFERED='1')
        self.log_path = REPO / '.ros' / f'test-{namespace}.log'
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = open(self.log_path, 'w')
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def wait_for_subscriber(node, publisher, timeout=20.0, settle=1.0) -> None:
    """Wait until ser_node's subscription matched ours and our subscriptions in its namespace matched
    its writers, then let discovery settle: a reader drops what arrives before it has matched."""
    assert spin_until(node, lambda: publisher.get_subscription_count() > 0, timeout), \
        'ser_node never subscribed to the audio topic'
    namespace = publisher.topic_name.rsplit('/audio/', 1)[0]
    wait_for_writers(node, [s for s in node.subscriptions if s.topic_name.startswith(namespace + '/')], timeout)
    spin_until(node, lambda: False, settle)


def wait_for_writers(node, subscriptions, timeout=20.0) -> None:
    """Wait until each of our subscriptions has matched a publisher."""
    waiting = lambda: [s.topic_name for s in subscriptions if s.get_publisher_count() == 0]  # noqa: E731
    assert spin_until(node, lambda: not waiting(), timeout), f'no publisher on {waiting()}'


def pcm_chunks(samples: np.ndarray, sample_format: str, chunk_frames: int, channels: int = 1):
    """Interleaved PCM byte chunks of float samples (frames, channels) or (frames,)."""
    data = samples.reshape(len(samples), -1) if samples.ndim > 1 else samples[:, None]
    if data.shape[1] != channels:
        data = np.repeat(data, channels, axis=1)
    if sample_format == 'S16LE':
        raw = np.clip(data * 32767, -32768, 32767).astype('<i2').tobytes()
    elif sample_format == 'F32LE':
        raw = data.astype('<f4').tobytes()
    else:
        raise ValueError(sample_format)
    frame_bytes = len(raw) // len(data)
    step = chunk_frames * frame_bytes
    return [raw[i:i + step] for i in range(0, len(raw), step)]


def publish_paced(node, publisher, chunks, make_msg, seconds_per_chunk: float, speedup: float = 4.0) -> None:
    """Publish chunks at `speedup` times real time, spinning the test node in between."""
    started = time.monotonic()
    for index, chunk in enumerate(chunks):
        publisher.publish(make_msg(chunk))
        due = started + (index + 1) * seconds_per_chunk / speedup
        while time.monotonic() < due:
            node.executor_for_test.spin_once(timeout_sec=max(0.0, min(0.01, due - time.monotonic())))


def expected_windows(total_samples: int, window: int, hop: int) -> int:
    return 0 if total_samples < window else 1 + (total_samples - window) // hop
