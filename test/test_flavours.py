"""Both audio_common_msgs families: ros-drivers (everywhere else in the suite) and mgonzs13's
AudioStamped, against a stand-in overlay built by scripts/setup.sh (install-mgonzs13/)."""
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import spin_until
from node_harness import wait_for_writers

from ser_models.stream import AudioFormatError
from ser_ros.audio_flavour import PORTAUDIO_FORMATS, stamped_format, stamped_samples

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / 'install-mgonzs13' / 'local_setup.bash'
PEER = Path(__file__).parent / 'peers' / 'mgonzs13_capturer.py'
CLIP = 'emovo/f2/tri-f2-l1.flac'


def test_portaudio_formats_map_to_the_typed_array_named():
    for code, (field, sample_format, dtype) in PORTAUDIO_FORMATS.items():
        values = np.arange(-3, 3) + (3 if dtype == 'u1' else 0)
        audio = SimpleNamespace(info=SimpleNamespace(format=code, channels=2, rate=48000, chunk=3),
                                audio_data=SimpleNamespace(**{field: values.tolist()}))
        fmt = stamped_format(audio.info)
        assert (fmt.sample_format, fmt.channels, fmt.sample_rate) == (sample_format, 2, 48000)
        assert stamped_samples(audio) == values.astype(dtype).tobytes()
    with pytest.raises(AudioFormatError, match='PortAudio format 4'):    # paInt24
        stamped_format(SimpleNamespace(format=4, channels=1, rate=16000, chunk=512))


def in_overlay(command: list[str]) -> list[str]:
    return ['bash', '-c', f'. "{REPO}/env.sh" && . "{OVERLAY}" && exec "$@"', '_', *command]


@pytest.mark.ros
@pytest.mark.parametrize('code,channels', [(8, 1), (1, 2)], ids=['int16_mono', 'float32_stereo'])
def test_mgonzs13_audio_stamped_gives_the_windows_of_the_same_audio_as_pcm(ros_node, data_dir, code, channels):
    if not OVERLAY.is_file():
        pytest.skip(f'{OVERLAY} is missing: run scripts/setup.sh')
    import soundfile as sf
    from ser_msgs.msg import Emotion

    import ser_models
    from ser_models.pipeline import EmotionPipeline, PipelineSettings
    from ser_models.stream import StreamFormat
    from ser_ros.bag_eval import ser_node_command
    namespace = f'mgonzs13_{os.getpid()}_{code}'
    received = []
    emotions = ros_node.create_subscription(Emotion, f'/{namespace}/emotion', received.append, 100)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    node = subprocess.Popen(in_overlay(ser_node_command() + [
        '--ros-args', '-r', f'__ns:=/{namespace}', '-p', f'weights:={REPO / "weights" / "timnet"}',
        '-p', 'qos_reliability:=reliable', '-p', 'qos_depth:=1000']),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The peer waits for ser_node's audio subscription; this side must also have matched
        # ser_node's /emotion writer, or the first windows are published to nobody.
        wait_for_writers(ros_node, [emotions], timeout=60)
        spin_until(ros_node, lambda: False, timeout=1.0)
        peer = subprocess.run(in_overlay([sys.executable, str(PEER), f'/{namespace}/audio/audio', str(data_dir / CLIP),
                                          str(code), str(channels), '512']),
                              env=env, capture_output=True, text=True, timeout=120)
        assert peer.returncode == 0, peer.stdout + peer.stderr
        speech = sf.read(data_dir / CLIP, dtype='float32')[0]
        reference = EmotionPipeline(ser_models.load(REPO / 'weights' / 'timnet'), StreamFormat(),
                                    PipelineSettings(hop=0.5))
        expected = reference.classify(reference.push(
            np.round(np.clip(speech, -1, 1) * 32767).astype('<i2').tobytes(), 0, 1))
        spin_until(ros_node, lambda: len(received) >= len(expected), timeout=30)
        spin_until(ros_node, lambda: False, timeout=1.0)
    finally:
        node.send_signal(2)
        log = node.communicate(timeout=15)[0]
    assert len(received) == len(expected), log
    assert 'mgonzs13 flavour' in log
    assert received[0].header.frame_id == 'respeaker'
    for msg, result in zip(received, expected, strict=True):
        assert msg.label == result.label
        np.testing.assert_allclose(msg.probabilities, result.probabilities, atol=2e-3)   # int16 vs float coding
