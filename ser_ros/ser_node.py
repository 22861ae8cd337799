"""ser_node: audio_common audio in, ser_msgs/Emotion out on /emotion (each window) and
/emotion/utterance (each utterance between pauses, scored as a clip: ser_models.utterance).

A thin ROS 2 layer over ser_models: subscription callbacks decode and buffer audio
(ser_models.stream) and queue finished windows; a worker thread classifies the windows of every
stream in one batched call (ser_models.pipeline.classify_streams) and publishes, so inference never
blocks the executor. One node serves any number of audio topics (parameter audio_topics); each
stream's AudioInfo and Emotion topics sit beside its audio topic. Diagnostics go to /diagnostics
once a second, one status per stream.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque

import numpy as np
import rclpy
from audio_common_msgs import msg as audio_msgs
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ser_msgs.msg import Emotion
from threadpoolctl import threadpool_limits

import ser_models
from ser_models.affect import AFFECT, expression, valence_arousal
from ser_models.pipeline import EmotionPipeline, PendingWindow, PipelineSettings, WindowResult, classify_streams
from ser_models.stream import AudioFormatError, StreamFormat
from ser_models.utterance import Utterance

from . import audio_flavour
from .model_paths import DEFAULT_MODEL, MODEL_CHOICES, MODELS, resolve_model_dir
from .topics import sibling_topic, voice_id

# The audio_capture defaults: /audio/audio and /audio/audio_info (names relative to the namespace).
DEFAULT_REMAPS = ['--ros-args', '-r', 'audio:=audio/audio', '-r', 'audio_info:=audio/audio_info']
LATENCY_SAMPLES = 500
QUIET_FLUSH_SECONDS = 0.5    # a stream without audio this long hands out the windows it holds, then its utterance
UTTERANCE_TOPIC = 'utterance'    # under each stream's emotion topic
# any of these turns diagnostics WARN
PROBLEM_COUNTERS = ('rejected', 'mp3_frames_dropped', 'windows_dropped', 'windows_failed')


class ConfigError(ValueError):
    """A parameter value the node cannot run with; the message says which and why."""


def describe(text: str, read_only: bool = False, float_range=None) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=text, read_only=read_only)
    if float_range:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float_range[0], to_value=float_range[1])]
    return descriptor


class AudioInput:
    """One audio topic: its subscriptions, its pipeline, its Emotion publisher, queue and counters."""

    def __init__(self, node: SerNode, topic: str, pipeline: EmotionPipeline, fmt: StreamFormat, voice: str = ''):
        self.node = node
        self.pipeline = pipeline
        self.format = fmt
        self.queue: deque[PendingWindow] = deque()
        self.counters = dict(messages=0, bytes=0, rejected=0, windows_classified=0, windows_unvoiced=0,
                             windows_dropped=0, windows_failed=0, windows_published=0, utterances_published=0,
                             format_changes=0, mp3_frames_dropped=0)
        self.windows_skipped_unvoiced = 0
        self.last_rejection = ''
        self.last_audio = time.monotonic()
        self.rate_window = (time.monotonic(), 0, 0)
        self.frame_id = node.p['frame_id'] or 'audio'
        p = node.p
        audio_qos = QoSProfile(depth=p['qos_depth'], reliability=(
            ReliabilityPolicy.RELIABLE if p['qos_reliability'] == 'reliable' else ReliabilityPolicy.BEST_EFFORT))
        if node.flavour == audio_flavour.MGONZS13:
            # mgonzs13/audio_common: format inline in every message (best effort takes its SensorDataQoS).
            self.subscription = node.create_subscription(audio_msgs.AudioStamped, topic, self._on_audio_stamped,
                                                         audio_qos)
        elif p['input_type'] == 'stamped':
            self.subscription = node.create_subscription(audio_msgs.AudioDataStamped, topic, self._on_stamped,
                                                         audio_qos)
        else:
            self.subscription = node.create_subscription(audio_msgs.AudioData, topic, self._on_data, audio_qos)
        # Latched AudioInfo from recent audio_capture, and volatile AudioInfo from older drivers.
        for durability, reliability in ((DurabilityPolicy.TRANSIENT_LOCAL, ReliabilityPolicy.RELIABLE),
                                        (DurabilityPolicy.VOLATILE, ReliabilityPolicy.BEST_EFFORT)):
            if node.flavour != audio_flavour.ROS_DRIVERS:
                break
            # No QoS event handlers: one of the pair is always "incompatible", and each handler is one
            # more entity in every executor wait (py-spy, 60 streams: handlers took 12 % of the node's CPU).
            node.create_subscription(audio_msgs.AudioInfo, sibling_topic(topic, 'audio_info'), self._on_info,
                                     QoSProfile(depth=1, durability=durability, reliability=reliability),
                                     event_callbacks=SubscriptionEventCallbacks(use_default_callbacks=False))
        self.publisher = node.create_publisher(Emotion, sibling_topic(topic, 'emotion'), 10,
                                               event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))
        self.utterance_publisher = node.create_publisher(
            Emotion, f'{self.publisher.topic_name}/{UTTERANCE_TOPIC}', 10,
            event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))
        self.topic = self.subscription.topic_name
        self.hri_publisher = None
        if node.p['publish_hri']:
            from hri_msgs.msg import Expression  # checked importable at start
            self.voice = voice or voice_id(self.topic)
            self.hri_publisher = node.create_publisher(Expression, f'/humans/voices/{self.voice}/expression', 10)

    def _on_data(self, msg) -> None:
        self._ingest(msg.data, 0, '')

    def _on_stamped(self, msg) -> None:
        stamp = msg.header.stamp
        self._ingest(msg.audio.data, stamp.sec * 1_000_000_000 + stamp.nanosec, msg.header.frame_id)

    def _on_audio_stamped(self, msg) -> None:
        """mgonzs13 AudioStamped: the typed array its info.format names, in the format it states."""
        try:
            fmt = audio_flavour.stamped_format(msg.audio.info, self.format.coding_format)
        except AudioFormatError as error:
            with self.node.lock:
                self.counters['messages'] += 1
                return self._reject(str(error))
        if fmt != self.format:
            self._use_format(fmt, 'the stream says')
            if fmt != self.format:   # refused (and counted as rejected): the message cannot be decoded
                with self.node.lock:
                    self.counters['messages'] += 1
                return
        stamp = msg.header.stamp
        self._ingest(audio_flavour.stamped_samples(msg.audio), stamp.sec * 1_000_000_000 + stamp.nanosec,
                     msg.header.frame_id)

    def _reject(self, reason: str) -> None:
        self.counters['rejected'] += 1
        self.last_rejection = reason
        self.node.get_logger().warning(f'rejected audio message on {self.topic}: {reason}',
                                       throttle_duration_sec=5.0)

    def _ingest(self, data, stamp_ns: int, frame_id: str) -> None:
        node = self.node
        arrival_ns = node.get_clock().now().nanoseconds
        with node.lock:
            self.counters['messages'] += 1
            self.counters['bytes'] += len(data)
            if len(data) == 0:
                return self._reject('empty message')
            stream = self.pipeline.stream
            detected = stream.detected
            try:
                windows = self.pipeline.push(data, stamp_ns, arrival_ns)
            except AudioFormatError as error:
                return self._reject(str(error))
            finally:
                self._note_stream_events(stream, detected)
            self.frame_id = node.p['frame_id'] or frame_id or 'audio'
            self.last_audio = time.monotonic()
            self.enqueue(windows)

    def enqueue(self, windows: list[PendingWindow]) -> None:
        """Queue windows for the inference worker, dropping the oldest past queue_size (caller holds the lock)."""
        node = self.node
        for window in windows:
            if len(self.queue) >= node.p['queue_size']:
                dropped = self.queue.popleft()
                # A speaker restart rides on to the next window instead of being lost with this one.
                (self.queue[0] if self.queue else window).new_speaker |= dropped.new_speaker
                self.counters['windows_dropped'] += 1
                node.get_logger().warning(f'inference is falling behind on {self.topic}: dropped the oldest '
                                          'window', throttle_duration_sec=5.0)
            self.queue.append(window)
        if windows:
            node.queue_ready.notify()

    def _note_stream_events(self, stream, detected_before: str) -> None:
        if stream.detected and not detected_before:
            self.node.get_logger().info(f'{self.topic}: the bytes are MP3 (no AudioInfo said so); decoding them as '
                                        'MP3')
        problems = stream.take_problems()
        if problems:
            self.counters['mp3_frames_dropped'] += len(problems)
            self.last_rejection = problems[-1]
            self.node.get_logger().warning(f'{self.topic}: {problems[-1]}', throttle_duration_sec=5.0)

    def _on_info(self, info) -> None:
        self._use_format(StreamFormat(int(info.sample_rate), int(info.channels), info.sample_format or 'S16LE',
                                      info.coding_format or 'wave'), 'AudioInfo says')

    def _use_format(self, fmt: StreamFormat, source: str) -> None:
        with self.node.lock:
            if fmt == self.format:
                return
            try:
                self.pipeline.set_format(fmt)
            except AudioFormatError as error:   # decoding goes on in the format it had, and says so
                self._reject(f'{source} the stream is unusable: {error}')
                return
            self.format = fmt
            self.counters['format_changes'] += 1
            self.node.get_logger().info(f'{self.topic}: {source} {self.pipeline.stream.describe}')

    def publish(self, results: list[WindowResult], frame_id: str) -> None:
        """Publish one batch's results and the utterances they close (called by the worker) and count them
        (caller holds no lock)."""
        publish_unvoiced = self.node.p['publish_unvoiced']
        published = []
        for result in results:
            if not result.error and (result.voiced or publish_unvoiced):
                published.append(result)
                self.publisher.publish(emotion_message(result, frame_id))
                if self.hri_publisher is not None and result.probabilities is not None:
                    self.hri_publisher.publish(expression_message(result, frame_id))
            self.publish_utterances(result.utterances, frame_id)
        failed = [r for r in results if r.error]
        if failed:
            self.node.get_logger().error(f'{self.topic}: {len(failed)} window(s) not classified: {failed[0].error}',
                                         throttle_duration_sec=5.0)
        with self.node.lock:
            classified = [r for r in published if r.voiced]
            self.counters['windows_classified'] += len(classified)
            self.counters['windows_unvoiced'] += len(published) - len(classified)
            self.counters['windows_published'] += len(published)
            self.counters['windows_failed'] += len(failed)
            self.windows_skipped_unvoiced += len(results) - len(published) - len(failed)
            self.node.latencies.extend(r.inference_time for r in classified)

    def wants_utterances(self) -> bool:
        """Whether anyone listens on emotion/utterance: a fused model's utterance costs another openSMILE
        pass over its audio, so nobody listening costs nothing."""
        return self.utterance_publisher.get_subscription_count() > 0

    def publish_utterances(self, utterances: list[Utterance], frame_id: str) -> None:
        for utterance in utterances:
            self.utterance_publisher.publish(emotion_message(utterance, frame_id))
        if utterances:
            with self.node.lock:
                self.counters['utterances_published'] += len(utterances)

    def status(self, now: float, shared: dict) -> DiagnosticStatus:
        """This stream's diagnostics (caller holds the node lock)."""
        started, messages0, bytes0 = self.rate_window
        elapsed = max(now - started, 1e-6)
        rate = ((self.counters['messages'] - messages0) / elapsed, (self.counters['bytes'] - bytes0) / elapsed)
        self.rate_window = (now, self.counters['messages'], self.counters['bytes'])
        values = {
            'input topic': self.topic,
            'output topic': self.publisher.topic_name,
            'utterance topic': self.utterance_publisher.topic_name,
            'input format': self.pipeline.stream.describe,
            'input messages/s': f'{rate[0]:.1f}',
            'input bytes/s': f'{rate[1]:.0f}',
            **{key.replace('_', ' '): str(value) for key, value in self.counters.items()},
            'windows skipped (unvoiced)': str(self.windows_skipped_unvoiced),
            'windows with functionals computed alone (one pass late)': str(self.pipeline.functionals_fallbacks),
            'one-pass functionals problem': self.pipeline.one_pass_problem,
            'utterances dropped (audio not finite)': str(self.pipeline.utterances_dropped),
            'samples dropped (decode)': str(self.pipeline.stream.samples_dropped),
            'last rejection': self.last_rejection,
            **shared,
        }
        problem = any(self.counters[key] for key in PROBLEM_COUNTERS)
        return DiagnosticStatus(name=f'{self.node.get_name()}: speech emotion recognition', hardware_id=self.topic,
                                level=DiagnosticStatus.WARN if problem else DiagnosticStatus.OK,
                                message='input rejected or windows dropped' if problem else 'ok',
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])


class SerNode(Node):
    PARAMETERS = {
        # name: (default, description, read_only)
        'model': (DEFAULT_MODEL, f'shipped model: {MODEL_CHOICES}; an *_egemaps model fuses its network with an '
                                  'eGeMAPS SVM', False),
        'weights': ('', 'artifact directory overriding the shipped weights of `model`', False),
        'backend': ('onnxruntime', 'onnxruntime (no torch needed) or torch', False),
        'device': ('auto', 'auto, cpu, cuda or mps (a device the backend cannot use here falls back to cpu '
                           'with a warning)', False),
        'threads': (1, 'inference threads', True),
        'spectral_mix': ('auto', 'CkTIM on onnxruntime: auto (the precision the model declares, float16 where it '
                                 'declares none), the native spectral-mix kernel with float16 or float32 kernel '
                                 'spectra, or onnx (the exact graph operators; also where the native library is '
                                 'missing, with a warning)', False),
        'audio_topics': (['audio'], 'audio topics to classify, one stream each; a stream reads AudioInfo '
                                    'from audio_info and publishes on emotion, both beside its audio topic', True),
        'input_type': ('data', 'data: audio_common_msgs/AudioData; stamped: AudioDataStamped (ros-drivers '
                               'audio_common; with mgonzs13 audio_common the input is always AudioStamped)', True),
        'sample_rate': (16000, 'stream rate in Hz until an AudioInfo arrives', True),
        'channels': (1, 'interleaved channels until an AudioInfo arrives', True),
        'sample_format': ('S16LE', 'S16LE, S24LE, S32LE, F32LE, U8 ... until an AudioInfo arrives', True),
        'coding_format': ('wave', 'wave (raw PCM) or mp3 until an AudioInfo arrives; MP3 bytes declared as PCM '
                                  'are recognised and decoded as MP3', True),
        'channel': (-1, 'channel to use; -1 mixes all channels down to mono', True),
        'frame_id': ('', 'frame_id of the output; empty: from the audio header (stamped) or "audio"', True),
        'qos_reliability': ('best_effort', 'audio subscription: best_effort (takes both kinds) or reliable', True),
        'qos_depth': (100, 'audio subscription queue depth (covers a model reload of ~1.5 s)', True),
        'queue_size': (16, 'windows per stream waiting for inference; beyond it the oldest are dropped', True),
        'window': (0.0, "seconds per window; 0: the model's training window", False),
        'hop': (0.5, 'seconds between windows', False),
        'vad_threshold_db': (-45.0, 'energy gate: frame level (dBFS) that counts as speech', False),
        'vad_min_voiced_fraction': (0.1, 'energy gate: share of 25 ms frames above the threshold', False),
        'publish_unvoiced': (True, 'publish windows without speech with voiced=false (else skip them)', False),
        'smoothing': (0.0, 'EMA factor on probabilities over time: 0 off, 0.9 heavy', False),
        'speaker_reset_silence': (30.0, 'models on speaker-normalised features: seconds without voice after '
                                        'which the stream starts its speaker statistics anew; 0 never', False),
        'utterance_end_silence': (1.0, 'seconds without speech that end an utterance: emotion/utterance then '
                                       'publishes its audio scored as a clip', False),
        'utterance_max_duration': (10.0, 'seconds after which an utterance is published though speech goes on',
                                   False),
        'publish_hri': (False, 'also publish ROS4HRI hri_msgs/Expression per voice on '
                               '/humans/voices/<id>/expression (voiced windows)', True),
        'hri_voice_ids': (['auto'], 'ROS4HRI voice id of each audio topic, in order; auto: its namespace '
                                    '(/front/audio -> front)', True),
        'diagnostics_period': (1.0, 'seconds between /diagnostics messages', True),
    }

    def __init__(self, **kwargs):
        super().__init__('ser_node', **kwargs)
        ranges = {'hop': (0.05, 10.0), 'window': (0.0, 30.0), 'vad_threshold_db': (-120.0, 0.0),
                  'vad_min_voiced_fraction': (0.0, 1.0), 'smoothing': (0.0, 0.99),
                  'speaker_reset_silence': (0.0, 3600.0), 'utterance_end_silence': (0.1, 60.0),
                  'utterance_max_duration': (0.5, 3600.0)}
        for name, (default, text, read_only) in self.PARAMETERS.items():
            self.declare_parameter(name, default, describe(text, read_only, ranges.get(name)))
        self.p = {name: self.get_parameter(name).value for name in self.PARAMETERS}
        self.flavour = audio_flavour.detect()
        self.lock = threading.RLock()            # streams, queues, counters
        self.inference_lock = threading.Lock()   # held while a batch is classified; a model switch waits for it
        self.queue_ready = threading.Condition(self.lock)
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)

        self.predictor, self.model_dir = self._load_predictor(self.p)
        topics = self._validate_stream_settings(self.p)
        fmt = StreamFormat(self.p['sample_rate'], self.p['channels'], self.p['sample_format'], self.p['coding_format'])
        voices = self._voice_ids(self.p, topics)
        self.inputs: list[AudioInput] = []
        for topic, voice in zip(topics, voices, strict=True):
            try:
                pipeline = EmotionPipeline(self.predictor, fmt, self._pipeline_settings(self.p))
            except (ValueError, AudioFormatError) as error:
                raise ConfigError(str(error)) from None
            self.inputs.append(AudioInput(self, topic, pipeline, fmt, voice))
        outputs = [stream.publisher.topic_name for stream in self.inputs]
        if len(set(outputs)) < len(outputs):
            raise ConfigError(f'audio_topics {topics} put two streams on one emotion topic ({outputs}); '
                              'give each audio topic its own namespace')
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(self.p['diagnostics_period'], self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._running = True
        self._worker = threading.Thread(target=self._inference_loop, name='ser_inference', daemon=True)
        self._worker.start()
        streams = ', '.join(f'{s.topic} -> {s.publisher.topic_name}' for s in self.inputs)
        self.get_logger().info(
            f'audio_common_msgs: {self.flavour} flavour; classifying {streams} with {self.predictor.model_id} '
            f'({self.predictor.backend}, '
            f'{self.predictor.device}) from {self.model_dir}; window {self.inputs[0].pipeline.window_seconds:.2f} s, '
            f'hop {self.p["hop"]:.2f} s')

    # ----------------------------------------------------------------- configuration
    @staticmethod
    def _pipeline_settings(p: dict) -> PipelineSettings:
        return PipelineSettings(**{name: p[name] for name in PipelineSettings.__dataclass_fields__})

    @staticmethod
    def _voice_ids(p: dict, topics: list[str]) -> list[str]:
        """The ROS4HRI voice id of each stream ('' = from its topic), checked when publish_hri is on."""
        ids = [str(v) for v in p['hri_voice_ids']]
        if ids == ['auto']:
            return [''] * len(topics)
        if not p['publish_hri']:
            return [''] * len(topics)
        if len(ids) != len(topics) or len(set(ids)) < len(ids) or \
                any(not v or not v.replace('_', 'a').isalnum() for v in ids):
            raise ConfigError(f'hri_voice_ids must give one distinct id (letters, digits, _) per audio topic '
                              f'{topics}, got {ids}')
        return ids

    def _load_predictor(self, p: dict):
        if p['backend'] not in ser_models.BACKENDS:
            raise ConfigError(f"backend must be one of {ser_models.BACKENDS}, got {p['backend']!r}")
        if p['spectral_mix'] not in ser_models.SPECTRAL_MIX_CHOICES:
            raise ConfigError(f"spectral_mix must be one of {ser_models.SPECTRAL_MIX_CHOICES}, "
                              f"got {p['spectral_mix']!r}")
        if not p['weights'] and p['model'] not in MODELS:
            raise ConfigError(f"model must be one of {MODELS}, got {p['model']!r}")
        try:
            model_dir = resolve_model_dir(p['model'], p['weights'])
            device, warning = ser_models.resolve_device(p['device'], p['backend'])
        except (FileNotFoundError, ValueError) as error:
            raise ConfigError(str(error)) from None
        if warning:
            self.get_logger().warning(warning)
        try:
            predictor = ser_models.load(model_dir, backend=p['backend'], device=device, threads=p['threads'],
                                        spectral_mix=p['spectral_mix'])
        except (ser_models.ArtifactError, ImportError) as error:   # ImportError: a fused model without openSMILE
            raise ConfigError(f'cannot load {model_dir}: {error}') from None
        try:
            EmotionPipeline.check_model(predictor)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if getattr(predictor, 'folding_problem', ''):
            self.get_logger().warning(f'{predictor.model_id}: no folded graph cached ({predictor.folding_problem}); '
                                      'folded in this process instead, which raises its peak memory')
        if getattr(predictor, 'native_problem', ''):
            self.get_logger().warning(f'{predictor.model_id}: native spectral mix unavailable '
                                      f'({predictor.native_problem}); CkTIM runs the exact graph operators, slower')
        if p['publish_hri']:
            unknown = sorted(set(predictor.labels) - set(AFFECT))
            if unknown:
                raise ConfigError(f'publish_hri: classes {unknown} of {predictor.model_id} have no ROS4HRI expression')
        return predictor, model_dir

    def _validate_stream_settings(self, p: dict) -> list[str]:
        """Checks the stream parameters; returns the audio topics."""
        if p['input_type'] not in ('data', 'stamped'):
            raise ConfigError(f"input_type must be data or stamped, got {p['input_type']!r}")
        if p['qos_reliability'] not in ('best_effort', 'reliable'):
            raise ConfigError(f"qos_reliability must be best_effort or reliable, got {p['qos_reliability']!r}")
        if p['qos_depth'] < 1 or p['queue_size'] < 1:
            raise ConfigError('qos_depth and queue_size must be at least 1')
        if p['publish_hri']:
            try:
                import hri_msgs.msg  # noqa: F401
            except ImportError:
                raise ConfigError('publish_hri needs hri_msgs (ROS4HRI): install ros-$ROS_DISTRO-hri-msgs, or build '
                                  'the stand-in with scripts/setup.sh') from None
        topics = [str(topic) for topic in p['audio_topics']]
        if not topics or any(not topic.strip() for topic in topics) or len(set(topics)) < len(topics):
            raise ConfigError(f'audio_topics must list distinct, non-empty topic names, got {topics}')
        try:
            StreamFormat(p['sample_rate'], p['channels'], p['sample_format'], p['coding_format']).check()
        except AudioFormatError as error:
            raise ConfigError(str(error)) from None
        return topics

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changed = {param.name: param.value for param in parameters if param.name in self.PARAMETERS}
        proposed = {**self.p, **changed}
        reload = any(proposed[name] != self.p[name] for name in ('model', 'weights', 'backend', 'device',
                                                                  'spectral_mix'))
        try:
            # Load outside the locks (CkTIM takes seconds): the streams go on meanwhile; swap under them.
            predictor, model_dir = self._load_predictor(proposed) if reload else (None, None)
            with self.inference_lock, self.lock:
                settings = self._pipeline_settings(proposed).__dict__
                try:
                    self.inputs[0].pipeline.check_window(settings['window'], settings['hop'], predictor)
                    for stream in self.inputs:
                        stream.pipeline.update(predictor, **settings)
                except ValueError as error:
                    raise ConfigError(str(error)) from None
                self.p = proposed
                if predictor is not None:
                    self.predictor, self.model_dir = predictor, model_dir
                    self.get_logger().info(f'model switched to {predictor.model_id} ({predictor.backend}, '
                                           f'{predictor.device}) from {model_dir}')
        except ConfigError as error:
            self.get_logger().warning(f'rejected parameter change {changed}: {error}')
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    # ----------------------------------------------------------------- inference
    def _inference_loop(self) -> None:
        while True:
            self._end_quiet_utterances()
            with self.lock:
                self._flush_quiet_streams()     # also while other streams keep the worker busy
                if self._running and not any(stream.queue for stream in self.inputs):
                    self.queue_ready.wait(timeout=QUIET_FLUSH_SECONDS / 2)
                    self._flush_quiet_streams()
                if not self._running:
                    return
                jobs = []
                for stream in self.inputs:
                    if stream.queue:
                        jobs.append((stream, list(stream.queue), stream.frame_id))
                        stream.queue.clear()
                        stream.pipeline.utterances_wanted = stream.wants_utterances()
            if not jobs:
                continue
            try:
                with self.inference_lock:
                    results = classify_streams([(stream.pipeline, batch) for stream, batch, _ in jobs])
            except Exception as error:  # keep the worker alive whatever one batch does
                count = sum(len(batch) for _, batch, _ in jobs)
                self.get_logger().error(f'inference failed for {count} window(s): {error}',
                                        throttle_duration_sec=5.0)
                with self.lock:
                    for stream, batch, _ in jobs:
                        stream.counters['windows_failed'] += len(batch)
                continue
            for (stream, _, frame_id), stream_results in zip(jobs, results, strict=True):
                stream.publish(stream_results, frame_id)

    def _quiet(self, stream: AudioInput) -> bool:
        return time.monotonic() - stream.last_audio > QUIET_FLUSH_SECONDS

    def _flush_quiet_streams(self) -> None:
        """Windows held for audio after them (one-pass functionals) on a stream that went quiet: hand them out
        as at the end of its input (caller holds the lock)."""
        for stream in self.inputs:
            if stream.pipeline.holding and self._quiet(stream):
                stream.enqueue(stream.pipeline.flush())

    def _end_quiet_utterances(self) -> None:
        """A stream that went quiet mid-utterance (its audio stopped): close that utterance once its windows
        are classified, score and publish it. A microphone's silence ends utterances through the windows."""
        with self.inference_lock:       # the order parameter changes take the locks in
            with self.lock:
                closing = [(stream, stream.pipeline.utterances.finish()) for stream in self.inputs
                           if stream.pipeline.utterances.is_open and not stream.queue
                           and not stream.pipeline.holding and self._quiet(stream)]
            ended = [(stream, stream.pipeline.score_utterances(pending)) for stream, pending in closing
                     if stream.wants_utterances()]
        for stream, utterances in ended:
            stream.publish_utterances(utterances, stream.frame_id)

    # ----------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self.lock:
            latencies = np.array(self.latencies) if self.latencies else np.zeros(1)
            shared = {
                'streams': str(len(self.inputs)),
                'inference latency p50 (ms)': f'{np.percentile(latencies, 50) * 1e3:.2f}',
                'inference latency p95 (ms)': f'{np.percentile(latencies, 95) * 1e3:.2f}',
                'backend': self.predictor.backend, 'device': self.predictor.device,
                'spectral mix': getattr(self.predictor, 'spectral_mix', 'torch'),
                'model': self.predictor.model_id, 'weights': str(self.model_dir),
            }
            statuses = [stream.status(now, shared) for stream in self.inputs]
        array = DiagnosticArray(status=statuses)
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def stop(self) -> None:
        with self.lock:
            self._running = False
            self.queue_ready.notify_all()
        self._worker.join(timeout=5)
        with self.lock:
            for stream in self.inputs:
                stream.pipeline.close()


def to_time(nanoseconds: int) -> Time:
    return Time(sec=int(nanoseconds // 1_000_000_000), nanosec=int(nanoseconds % 1_000_000_000))


def emotion_message(result: WindowResult | Utterance, frame_id: str) -> Emotion:
    """A window, or an utterance (its speech from window_start to the stamp, the seconds scored as its
    window_duration)."""
    msg = Emotion()
    msg.header.stamp = to_time(result.end_ns)
    msg.header.frame_id = frame_id
    msg.window_start = to_time(result.start_ns)
    msg.window_duration = float(result.duration)
    msg.labels = result.labels
    msg.model = result.model_id
    msg.voiced = result.voiced
    if result.probabilities is not None:
        msg.probabilities = result.probabilities.astype(np.float32).tolist()
        msg.label = result.label
        msg.confidence = result.confidence
        msg.inference_time = float(result.inference_time)
    return msg


def expression_message(result: WindowResult, frame_id: str):
    """hri_msgs/Expression of a classified window: its class, circumplex position and confidence."""
    from hri_msgs.msg import Expression
    msg = Expression()
    msg.header.stamp = to_time(result.end_ns)
    msg.header.frame_id = frame_id
    msg.expression = expression(result.label)
    msg.valence, msg.arousal = valence_arousal(result.labels, result.probabilities)
    msg.confidence = float(result.confidence)
    return msg


def main(args=None) -> int:
    argv = list(sys.argv if args is None else args)
    try:
        rclpy.init(args=argv + DEFAULT_REMAPS)  # user remaps come first and win
    except Exception as error:  # rclpy raises RCLError for malformed --ros-args
        print(f'ser_node: cannot start: bad command-line arguments: {error}', file=sys.stderr)
        return 2
    # numpy's BLAS pool spins between the front end's tiny matmuls: measured 7-14 % of a core per
    # stream with it, under 1 % without. Inference threads are onnxruntime's or torch's own.
    threadpool_limits(1, user_api='blas')
    try:
        node = SerNode()
    except (ConfigError, ParameterException) as error:  # also out-of-range or mistyped parameters
        rclpy.logging.get_logger('ser_node').fatal(f'cannot start: {error}')
        rclpy.try_shutdown()
        return 1
    # Inference has its own thread; rclpy's MultiThreadedExecutor lost audio under load here
    # (measured: 548 of 660 messages at 100 msg/s), the single-threaded one lost none.
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    except Exception:  # ExternalShutdownException and friends on shutdown
        if rclpy.ok():
            raise
    finally:
        node.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
