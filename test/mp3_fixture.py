"""MP3 as audio_capture sends it, made in the test from real speech (lameenc: no Xing header, no ID3)."""
from __future__ import annotations

import numpy as np

from ser_models.mp3 import layer3_frame


def encode_mp3(samples: np.ndarray, sample_rate: int = 16000, kbps: int = 64, channels: int = 1) -> bytes:
    import lameenc
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(kbps)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(channels)
    encoder.set_quality(2)
    interleaved = np.repeat(samples[:, None], channels, axis=1) if channels > 1 else samples
    pcm = np.clip(interleaved * 32767, -32768, 32767).astype('<i2').tobytes()
    return bytes(encoder.encode(pcm) + encoder.flush())


def mp3_frames(data: bytes) -> list[bytes]:
    """One MPEG frame per message, as audio_capture's appsink hands them over."""
    frames, offset = [], 0
    while offset < len(data):
        header = layer3_frame(data, offset)
        assert header is not None, f'no MPEG frame header at byte {offset}'
        frames.append(data[offset:offset + header[0]])
        offset += header[0]
    return frames


def byte_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]
