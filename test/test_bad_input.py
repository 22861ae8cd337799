"""The bad-input catalogue on real DDS: each case is logged, counted in /diagnostics, and the node
keeps classifying the good audio that follows. docs/node.md's reliability table lists the same cases."""
import os
import time

import numpy as np
import pytest
import soxr
from conftest import spin_until
from node_harness import NodeProcess, default_weights, wait_for_subscriber

pytestmark = pytest.mark.ros


class Session:
    """One ser_node and the test's publisher, subscriptions and diagnostics view of it."""

    def __init__(self, ros_node, namespace, params):
        from audio_common_msgs.msg import AudioData, AudioInfo
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from ser_msgs.msg import Emotion
        self.ros, self.namespace, self.AudioData, self.AudioInfo = ros_node, namespace, AudioData, AudioInfo
        self.node = NodeProcess(namespace, {'weights': str(default_weights()), 'qos_reliability': 'reliable',
                                            'hop': 0.5, **params})
        self.emotions, self.diagnostics = [], {}
        ros_node.create_subscription(Emotion, f'/{namespace}/emotion', self.emotions.append, 1000)
        ros_node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = ros_node.create_publisher(AudioData, f'/{namespace}/audio/audio', self.qos)
        self.info_publisher = ros_node.create_publisher(
            AudioInfo, f'/{namespace}/audio/audio_info',
            QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
        wait_for_subscriber(ros_node, self.publisher)

    def _on_diagnostics(self, array):
        for status in array.status:
            if status.hardware_id == f'/{self.namespace}/audio/audio':
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def counter(self, key) -> int:
        return int(self.diagnostics.get(key, '0'))

    def send(self, *payloads, pause=0.004):
        for payload in payloads:
            self.publisher.publish(self.AudioData(data=payload))
            spin_until(self.ros, lambda: False, pause)

    def info(self, rate, channels, sample_format):
        self.info_publisher.publish(self.AudioInfo(sample_rate=rate, channels=channels, sample_format=sample_format,
                                                   coding_format='wave'))
        assert spin_until(self.ros, lambda: f'{rate} Hz, {channels} ch, {sample_format}' in
                          self.diagnostics.get('input format', ''), 10), self.diagnostics

    def wait_counter(self, key, value, timeout=20):
        assert spin_until(self.ros, lambda: self.counter(key) >= value, timeout), (key, value, self.diagnostics)

    def published(self):
        return len(self.emotions)

    def expect_new_emotions(self, before, at_least=1, timeout=20):
        assert spin_until(self.ros, lambda: self.published() >= before + at_least, timeout), \
            (self.published(), before, self.diagnostics, self.node.log()[-2000:])
        return self.emotions[before:]


@pytest.fixture(scope='module')
def speech(data_dir):
    import soundfile as sf
    return sf.read(data_dir / 'ravdess/Actor_07/03-01-05-02-02-02-07.flac', dtype='float32')[0][:64000]


def pcm(samples, sample_format='S16LE', channels=1):
    data = np.repeat(samples[:, None], channels, axis=1)
    if sample_format == 'S16LE':
        return np.clip(data * 32767, -32768, 32767).astype('<i2').tobytes()
    return data.astype('<f4').tobytes()


def chunks(raw, size):
    return [raw[i:i + size] for i in range(0, len(raw), size)]


@pytest.fixture
def session(ros_node, request):
    made = []

    def make(**params):
        made.append(Session(ros_node, f'bad_{request.node.name[5:30]}_{os.getpid()}', params))
        return made[-1]
    yield make
    for s in made:
        s.node.stop()


def test_format_mismatch_silence_clipping_and_empty_messages(session, speech):
    s = session()
    s.info(16000, 1, 'F32LE')                                    # declared F32LE, but S16LE bytes follow
    s.send(*chunks(pcm(speech), 2048))
    s.wait_counter('rejected', 10)
    assert 'beyond full scale' in s.diagnostics['last rejection'] or 'NaN' in s.diagnostics['last rejection']
    s.info(16000, 1, 'S16LE')                                    # the driver is fixed: good audio again
    before = s.published()
    s.send(*chunks(pcm(speech), 2048))
    assert any(m.voiced for m in s.expect_new_emotions(before, 3))
    rejected = s.counter('rejected')                             # an AudioInfo that cannot be decoded
    s.info_publisher.publish(s.AudioInfo(sample_rate=16000, channels=1, sample_format='S13LE', coding_format='wave'))
    s.wait_counter('rejected', rejected + 1)
    assert 'AudioInfo says the stream is unusable' in s.diagnostics['last rejection']
    assert s.diagnostics['input format'].startswith('16000 Hz, 1 ch, S16LE'), s.diagnostics
    before = s.published()
    s.send(*chunks(pcm(speech), 2048))
    assert any(m.voiced for m in s.expect_new_emotions(before, 3))
    rejected = s.counter('rejected')
    s.send(b'', b'')                                             # empty messages
    s.wait_counter('rejected', rejected + 2)
    assert s.diagnostics['last rejection'] == 'empty message'
    before = s.published()
    s.send(*chunks(pcm(np.zeros(64000, np.float32)), 2048))      # 4 s of digital silence
    silent = s.expect_new_emotions(before, 8)
    assert not any(m.voiced for m in silent[-2:]) and all(len(m.probabilities) == 0 for m in silent if not m.voiced)
    before = s.published()
    square = np.sign(np.sin(np.arange(48000) / 10)).astype(np.float32)   # full-scale clipping
    s.send(*chunks(pcm(square), 2048))
    clipped = [m for m in s.expect_new_emotions(before, 3) if m.voiced]
    assert clipped and all(np.isfinite(m.probabilities).all() and abs(sum(m.probabilities) - 1) < 1e-4
                           for m in clipped)
    assert 'rejected audio message' in s.node.log()
    assert s.counter('utterances published') == 0                # no one listens on emotion/utterance


@pytest.mark.parametrize('rate,channels', [(8000, 1), (22050, 1), (44100, 2), (48000, 2), (96000, 1)])
def test_other_rates_and_channel_counts_switched_mid_stream(session, speech, rate, channels):
    s = session()
    s.send(*chunks(pcm(speech[:16000]), 2048))                   # 1 s at the default 16 kHz mono
    s.info(rate, channels, 'F32LE')                              # then the stream changes
    resampled = soxr.resample(speech, 16000, rate).astype(np.float32)
    before = s.published()
    s.send(*chunks(pcm(resampled, 'F32LE', channels), 4096 * channels))
    emotions = s.expect_new_emotions(before, 3)
    assert any(m.voiced for m in emotions) and s.counter('rejected') == 0
    assert s.counter('format changes') == 1


def test_a_ten_megabyte_message_and_a_burst_of_a_thousand(session, speech):
    s = session(qos_depth=1000)
    huge = pcm(np.tile(speech, 79)[:5_000_000])                  # 10 MB: 312 s of audio in one message
    s.send(huge, pause=0.5)
    s.wait_counter('messages', 1, timeout=30)
    s.wait_counter('windows dropped', 1, timeout=30)             # far more windows than the queue holds
    published = s.published()
    burst = chunks(pcm(np.tile(speech, 2)), 2048)[:1000]
    burst += [burst[-1]] * (1000 - len(burst))
    for payload in burst:                                        # all at once, no pacing
        s.publisher.publish(s.AudioData(data=payload))
    s.wait_counter('messages', 1001, timeout=60)
    assert s.published() > published or spin_until(s.ros, lambda: s.published() > published, 20)
    assert s.counter('rejected') == 0


def test_publisher_restart_keeps_the_stream_going(ros_node, session, speech):
    s = session()
    s.send(*chunks(pcm(speech[:40000]), 2048))
    ros_node.destroy_publisher(s.publisher)                      # the driver dies ...
    spin_until(ros_node, lambda: False, 1.0)
    s.publisher = ros_node.create_publisher(s.AudioData, f'/{s.namespace}/audio/audio', s.qos)   # ... and returns
    wait_for_subscriber(ros_node, s.publisher)
    before = s.published()
    s.send(*chunks(pcm(speech), 2048))
    assert any(m.voiced for m in s.expect_new_emotions(before, 3))
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in s.emotions]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    assert time.time() - stamps[-1] < 60
