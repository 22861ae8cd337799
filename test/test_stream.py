"""The streaming front of the node: PCM decoding, torn samples, resampling, ring buffer, gate, pipeline."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ser_models.stream import (
    PCM_FORMATS,
    AudioFormatError,
    AudioStream,
    EnergyGate,
    PcmDecoder,
    RingBuffer,
    Smoother,
    StreamFormat,
)


def encode(samples: np.ndarray, sample_format: str) -> bytes:
    if sample_format == 'S16LE':
        return np.round(samples * 32767).astype('<i2').tobytes()
    if sample_format == 'S32LE':
        return np.round(samples * 2147483647).astype('<i4').tobytes()
    if sample_format == 'F32LE':
        return samples.astype('<f4').tobytes()
    if sample_format == 'U8':
        return np.round(samples * 127 + 128).astype('u1').tobytes()
    if sample_format == 'S24LE':
        values = np.round(samples * 8388607).astype('<i4')
        return b''.join(int(v).to_bytes(3, 'little', signed=True) for v in values)
    raise ValueError(sample_format)


@pytest.mark.parametrize('sample_format,tolerance', [('S16LE', 1e-4), ('S24LE', 1e-6), ('S32LE', 1e-8),
                                                     ('F32LE', 1e-7), ('U8', 1e-2)])
def test_each_pcm_format_decodes_to_the_same_signal(sample_format, tolerance):
    signal = (0.5 * np.sin(np.arange(480) / 7)).astype(np.float32)
    decoded = PcmDecoder(StreamFormat(16000, 1, sample_format)).decode(encode(signal, sample_format))
    np.testing.assert_allclose(decoded, signal, atol=tolerance)


def test_stereo_is_mixed_down_or_one_channel_selected():
    left, right = np.full(100, 0.5, np.float32), np.full(100, -0.25, np.float32)
    data = np.stack([left, right], axis=1).astype('<f4').tobytes()
    fmt = StreamFormat(16000, 2, 'F32LE')
    np.testing.assert_allclose(PcmDecoder(fmt).decode(data), 0.125)
    np.testing.assert_allclose(PcmDecoder(fmt, channel=1).decode(data), -0.25)
    with pytest.raises(AudioFormatError, match='channel 2'):
        PcmDecoder(fmt, channel=2)


def test_a_sample_torn_across_messages_is_carried_over():
    signal = (np.arange(1000) / 1000).astype(np.float32)
    data = encode(signal, 'S24LE')
    decoder = PcmDecoder(StreamFormat(16000, 1, 'S24LE'))
    parts = [decoder.decode(data[a:b]) for a, b in ((0, 1), (1, 1000), (1000, 1001), (1001, len(data)))]
    np.testing.assert_allclose(np.concatenate(parts), signal, atol=1e-6)
    assert decoder.pending_bytes == 0


def test_unknown_formats_get_clear_errors():
    StreamFormat(coding_format='mp3', sample_format='').check()   # MP3 carries its own sample format
    with pytest.raises(AudioFormatError, match='not supported'):
        StreamFormat(coding_format='ogg').check()
    with pytest.raises(AudioFormatError, match='not supported'):
        StreamFormat(sample_format='S16BE').check()
    with pytest.raises(AudioFormatError, match='sample_rate'):
        StreamFormat(sample_rate=0).check()


def test_nan_message_is_dropped_whole_and_counted():
    stream = AudioStream(StreamFormat(16000, 1, 'F32LE'), 16000, 1600, 800)
    stream.push(np.zeros(100, '<f4').tobytes())
    with pytest.raises(AudioFormatError, match='NaN/Inf'):
        stream.push(np.array([0.1, np.nan, 0.3], '<f4').tobytes())
    assert stream.samples_dropped == 3 and stream.messages_rejected == 1
    assert stream.samples_decoded == 100 == stream.buffer.total


def test_ring_buffer_emits_every_hop_and_survives_reconfiguration():
    buffer = RingBuffer(window=10, hop=4)
    emitted = buffer.write(np.arange(30, dtype=np.float32))
    assert [end for _, end in emitted] == [10, 14, 18, 22, 26, 30]
    np.testing.assert_array_equal(emitted[-1][0], np.arange(20, 30))
    buffer.reconfigure(window=25, hop=5)          # grows the storage, keeps the audio
    (window, end), = buffer.write(np.arange(30, 35, dtype=np.float32))
    assert end == 35 and np.array_equal(window, np.arange(10, 35))


def test_gate_and_smoother():
    gate = EnergyGate(16000, threshold_db=-40)
    assert gate(np.zeros(16000, np.float32))[0] is False
    assert gate((0.3 * np.sin(np.arange(16000) / 3)).astype(np.float32))[0] is True
    early = np.where(np.arange(16000) < 8000, 0.3 * np.sin(np.arange(16000) / 3), 0).astype(np.float32)
    assert gate(early, tail=4000)[::2] == (True, False)         # voiced, but its last 0.25 s are silent
    assert gate(early[::-1].copy(), tail=4000)[::2] == (True, True)
    smoother = Smoother(0.5)
    smoother(np.array([1.0, 0.0]))
    np.testing.assert_allclose(smoother(np.array([0.0, 1.0])), [0.5, 0.5])


def test_a_rate_change_keeps_the_samples_inside_the_resampler():
    stream = AudioStream(StreamFormat(48000, 1, 'F32LE'), 16000, 16000, 8000)
    rng = np.random.default_rng(1)
    stream.push((rng.standard_normal(4800) * 0.1).astype('<f4').tobytes())     # 0.1 s at 48 kHz
    assert stream.buffer.total < 1600                                            # some still in the filter
    stream.set_format(StreamFormat(22050, 1, 'F32LE'))
    stream.push((rng.standard_normal(2205) * 0.1).astype('<f4').tobytes())     # 0.1 s at 22.05 kHz
    assert stream.buffer.total + stream.resampler.flush().size == 1600 + 1600


def test_resampled_stream_yields_the_expected_window_count():
    stream = AudioStream(StreamFormat(48000, 1, 'F32LE'), 16000, 16000, 8000)
    rng = np.random.default_rng(0)
    windows = []
    for _ in range(60):
        windows += stream.push((rng.standard_normal(960) * 0.1).astype('<f4').tobytes())
    # 57600 input samples are 19200 at the model rate, minus the resampler's few ms still in flight.
    assert len(windows) == 1 and 19200 - 320 < stream.buffer.total <= 19200


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(PCM_FORMATS)), channels=st.integers(1, 4),
       rate=st.sampled_from([8000, 16000, 22050, 44100, 48000]),
       chunks=st.lists(st.binary(min_size=0, max_size=700), min_size=1, max_size=25))
def test_fuzzed_bytes_never_escape_and_every_sample_is_accounted_for(fmt, channels, rate, chunks):
    stream = AudioStream(StreamFormat(rate, channels, fmt), 16000, 800, 400)
    frame = stream.format.frame_bytes
    total_bytes = 0
    for chunk in chunks:
        total_bytes += len(chunk)
        try:
            windows = stream.push(chunk)
        except AudioFormatError:
            continue
        for window in windows:
            assert window.samples.shape == (800,) and np.all(np.isfinite(window.samples))
    # Every sample taken in was decoded or reported dropped, and the rest is one torn frame.
    assert stream.samples_in == stream.samples_decoded + stream.samples_dropped
    assert stream.samples_in * frame + stream.decoder.pending_bytes <= total_bytes
    # What was decoded reached the ring buffer at the model rate, but for what the resampler holds.
    in_flight = stream.resampler.flush().size
    assert stream.buffer.total + in_flight == round(stream.samples_decoded * 16000 / rate)
    assert stream.decoder.pending_bytes < frame


def test_streams_sharing_a_predictor_are_classified_in_one_call_and_a_bad_window_stays_alone():
    from pathlib import Path

    from ser_models import load
    from ser_models.pipeline import EmotionPipeline, classify_streams
    from ser_models.stream import StreamFormat
    predictor = load(Path(__file__).resolve().parents[1] / 'weights' / 'timnet')
    calls = []
    original = predictor.predict_features
    predictor.predict_features = lambda mfcc: calls.append(len(mfcc)) or original(mfcc)
    rng = np.random.default_rng(5)
    fmt = StreamFormat(16000, 1, 'F32LE')
    streams = [EmotionPipeline(predictor, fmt) for _ in range(3)]
    audio = [(rng.standard_normal(16000 * 4) * 0.3).astype('<f4') for _ in streams]
    pending = [pipeline.push(samples.tobytes(), 1) for pipeline, samples in zip(streams, audio, strict=True)]
    assert [len(p) for p in pending] == [3, 3, 3]
    pending[1][0].samples[100] = np.nan            # cannot come from the decoder; guards the batch anyway
    results = classify_streams(list(zip(streams, pending, strict=True)))
    assert calls == [8]                             # one batched model call for the 8 good windows
    assert results[1][0].error and results[1][0].probabilities is None
    good = [r for stream in results for r in stream if not r.error]
    assert len(good) == 8 and all(abs(r.probabilities.sum() - 1) < 1e-5 for r in good)
    # Each stream's result equals what that stream alone gives.
    alone = EmotionPipeline(predictor, fmt)
    solo = alone.classify(alone.push(audio[2].tobytes(), 1))
    for a, b in zip(results[2], solo, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_a_model_asking_for_test_time_speeds_is_refused_by_a_stream_not_served_otherwise():
    from pathlib import Path

    from ser_models import load
    from ser_models.pipeline import EmotionPipeline
    predictor = load(Path(__file__).resolve().parents[1] / 'weights' / 'timnet')
    fmt = StreamFormat(16000, 1, 'F32LE')
    pipeline = EmotionPipeline(predictor, fmt)
    sped = load(Path(__file__).resolve().parents[1] / 'weights' / 'timnet')
    sped.meta = {**sped.meta, 'test_time_speeds': [0.9, 1.0, 1.1]}
    with pytest.raises(ValueError, match='test_time_speeds'):
        EmotionPipeline(sped, fmt)
    with pytest.raises(ValueError, match='test_time_speeds'):
        pipeline.update(sped)
    assert pipeline.predictor is predictor
