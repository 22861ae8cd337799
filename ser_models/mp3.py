"""MP3 in a stream of messages: recognising it from its first bytes, and decoding it incrementally.

audio_capture (ros-drivers/audio_common) publishes MP3 by default: about one MPEG frame per message,
no Xing/INFO header, no ID3 tag. PyAV's parser buffers partial frames across messages, so any
chunking decodes; a corrupt frame costs that frame only.
"""
from __future__ import annotations

import numpy as np

# MPEG audio layer III: bitrates (kbit/s) by index, per version; sample rates by index, per version.
_BITRATES = {'1': (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             '2': (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_RATES = {'1': (44100, 48000, 32000), '2': (22050, 24000, 16000), '2.5': (11025, 12000, 8000)}
_VERSIONS = {0b00: '2.5', 0b10: '2', 0b11: '1'}          # 0b01 is reserved
SNIFF_LIMIT = 4096    # bytes held back at most before a stream that starts like MP3 is called PCM


class Mp3Error(ValueError):
    """MP3 data that cannot be decoded; the text says why."""


def layer3_frame(data: bytes, offset: int = 0) -> tuple[int, int, int] | None:
    """(frame bytes, sample rate, samples per frame) of a valid MPEG layer III header at offset, else None."""
    if len(data) < offset + 4:
        return None
    b0, b1, b2 = data[offset], data[offset + 1], data[offset + 2]
    if b0 != 0xFF or b1 & 0xE0 != 0xE0 or (b1 >> 1) & 0b11 != 0b01:   # frame sync, layer III
        return None
    version = _VERSIONS.get((b1 >> 3) & 0b11)
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 0b11
    if version is None or bitrate_index in (0, 15) or rate_index == 3:   # reserved, free format, bad
        return None
    bitrate = _BITRATES['1' if version == '1' else '2'][bitrate_index] * 1000
    rate = _RATES[version][rate_index]
    per_frame = 1152 if version == '1' else 576
    padding = (b2 >> 1) & 1
    return per_frame // 8 * bitrate // rate + padding, rate, per_frame


def id3v2_length(data: bytes) -> int | None:
    """Bytes of an ID3v2 tag at the start of data (header, body and footer), else None."""
    if len(data) < 10 or data[:3] != b'ID3' or any(b & 0x80 for b in data[6:10]):
        return None
    size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
    return 10 + size + (10 if data[5] & 0x10 else 0)


def looks_like_mp3(data: bytes) -> bool | None:
    """True: the stream starts with an ID3 tag or an MPEG layer III frame that the next frame header
    (or the end of the message) confirms. False: it does not. None: too few bytes to tell yet."""
    if data[:3] == b'ID3':
        return True
    if len(data) < 4:
        return None if b'ID3'.startswith(data) or data[:1] == b'\xff' else False
    frame = layer3_frame(data)
    if frame is None:
        return False
    length = frame[0]
    if len(data) == length or layer3_frame(data, length) is not None:
        return True
    if len(data) < length + 4 and len(data) < SNIFF_LIMIT:
        return None
    return False


class Mp3Decoder:
    """MP3 bytes, in any chunking, to mono float32 at the coded sample rate (PyAV)."""

    def __init__(self, channel: int = -1):
        try:
            import av
        except ImportError as error:   # an optional dependency of the node
            raise Mp3Error('MP3 input needs PyAV: pip install av') from error
        self._av = av
        self._codec = av.CodecContext.create('mp3', 'r')
        self.channel = channel
        self.sample_rate: int | None = None     # as decoded, which outranks AudioInfo
        self.channels: int | None = None
        self.frames_decoded = 0
        self.frames_dropped = 0
        self.samples_dropped = 0                # estimated: a dropped frame's nominal length
        self._tag_bytes_left: int | None = None   # None: the start of the stream is not read yet
        self._head = b''
        self._bytes_without_frame = 0

    def decode(self, data: bytes) -> tuple[np.ndarray, list[str]]:
        """Mono samples of every frame completed by data, and a reason for each frame that failed."""
        data = self._skip_tag(bytes(data))
        problems: list[str] = []
        frames_before = self.frames_decoded + self.frames_dropped
        out = [self._decode_packet(packet, problems) for packet in self._codec.parse(data)] if data else []
        if self.frames_decoded + self.frames_dropped > frames_before:
            self._bytes_without_frame = 0
        else:
            self._bytes_without_frame += len(data)
            if self._bytes_without_frame > 2 * SNIFF_LIMIT:
                seen, self._bytes_without_frame = self._bytes_without_frame, 0
                raise Mp3Error(f'{seen} bytes without one MPEG audio frame: this is not MP3')
        return (np.concatenate(out) if out else np.zeros(0, dtype=np.float32)), problems

    def flush(self) -> tuple[np.ndarray, list[str]]:
        """Whatever the parser or decoder still holds (a partial frame is dropped by the decoder)."""
        problems: list[str] = []
        out = [self._decode_packet(packet, problems) for packet in self._codec.parse(None)]
        out.append(self._decode_packet(None, problems))
        return np.concatenate(out), problems

    def _skip_tag(self, data: bytes) -> bytes:
        """An ID3v2 tag at the start of the stream is metadata, not audio: drop it across messages."""
        if self._tag_bytes_left is None:
            self._head += data
            if len(self._head) < 10 and b'ID3'.startswith(self._head[:3]):
                return b''   # may still become a tag header
            self._tag_bytes_left = id3v2_length(self._head) or 0
            data, self._head = self._head, b''
        skip = min(self._tag_bytes_left, len(data))
        self._tag_bytes_left -= skip
        return data[skip:]

    def _decode_packet(self, packet, problems: list[str]) -> np.ndarray:
        try:
            frames = self._codec.decode(packet)
        except self._av.error.FFmpegError as error:
            self.frames_dropped += 1
            self.samples_dropped += self._codec.frame_size or 1152
            problems.append(f'corrupt MP3 frame dropped ({error.strerror or error})')
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([self._mono(frame) for frame in frames]) if frames else np.zeros(0, np.float32)

    def _mono(self, frame) -> np.ndarray:
        self.frames_decoded += 1
        self.sample_rate, self.channels = frame.sample_rate, frame.layout.nb_channels
        values = frame.to_ndarray()
        if not frame.format.is_planar:
            values = values.reshape(-1, self.channels).T
        if values.dtype.kind in 'iu':
            values = values.astype(np.float32) / np.float32(1 << (8 * values.dtype.itemsize - 1))
        if self.channel >= self.channels:
            raise Mp3Error(f'channel {self.channel} selected but the MP3 stream has {self.channels} channel(s)')
        mono = values[self.channel] if self.channel >= 0 else values.mean(axis=0)
        return np.ascontiguousarray(mono, dtype=np.float32)
