"""ser_node on real DDS: real speech in, consistent Emotion messages out, bad input survived, live parameters."""
import json
import os
import re
import time

import numpy as np
import pytest
from conftest import spin_until
from node_harness import (
    REPO,
    NodeProcess,
    default_weights,
    expected_windows,
    pcm_chunks,
    publish_paced,
    wait_for_subscriber,
)

import ser_models

pytestmark = pytest.mark.ros

HOP = 0.5


@pytest.fixture(scope='module')
def speech(data_dir):
    """About 9 s of real speech: three clips of different corpora back to back, 16 kHz mono."""
    import soundfile as sf
    paths = ['ravdess/Actor_03/03-01-05-02-01-01-03.flac', 'emovo/f2/tri-f2-l1.flac',
             'tess/OAF_happy/OAF_bean_happy.flac']
    return np.concatenate([sf.read(data_dir / p, dtype='float32')[0] for p in paths])


@pytest.fixture
def node_factory(request):
    started = []

    def start(params=None, **kwargs):
        name = 'n_' + re.sub(r'[^a-z0-9]+', '_', request.node.name.lower())[:40].strip('_')
        # Exact window counts need every message: a reliable subscription to our reliable publisher.
        defaults = {'weights': str(default_weights()), 'hop': HOP, 'qos_reliability': 'reliable'}
        merged = {key: value for key, value in {**defaults, **(params or {})}.items() if value is not None}
        node = NodeProcess(f'{name}_{len(started)}', merged, **kwargs)
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


def collect(ros_node, namespace, topic='emotion'):
    from ser_msgs.msg import Emotion
    received = []
    ros_node.create_subscription(Emotion, f'/{namespace}/{topic}', received.append, 100)
    return received


def nanoseconds(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def audio_publisher(ros_node, namespace, stamped=False):
    from audio_common_msgs.msg import AudioData, AudioDataStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    kind = AudioDataStamped if stamped else AudioData
    return ros_node.create_publisher(kind, f'/{namespace}/audio/audio', qos)


def check_emotion_fields(msg, labels=None):
    assert msg.labels and len(msg.labels) == len(set(msg.labels))
    if labels:
        assert list(msg.labels) == labels
    assert msg.window_duration == pytest.approx(3.0)
    assert msg.model
    stamp, start = msg.header.stamp, msg.window_start
    window_ns = (stamp.sec - start.sec) * 1e9 + stamp.nanosec - start.nanosec
    assert window_ns / 1e9 == pytest.approx(3.0, abs=0.01)  # first to last sample of the window
    if msg.voiced:
        probabilities = np.array(msg.probabilities)
        assert len(probabilities) == len(msg.labels) and abs(probabilities.sum() - 1) < 1e-4
        assert msg.label == msg.labels[int(np.argmax(probabilities))]
        assert msg.confidence == pytest.approx(probabilities.max(), abs=1e-6)
        assert 0 < msg.inference_time < 5
    else:
        assert msg.label == '' and len(msg.probabilities) == 0


def test_s16le_mono_16k_gives_one_emotion_per_hop(ros_node, node_factory, speech):
    from audio_common_msgs.msg import AudioData
    node = node_factory()
    received = collect(ros_node, node.namespace)
    publisher = audio_publisher(ros_node, node.namespace)
    wait_for_subscriber(ros_node, publisher)
    chunks = pcm_chunks(speech, 'S16LE', chunk_frames=1024)            # 64 ms, audio_capture-sized
    publish_paced(ros_node, publisher, chunks, lambda c: AudioData(data=c), 1024 / 16000)
    expected = expected_windows(len(speech), 48000, int(HOP * 16000))
    assert spin_until(ros_node, lambda: len(received) >= expected, timeout=30), (len(received), node.log())
    spin_until(ros_node, lambda: False, timeout=1.0)                    # nothing extra may follow
    assert len(received) == expected
    for msg in received:
        check_emotion_fields(msg)
    assert sum(msg.voiced for msg in received) >= expected - 2         # it is speech, nearly wall to wall
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in received]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False)), np.diff(stamps)


def test_each_utterance_is_published_once_its_pause_comes_or_its_audio_stops(ros_node, node_factory, speech):
    from audio_common_msgs.msg import AudioData
    node = node_factory()
    windows = collect(ros_node, node.namespace)
    utterances = collect(ros_node, node.namespace, 'emotion/utterance')
    publisher = audio_publisher(ros_node, node.namespace)
    wait_for_subscriber(ros_node, publisher)
    # Speech, a 2 s pause, and a loud tone the audio stops in: that utterance ends when the stream goes quiet.
    tone = (0.3 * np.sin(np.arange(56000) / 3)).astype(np.float32)
    audio = np.concatenate([speech, np.zeros(32000, np.float32), tone])
    publish_paced(ros_node, publisher, pcm_chunks(audio, 'S16LE', chunk_frames=1024), lambda c: AudioData(data=c),
                  1024 / 16000)
    expected = expected_windows(len(audio), 48000, int(HOP * 16000))
    assert spin_until(ros_node, lambda: len(windows) >= expected and len(utterances) >= 2, timeout=30), \
        (len(windows), len(utterances), node.log())
    spin_until(ros_node, lambda: False, timeout=1.5)        # the quiet stream's utterance comes, then nothing more
    first_window, last_window = nanoseconds(windows[0].window_start), nanoseconds(windows[-1].header.stamp)
    spans = [(nanoseconds(u.window_start), nanoseconds(u.header.stamp)) for u in utterances]
    assert spans[0][0] == first_window and all(b[0] > a[1] for a, b in zip(spans, spans[1:], strict=False))
    pause_start = first_window + round(len(speech) / 16000 * 1e9)
    assert spans[-2][1] < pause_start <= spans[-1][0] and spans[-1][1] == last_window   # the tone, to the end
    for utterance, (start, end) in zip(utterances, spans, strict=True):
        probabilities = np.array(utterance.probabilities)
        assert utterance.voiced and utterance.model == windows[0].model
        assert list(utterance.labels) == list(windows[0].labels) and abs(probabilities.sum() - 1) < 1e-4
        assert utterance.label == utterance.labels[int(np.argmax(probabilities))]
        assert utterance.confidence == pytest.approx(probabilities.max(), abs=1e-6)
        assert utterance.window_duration >= (end - start) / 1e9      # its speech, and the pause scored with it
        assert 0 < utterance.inference_time < 5


def test_f32le_48k_stereo_with_audio_info_and_stamps(ros_node, node_factory, speech):
    import soxr
    from audio_common_msgs.msg import AudioDataStamped, AudioInfo
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    node = node_factory({'input_type': 'stamped'})
    info_pub = ros_node.create_publisher(
        AudioInfo, f'/{node.namespace}/audio/audio_info',
        QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
    info_pub.publish(AudioInfo(channels=2, sample_rate=48000, sample_format='F32LE', bitrate=48000 * 64,
                               coding_format='wave'))
    received = collect(ros_node, node.namespace)
    publisher = audio_publisher(ros_node, node.namespace, stamped=True)
    wait_for_subscriber(ros_node, publisher)
    time.sleep(0.5)   # the latched AudioInfo reaches the node before audio does
    audio_48k = soxr.resample(speech, 16000, 48000).astype(np.float32)
    chunks = pcm_chunks(audio_48k, 'F32LE', chunk_frames=960, channels=2)   # 20 ms
    start_ns = 1_700_000_000 * 10**9

    def stamped(index_and_chunk):
        index, chunk = index_and_chunk
        msg = AudioDataStamped()
        t = start_ns + index * 20_000_000
        msg.header.stamp.sec, msg.header.stamp.nanosec = t // 10**9, t % 10**9
        msg.header.frame_id = 'mic_link'
        msg.audio.data = chunk
        return msg
    publish_paced(ros_node, publisher, list(enumerate(chunks)), stamped, 0.02, speedup=2.0)
    resampled_len = len(soxr.resample(audio_48k, 48000, 16000))
    expected = expected_windows(resampled_len, 48000, 8000)
    assert spin_until(ros_node, lambda: len(received) >= expected - 1, timeout=30), (len(received), node.log())
    spin_until(ros_node, lambda: False, timeout=1.0)
    assert expected - 1 <= len(received) <= expected    # the resampler holds back a few ms
    first = received[0]
    assert first.header.frame_id == 'mic_link'
    # The first window ends 3 s of audio after the first stamp (minus one sample).
    end = first.header.stamp.sec * 10**9 + first.header.stamp.nanosec - start_ns
    assert end / 1e9 == pytest.approx(3.0, abs=0.02)
    for msg in received:
        check_emotion_fields(msg)


@pytest.mark.parametrize('case', ['one_frame_per_message_no_audio_info', 'byte_chunks_with_mp3_audio_info'])
def test_mp3_from_audio_capture_is_decoded_and_matches_the_same_speech_as_pcm(ros_node, node_factory, speech, case):
    """audio_capture's default: MP3, about one MPEG frame per message. Tolerance against the same
    speech as PCM (offline, same pipeline): window count within one, at least 3 in 4 labels equal and
    probabilities within 0.06 on average; LAME shifts the audio by about 70 ms and codes it lossily."""
    pytest.importorskip('av')
    pytest.importorskip('lameenc')
    from audio_common_msgs.msg import AudioData, AudioInfo
    from mp3_fixture import byte_chunks, encode_mp3, mp3_frames
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    import ser_models
    from ser_models.pipeline import EmotionPipeline, PipelineSettings
    from ser_models.stream import StreamFormat
    data = encode_mp3(speech, 16000, kbps=64)
    node = node_factory()
    if case.startswith('byte_chunks'):
        chunks = byte_chunks(data, 500)
        info = ros_node.create_publisher(AudioInfo, f'/{node.namespace}/audio/audio_info', QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
        info.publish(AudioInfo(channels=1, sample_rate=16000, sample_format='S16LE', bitrate=64000,
                               coding_format='mp3'))
    else:
        chunks = mp3_frames(data)
    received = collect(ros_node, node.namespace)
    publisher = audio_publisher(ros_node, node.namespace)
    wait_for_subscriber(ros_node, publisher)
    time.sleep(0.5)   # a latched AudioInfo reaches the node before audio does
    publish_paced(ros_node, publisher, chunks, lambda c: AudioData(data=c), len(speech) / 16000 / len(chunks))

    reference = EmotionPipeline(ser_models.load(default_weights()), StreamFormat(), PipelineSettings(hop=HOP))
    pcm = reference.classify(reference.push(np.clip(speech * 32767, -32768, 32767).astype('<i2').tobytes(), 0, 1))
    assert spin_until(ros_node, lambda: len(received) >= len(pcm) - 1, timeout=30), (len(received), node.log())
    spin_until(ros_node, lambda: False, timeout=1.0)
    assert abs(len(received) - len(pcm)) <= 1
    pairs = [(a, b) for a, b in zip(received, pcm, strict=False) if a.voiced and b.voiced]
    assert len(pairs) >= len(pcm) - 2
    agree = np.mean([a.label == b.label for a, b in pairs])
    difference = np.mean([np.abs(np.array(a.probabilities) - b.probabilities).mean() for a, b in pairs])
    assert agree >= 0.75 and difference <= 0.06, (agree, difference)
    declared = case.startswith('byte_chunks')
    values = diagnostics_values(ros_node, node.namespace, lambda v: v.get('input format', '').startswith('mp3'))
    assert values['input format'] == ('mp3 (declared), 16000 Hz, 1 ch as decoded' if declared
                                      else 'mp3 (detected from the bytes), 16000 Hz, 1 ch as decoded'), values
    assert values['rejected'] == '0' and values['mp3 frames dropped'] == '0'
    assert ('the bytes are MP3' in node.log()) != declared


def test_ros4hri_expression_per_voice_follows_each_emotion(ros_node, node_factory, speech):
    from audio_common_msgs.msg import AudioData
    from hri_msgs.msg import Expression

    from ser_models.affect import AFFECT, valence_arousal
    voice = f'speaker_{os.getpid()}'
    node = node_factory({'publish_hri': True, 'hri_voice_ids': f'[{voice}]'})
    expressions = []
    ros_node.create_subscription(Expression, f'/humans/voices/{voice}/expression', expressions.append, 100)
    received = collect(ros_node, node.namespace)
    publisher = audio_publisher(ros_node, node.namespace)
    wait_for_subscriber(ros_node, publisher)
    publish_paced(ros_node, publisher, pcm_chunks(speech, 'S16LE', 1024), lambda c: AudioData(data=c), 1024 / 16000)
    voiced = expected_windows(len(speech), 48000, 8000)
    assert spin_until(ros_node, lambda: len(received) >= voiced and len(expressions) >= sum(
        m.voiced for m in received), timeout=30), (len(received), len(expressions), node.log())
    by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in received if m.voiced}
    assert len(expressions) == len(by_stamp)
    for msg in expressions:
        emotion = by_stamp[(msg.header.stamp.sec, msg.header.stamp.nanosec)]
        assert msg.expression == AFFECT[emotion.label][0]
        assert msg.confidence == pytest.approx(emotion.confidence)
        assert (msg.valence, msg.arousal) == pytest.approx(valence_arousal(list(emotion.labels),
                                                                           emotion.probabilities), abs=1e-6)
        assert -1 <= msg.valence <= 1 and -1 <= msg.arousal <= 1


def test_ros4hri_settings_that_cannot_work_stop_the_node_with_the_reason(node_factory):
    node = node_factory({'publish_hri': True, 'hri_voice_ids': '[a, b]'})
    assert node.process.wait(timeout=30) != 0
    assert 'hri_voice_ids must give one distinct id' in node.log()


def diagnostics_values(ros_node, namespace, predicate, timeout=10.0):
    from diagnostic_msgs.msg import DiagnosticArray
    latest = {}

    def on_diag(array):
        for status in array.status:
            if status.name.startswith('ser_node') and status.hardware_id.startswith(f'/{namespace}/'):
                latest.clear()
                latest.update({kv.key: kv.value for kv in status.values})
                latest['_level'] = status.level
    sub = ros_node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    spin_until(ros_node, lambda: bool(latest) and predicate(latest), timeout)
    ros_node.destroy_subscription(sub)
    return latest


def test_malformed_messages_are_counted_and_good_audio_still_classified(ros_node, node_factory, speech):
    from audio_common_msgs.msg import AudioData
    node = node_factory({'sample_format': 'F32LE'})
    received = collect(ros_node, node.namespace)
    publisher = audio_publisher(ros_node, node.namespace)
    wait_for_subscriber(ros_node, publisher)
    bad = [b'', np.array([0.1, np.nan, 0.2], dtype='<f4').tobytes(), np.array([np.inf] * 64, dtype='<f4').tobytes()]
    for payload in bad:
        publisher.publish(AudioData(data=payload))
    # Odd byte counts: a torn sample carries over and nothing is lost.
    raw = speech.astype('<f4').tobytes()
    cuts = list(range(0, len(raw), 3333)) + [len(raw)]
    chunks = [raw[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    publish_paced(ros_node, publisher, chunks, lambda c: AudioData(data=c), 3333 / 4 / 16000)
    expected = expected_windows(len(speech), 48000, 8000)
    assert spin_until(ros_node, lambda: len(received) >= expected, timeout=30), (len(received), node.log())
    values = diagnostics_values(ros_node, node.namespace, lambda v: v.get('rejected') == '3')
    assert values.get('rejected') == '3', values
    assert 'NaN/Inf' in values['last rejection'] or 'empty' in values['last rejection']
    from diagnostic_msgs.msg import DiagnosticStatus
    assert values['_level'] == DiagnosticStatus.WARN
    assert int(values['windows published']) == expected
    assert 'rejected audio message' in node.log()


def set_parameters(ros_node, namespace, **values):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    client = ros_node.create_client(SetParameters, f'/{namespace}/ser_node/set_parameters')
    assert spin_until(ros_node, client.service_is_ready, timeout=15)
    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    future = client.call_async(request)
    assert spin_until(ros_node, future.done, timeout=30)
    return future.result().results


def test_live_parameter_changes_are_validated(ros_node, node_factory, speech, tmp_path):
    from audio_common_msgs.msg import AudioData
    node = node_factory()
    received = collect(ros_node, node.namespace)
    publisher = audio_publisher(ros_node, node.namespace)
    wait_for_subscriber(ros_node, publisher)
    (result,) = set_parameters(ros_node, node.namespace, window=10.0)
    assert not result.successful and 'model window' in result.reason
    (result,) = set_parameters(ros_node, node.namespace, hop=4.0)
    assert not result.successful and 'longer than the window' in result.reason
    (result,) = set_parameters(ros_node, node.namespace, utterance_max_duration=0.5)
    assert not result.successful and 'must be longer than utterance_end_silence' in result.reason
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'model.json').write_text(json.dumps({'format_version': 1}))
    (result,) = set_parameters(ros_node, node.namespace, weights=str(broken))
    assert not result.successful and 'model.json' in result.reason
    results = set_parameters(ros_node, node.namespace, hop=1.0, smoothing=0.5)
    assert all(r.successful for r in results), [r.reason for r in results]
    chunks = pcm_chunks(speech, 'S16LE', chunk_frames=1024)
    publish_paced(ros_node, publisher, chunks, lambda c: AudioData(data=c), 1024 / 16000)
    expected = expected_windows(len(speech), 48000, 16000)      # hop is now 1 s
    assert spin_until(ros_node, lambda: len(received) >= expected, timeout=30), (len(received), node.log())
    spin_until(ros_node, lambda: False, timeout=1.0)
    assert len(received) == expected
    assert 'rejected parameter change' in node.log()


def test_bad_weights_stop_the_node_at_start_with_a_clear_error(node_factory, tmp_path):
    node = node_factory({'weights': str(tmp_path / 'nowhere')})
    assert node.process.wait(timeout=30) == 1
    log = node.log()
    assert 'cannot start' in log and 'nowhere' in log and 'Traceback' not in log


@pytest.mark.parametrize('model', ['lmu', 'timnet'])   # a network; an ensemble, its members installed inside it
def test_console_script_with_params_file_picks_a_shipped_model(ros_node, speech, model):
    """`ser_node --ros-args --params-file config/ser.yaml -p model:=lmu`, as the README shows."""
    from audio_common_msgs.msg import AudioData
    node = NodeProcess(f'params_file_{model}_{os.getpid()}', {'model': model, 'qos_reliability': 'reliable'},
                       params_file=str(REPO / 'config' / 'ser.yaml'))
    try:
        received = collect(ros_node, node.namespace)
        publisher = audio_publisher(ros_node, node.namespace)
        wait_for_subscriber(ros_node, publisher)
        chunks = pcm_chunks(speech[:64000], 'S16LE', chunk_frames=1024)
        publish_paced(ros_node, publisher, chunks, lambda c: AudioData(data=c), 1024 / 16000)
        assert spin_until(ros_node, lambda: len(received) >= 3, timeout=30), node.log()
        shipped = json.loads((REPO / 'weights' / model / 'model.json').read_text())['model_id']
        assert {m.model for m in received} == {shipped}
        assert f'share/ser_ros/weights/{model}' in node.log()
    finally:
        node.stop()


def test_unknown_model_is_refused_and_missing_cuda_falls_back_to_cpu(node_factory):
    refused = node_factory({'model': 'wav2vec2', 'weights': None})
    assert refused.process.wait(timeout=30) == 1
    assert 'model must be one of' in refused.log()
    bad_mix = node_factory({'spectral_mix': 'int8'})
    assert bad_mix.process.wait(timeout=30) == 1
    assert 'spectral_mix must be one of' in bad_mix.log() and 'Traceback' not in bad_mix.log()
    out_of_range = node_factory({'hop': 100.0})
    assert out_of_range.process.wait(timeout=30) == 1
    assert 'cannot start' in out_of_range.log() and 'hop' in out_of_range.log()
    assert 'Traceback' not in out_of_range.log()
    fallback = node_factory({'device': 'cuda'})
    assert spin_until_log(fallback, 'classifying'), fallback.log()
    assert 'using cpu' in fallback.log() and fallback.process.poll() is None


def spin_until_log(node, text, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in node.log():
            return True
        time.sleep(0.1)
    return False


def test_one_node_serves_several_audio_topics_each_with_its_own_emotion_topic(ros_node, node_factory, speech):
    """audio_topics: every stream keeps its own format, windows and output, batched in one model call."""
    import soxr
    from audio_common_msgs.msg import AudioData, AudioInfo
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from ser_msgs.msg import Emotion
    node = node_factory({'audio_topics': f'[left/audio, right/audio, /extra_{os.getpid()}/mic]'})
    ns = node.namespace
    topics = {'left': f'/{ns}/left', 'right': f'/{ns}/right', 'extra': f'/extra_{os.getpid()}'}
    info = ros_node.create_publisher(
        AudioInfo, topics['right'] + '/audio_info',
        QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
    info.publish(AudioInfo(channels=1, sample_rate=48000, sample_format='F32LE', coding_format='wave'))
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    received = {name: [] for name in topics}
    publishers = {}
    for name, base in topics.items():
        ros_node.create_subscription(Emotion, base + '/emotion', received[name].append, 100)
        publishers[name] = ros_node.create_publisher(AudioData, base + ('/mic' if name == 'extra' else '/audio'), qos)
    for publisher in publishers.values():
        wait_for_subscriber(ros_node, publisher)
    time.sleep(0.5)
    left = pcm_chunks(speech, 'S16LE', chunk_frames=1024)
    right = pcm_chunks(soxr.resample(speech, 16000, 48000).astype(np.float32), 'F32LE', chunk_frames=3072)
    extra = pcm_chunks(speech[: 16000 * 4], 'S16LE', chunk_frames=1024)
    interleaved = [item for group in zip(left, right, strict=False) for item in (('left', group[0]),
                                                                                 ('right', group[1]))]
    interleaved += [('left', c) for c in left[len(right):]] + [('right', c) for c in right[len(left):]]
    interleaved += [('extra', c) for c in extra]
    publish_paced(ros_node, _Router(publishers), interleaved, lambda item: item, 1024 / 16000 / 2)
    expected = {'left': expected_windows(len(speech), 48000, 8000), 'extra': expected_windows(16000 * 4, 48000, 8000)}
    assert spin_until(ros_node, lambda: len(received['left']) >= expected['left']
                      and len(received['extra']) >= expected['extra']
                      and len(received['right']) >= expected['left'] - 1, timeout=40), (
        {k: len(v) for k, v in received.items()}, node.log())
    spin_until(ros_node, lambda: False, timeout=1.0)
    assert len(received['left']) == expected['left'] and len(received['extra']) == expected['extra']
    assert expected['left'] - 1 <= len(received['right']) <= expected['left']   # the resampler holds back a few ms
    for messages in received.values():
        for msg in messages:
            check_emotion_fields(msg)
    # The same speech through two formats gives (nearly) the same labels, window for window.
    same = sum(a.label == b.label for a, b in zip(received['left'], received['right'], strict=False))
    assert same >= len(received['right']) - 2
    values = diagnostics_values(ros_node, ns, lambda v: v.get('input topic') == topics['right'] + '/audio'
                                and v.get('windows published', '0') != '0')
    assert values['streams'] == '3' and values['output topic'] == topics['right'] + '/emotion'
    assert values['input format'].startswith('48000 Hz')


class _Router:
    """A stand-in publisher for publish_paced: sends each (stream, chunk) to that stream's topic."""

    def __init__(self, publishers):
        from audio_common_msgs.msg import AudioData
        self.publishers, self.AudioData = publishers, AudioData

    def publish(self, item):
        name, chunk = item
        self.publishers[name].publish(self.AudioData(data=chunk))


def test_audio_topics_that_would_share_an_emotion_topic_are_refused(node_factory):
    node = node_factory({'audio_topics': '[mic/audio, mic/audio_stamped]'})
    assert node.process.wait(timeout=30) == 1
    assert 'one emotion topic' in node.log() and 'Traceback' not in node.log()


def test_live_switches_of_model_backend_and_device_take_effect_without_losing_a_window(ros_node, node_factory,
                                                                                        speech):
    from audio_common_msgs.msg import AudioData
    node = node_factory()
    received = collect(ros_node, node.namespace)
    publisher = audio_publisher(ros_node, node.namespace)
    wait_for_subscriber(ros_node, publisher)
    chunks = pcm_chunks(speech, 'S16LE', chunk_frames=1024)
    switches = [({'weights': '', 'model': 'lmu'}, '(onnxruntime, cpu)'), ({'backend': 'torch'}, '(torch, cpu)'),
                ({'device': 'cpu', 'backend': 'onnxruntime', 'model': 'cktim'}, '(onnxruntime, cpu)')]
    for segment, (change, switched) in enumerate(switches, start=1):
        results = set_parameters(ros_node, node.namespace, **change)
        assert all(r.successful for r in results), [r.reason for r in results]
        assert spin_until_log(node, f'{switched} from'), node.log()[-1000:]
        before = len(received)
        publish_paced(ros_node, publisher, chunks, lambda c: AudioData(data=c), 1024 / 16000)
        # The stream runs on across switches: every hop of the audio so far yields one message.
        due = expected_windows(segment * len(speech), 48000, int(HOP * 16000))
        assert spin_until(ros_node, lambda due=due: len(received) >= due, timeout=60), (len(received), due, node.log())
        model = change.get('model', 'lmu')
        assert {m.model.split('-')[0] for m in received[before + 6:]} == {model}
    spin_until(ros_node, lambda: False, timeout=1.0)
    assert len(received) == due
    # spectral_mix:=auto (the default) runs the mix the CkTIM's model.json declares.
    from ser_models import native
    from ser_models.predictor import declared_spectral_mix
    declared = declared_spectral_mix(ser_models.read_model_json(REPO / 'weights' / 'cktim'))
    expected = declared if native.library()[0] else 'onnx'
    values = diagnostics_values(ros_node, node.namespace, lambda v: v.get('spectral mix') == expected)
    assert values.get('spectral mix') == expected, values
