"""MP3 in the streaming front: recognised from its bytes, decoded in any chunking, corrupt frames cost
themselves only, and non-MP3 bytes declared as MP3 are rejected with a reason."""
import numpy as np
import pytest
import soundfile as sf
from mp3_fixture import byte_chunks, encode_mp3, mp3_frames

from ser_models.mp3 import Mp3Decoder, layer3_frame, looks_like_mp3
from ser_models.stream import AudioFormatError, AudioStream, StreamFormat

pytest.importorskip('av')
pytest.importorskip('lameenc')


@pytest.fixture(scope='module')
def speech(data_dir):
    return sf.read(data_dir / 'emovo/f2/tri-f2-l1.flac', dtype='float32')[0]


def stream(fmt: StreamFormat | None = None):
    return AudioStream(fmt or StreamFormat(), 16000, 48000, 8000, detect_mp3=True)


def push_all(audio_stream, chunks):
    windows = []
    for chunk in chunks:
        windows += audio_stream.push(chunk)
    return windows


def test_layer3_headers_are_parsed_as_the_encoder_wrote_them(speech):
    for rate, kbps, length, per_frame in ((16000, 64, 288, 576), (44100, 128, 417, 1152), (8000, 16, 144, 576)):
        data = encode_mp3(speech[:rate], rate, kbps)
        frame_bytes, decoded_rate, samples = layer3_frame(data)
        assert (decoded_rate, samples) == (rate, per_frame)
        assert frame_bytes in (length, length + 1)    # + the padding byte
        assert looks_like_mp3(data[:frame_bytes]) and looks_like_mp3(data)


def test_pcm_speech_and_silence_are_not_taken_for_mp3(speech):
    pcm = np.clip(speech * 32767, -32768, 32767).astype('<i2').tobytes()
    for start in range(0, len(pcm) - 2048, 2048):
        assert looks_like_mp3(pcm[start:start + 2048]) is False
    assert looks_like_mp3(bytes(2048)) is False
    assert looks_like_mp3(b'\xff') is None          # too short to tell


@pytest.mark.parametrize('chunking', ['frames', 'bytes_37', 'bytes_4096'])
@pytest.mark.parametrize('declared', ['undeclared', 'declared'])
def test_mp3_decodes_to_the_same_windows_as_pcm(speech, chunking, declared):
    """Windows: the same count; the decoded audio matches the PCM after the coder's delay."""
    data = encode_mp3(speech)
    chunks = mp3_frames(data) if chunking == 'frames' else byte_chunks(data, int(chunking.split('_')[1]))
    fmt = StreamFormat(coding_format='mp3') if declared == 'declared' else StreamFormat()
    mp3 = stream(fmt)
    windows = push_all(mp3, chunks)
    assert mp3.describe.startswith('mp3') and '16000 Hz, 1 ch' in mp3.describe
    assert mp3.detected == ('mp3' if declared == 'undeclared' else '')
    pcm = stream()
    pcm_windows = push_all(pcm, byte_chunks(np.clip(speech * 32767, -32768, 32767).astype('<i2').tobytes(), 2048))
    assert abs(len(windows) - len(pcm_windows)) <= 1
    assert mp3.samples_in == mp3.samples_decoded == mp3.buffer.total and mp3.samples_dropped == 0
    # LAME's start delay (encoder + decoder) is about 1105 samples; find it, then compare waveforms.
    decoded, reference = windows[0].samples, pcm_windows[0].samples
    delay = int(np.argmax(np.correlate(decoded[:16000], reference[:8000], mode='valid')))
    assert 1000 <= delay <= 1200
    aligned = decoded[delay:delay + 40000]
    error = np.sqrt(np.mean((aligned - reference[:40000]) ** 2)) / np.sqrt(np.mean(reference[:40000] ** 2))
    assert error < 0.2, error                       # 64 kbit/s: the waveform within -14 dB


def test_a_corrupt_frame_costs_that_frame_not_the_stream(speech):
    frames = mp3_frames(encode_mp3(speech))
    clean = stream()
    push_all(clean, frames)
    broken = list(frames)
    broken[20] = bytes(len(broken[20]))              # zeroed: the parser skips it, its frame is gone
    broken[40] = broken[40][:4] + b'\xff' * (len(broken[40]) - 4)
    damaged = stream()
    push_all(damaged, broken)
    problems = damaged.take_problems()
    assert problems and all('corrupt MP3 frame' in p for p in problems)
    assert damaged.mp3_frames_dropped == len(problems)
    assert damaged.samples_in == damaged.samples_decoded + damaged.samples_dropped
    # Every frame after the damage still decodes: at most three frames' worth of samples are missing.
    assert clean.samples_decoded - 3 * 576 <= damaged.samples_decoded < clean.samples_decoded


def test_bytes_declared_mp3_that_are_not_get_a_clear_rejection():
    noise = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    declared = stream(StreamFormat(coding_format='mp3'))
    with pytest.raises(AudioFormatError, match='not MP3'):
        push_all(declared, byte_chunks(noise, 1000))
    assert declared.messages_rejected == 1
    assert declared.samples_in == declared.samples_decoded + declared.samples_dropped


def test_an_id3_tag_is_skipped_even_when_split_across_messages(speech):
    data = encode_mp3(speech)
    tag = b'ID3\x04\x00\x00\x00\x00\x00\x30' + b'T' * 48
    with_tag = stream()
    push_all(with_tag, byte_chunks(tag + data, 7))
    plain = stream()
    push_all(plain, [data])
    assert with_tag.detected == 'mp3'
    assert with_tag.samples_decoded == plain.samples_decoded and with_tag.samples_dropped == 0


def test_audio_info_switches_between_mp3_and_pcm_without_losing_decoded_audio(speech):
    frames = mp3_frames(encode_mp3(speech))
    audio_stream = stream(StreamFormat(coding_format='mp3'))
    push_all(audio_stream, frames[:50])
    audio_stream.set_format(StreamFormat(coding_format='mp3', sample_rate=44100))   # nominal: decoder wins
    assert isinstance(audio_stream.decoder, Mp3Decoder)
    audio_stream.set_format(StreamFormat(16000, 1, 'S16LE'))
    push_all(audio_stream, [np.zeros(1600, '<i2').tobytes()])
    assert audio_stream.describe == '16000 Hz, 1 ch, S16LE, wave'
    assert audio_stream.samples_dropped == 0          # a frame whole in its message is decoded at once
    assert audio_stream.samples_decoded == 50 * 576 + 1600
    assert audio_stream.samples_in == audio_stream.samples_decoded + audio_stream.samples_dropped
    assert audio_stream.buffer.total == audio_stream.samples_decoded
