"""Utterances: a stream cut at pauses, each utterance's audio scored as the benchmark scores a clip."""
import json
from pathlib import Path

import numpy as np
import pytest

import ser_models
from ser_models.pipeline import EmotionPipeline, PipelineSettings
from ser_models.stream import StreamFormat
from ser_models.utterance import UtteranceTracker
from ser_models.windowing import clip_windows, predict_clips
from ser_ros.bag_audio import read_audio
from ser_ros.bag_eval import offline

REPO = Path(__file__).resolve().parents[1]
BAG = REPO / 'test' / 'data' / 'demo_bag'
NS = 1_000_000_000
RATE, WINDOW, HOP = 100, 300, 50       # 3 s windows every 0.5 s, at 100 samples a second


def seconds(index: int) -> int:
    """The time of stream sample `index` (ns), a hundredth of a second apart."""
    return index * NS // RATE


def add(tracker, stream, end, speaking):
    return tracker.add(stream[end - WINDOW:end], end, seconds(end - 1), HOP, RATE, speaking)


def feed(tracker, speech: list[bool]):
    """A stream's windows, ending at 3 s, 3.5 s, ...; speech[k]: whether window k's newest hop holds
    speech. Returns what each window closed, and the stream."""
    stream = np.arange(WINDOW + HOP * (len(speech) - 1), dtype=np.float32)
    return [add(tracker, stream, WINDOW + k * HOP, speaking) for k, speaking in enumerate(speech)], stream


def test_an_utterance_ends_after_the_pause_and_keeps_its_audio_through_it():
    tracker = UtteranceTracker(end_silence=1.0, max_duration=10.0)
    closed, stream = feed(tracker, [False, True, True, False, True, False, False, False])
    assert [len(c) for c in closed] == [0, 0, 0, 0, 0, 0, 1, 0]     # a 0.5 s pause goes on; 1 s ends it
    (utterance,) = closed[6]
    np.testing.assert_array_equal(utterance.samples, stream[300:600])  # window 1's newest hop to window 6's end
    assert (utterance.start_ns, utterance.end_ns) == (seconds(300), seconds(499))   # its speech: to window 4's
    assert not tracker.is_open and tracker.finish() == []
    speech_only = UtteranceTracker(end_silence=1.0, max_duration=10.0, through_pause=False)
    (utterance,) = feed(speech_only, [False, True, True, False, True, False, False, False])[0][6]
    np.testing.assert_array_equal(utterance.samples, stream[300:500])


def test_continuous_speech_is_cut_every_max_duration_without_losing_a_sample():
    tracker = UtteranceTracker(end_silence=0.5, max_duration=2.0)
    closed, stream = feed(tracker, [False] + [True] * 18)
    pieces = [u for c in closed for u in c]
    assert len(pieces) == 4 and all(u.samples.size == 2 * RATE for u in pieces)
    (rest,) = tracker.finish()                                      # the rest, when the input ends
    np.testing.assert_array_equal(np.concatenate([u.samples for u in [*pieces, rest]]), stream[WINDOW:])
    assert [u.start_ns for u in pieces[1:]] == [seconds(u.samples[0]) for u in pieces[1:]]


def test_a_hop_change_takes_the_audio_since_the_last_window():
    tracker = UtteranceTracker()
    stream = np.arange(2000, dtype=np.float32)
    add(tracker, stream, 300, False)                        # the stream's first window: nothing said yet
    for end, speaking in ((350, True), (450, True), (475, False)):   # hop 0.5 s, then 1 s, then 0.25 s
        add(tracker, stream, end, speaking)
    (utterance,) = tracker.finish()
    np.testing.assert_array_equal(utterance.samples, stream[300:475])


def test_a_stream_that_starts_mid_speech_keeps_its_whole_first_window():
    tracker = UtteranceTracker()
    stream = np.arange(400, dtype=np.float32)
    add(tracker, stream, 300, True)
    (utterance,) = tracker.finish()
    np.testing.assert_array_equal(utterance.samples, stream[:300])
    assert utterance.start_ns == 0


@pytest.mark.parametrize('end_silence,max_duration,match', [(0.0, 10.0, 'end_silence must be positive'),
                                                            (2.0, 2.0, 'must be longer')])
def test_settings_that_cannot_cut_utterances_are_refused(end_silence, max_duration, match):
    with pytest.raises(ValueError, match=match):
        UtteranceTracker(end_silence, max_duration)
    predictor = ser_models.load(REPO / 'weights' / 'lmu')
    with pytest.raises(ValueError, match=match):
        EmotionPipeline(predictor, StreamFormat(), PipelineSettings(utterance_end_silence=end_silence,
                                                                    utterance_max_duration=max_duration))
    pipeline = EmotionPipeline(predictor, StreamFormat())
    with pytest.raises(ValueError, match=match):
        pipeline.update(utterance_end_silence=end_silence, utterance_max_duration=max_duration)
    assert pipeline.settings == PipelineSettings()


def bag_pcm() -> np.ndarray:
    return np.frombuffer(b''.join(m.data for m in read_audio(BAG) if m.kind == 'data'), dtype='<i2')


@pytest.mark.parametrize('model', ['timnet', 'timnet_egemaps'])
def test_an_utterance_is_scored_as_the_benchmark_scores_a_clip(model):
    """The bag's first clip and its pause: one utterance, whose estimate is what predict_clips (the
    benchmark's and training.evaluate's clip scorer) gives its audio, with the stream's statistics as the
    window that ends it leaves them."""
    predictor = ser_models.load(REPO / 'weights' / model)
    pcm = bag_pcm()[:int(4.9 * 16000)]
    pipeline = EmotionPipeline(predictor, StreamFormat())
    # Up to the window that ends the utterance (a fused model's windows wait for the audio after them).
    for window in pipeline.push(pcm.tobytes(), stamp_ns=NS) + pipeline.flush():
        (result,) = pipeline.classify([window])
        if result.utterances:
            break
    (utterance,) = result.utterances
    start = round((utterance.start_ns - NS) * 16000 / NS)
    audio = (pcm[start:start + round(utterance.duration * 16000)] / 32768).astype(np.float32)
    assert utterance.end_ns < utterance.start_ns + utterance.duration * NS           # it ran on through the pause
    if predictor.functionals is None:
        expected = predict_clips(predictor, [audio], 16000, normalizers=[pipeline.normalizer])[0]
    else:    # the network's half as above; the classifier's on the windows of one openSMILE pass, standardised alike
        from ser_models.functionals import as_frames
        network = ser_models.load(REPO / 'weights' / model)
        network.functionals = None
        vectors = predictor.functionals.extractor.stream_windows(audio, predictor.window_samples, 8000, True)
        classical = predictor.functionals.classify(pipeline.functionals_normalizer(as_frames(vectors))[..., 0])
        expected = predictor.functionals.fuse(
            predict_clips(network, [audio], 16000, normalizers=[pipeline.normalizer])[0], classical.mean(axis=0))
    np.testing.assert_allclose(utterance.probabilities, expected, atol=1e-5)
    assert utterance.windows == len(clip_windows(audio, 48000, 8000)) > 1
    assert utterance.label == predictor.labels[int(np.argmax(expected))]


@pytest.fixture(scope='module')
def bag_results():
    """The bundled bag (eleven clips a second apart) through the node's pipeline, offline, shipped TIM-Net."""
    results, _ = offline(BAG, ser_models.load(REPO / 'weights' / 'timnet'))
    return results, json.loads(BAG.with_suffix('.json').read_text())


def test_the_bag_is_cut_at_its_pauses(bag_results):
    results, sidecar = bag_results
    origin, clips = sidecar['start_ns'], sidecar['clips']
    spans = [((u.start_ns - origin) / NS, (u.end_ns - origin) / NS) for r in results for u in r.utterances]
    # Every clip is heard; an utterance lies in one clip or, where a pause is no longer than 1 s, spans two.
    inside = [[i for i, c in enumerate(clips) if start < c['end'] and c['start'] < end] for start, end in spans]
    assert all(1 <= len(held) <= 2 for held in inside), spans
    assert {i for held in inside for i in held} == set(range(len(clips)))
    assert all(b[0] > a[1] for a, b in zip(spans, spans[1:], strict=False))


def test_a_stream_that_stops_mid_utterance_hands_it_over_when_asked():
    pipeline = EmotionPipeline(ser_models.load(REPO / 'weights' / 'timnet'), StreamFormat())
    # The bag's first 3.2 s: its first clip is still speaking.
    classified = pipeline.classify(pipeline.push(bag_pcm()[:int(3.2 * 16000)].tobytes(), stamp_ns=1))
    assert classified and not any(r.utterances for r in classified) and pipeline.utterances.is_open
    (utterance,) = pipeline.end_utterance()
    assert utterance.windows == 1 and utterance.end_ns == classified[-1].end_ns
    assert pipeline.end_utterance() == []


def test_clips_heard_as_utterances_each_get_the_utterance_of_their_own_audio():
    """The benchmark's utterance view: clips played through the node's pipeline, one stream a speaker."""
    from ser_models.windowing import predict_clips_as_utterances
    sidecar = json.loads(BAG.with_suffix('.json').read_text())
    pcm = bag_pcm().astype(np.float32) / 32768
    audio = [pcm[int(c['start'] * 16000):int(c['end'] * 16000)] for c in sidecar['clips'][:3]]
    predictor = ser_models.load(REPO / 'weights' / 'timnet')
    scores, missed = predict_clips_as_utterances(predictor, audio, ['a', 'a', 'b'], [2, 0, 1], 1.5)
    assert missed == 0 and np.allclose(scores.sum(axis=1), 1, atol=1e-5)
    assert not np.allclose(scores[0], scores[1])
    alone, _ = predict_clips_as_utterances(predictor, audio[2:], ['b'], [0], 1.5)
    np.testing.assert_allclose(scores[2], alone[0], atol=1e-6)      # speaker a's stream never reaches it
