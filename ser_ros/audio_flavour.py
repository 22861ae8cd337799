"""The two audio_common_msgs in use, told apart by their definitions (both packages share the name).

- ros-drivers/audio_common (binary releases; audio_capture): AudioData{uint8[] data},
  AudioDataStamped{header, audio}, and AudioInfo on its own topic.
- mgonzs13/audio_common (source only; whisper_ros, llama_ros): AudioStamped{header, Audio{AudioData
  audio_data; AudioInfo info}}, typed sample arrays, and the format inline as a PortAudio code.
"""
from __future__ import annotations

import numpy as np

from ser_models.stream import AudioFormatError, StreamFormat

ROS_DRIVERS = 'ros-drivers'
MGONZS13 = 'mgonzs13'
# PortAudio sample format code -> (AudioData array field, our sample_format, numpy dtype)
PORTAUDIO_FORMATS = {
    1: ('float32_data', 'F32LE', '<f4'),
    2: ('int32_data', 'S32LE', '<i4'),
    8: ('int16_data', 'S16LE', '<i2'),
    16: ('int8_data', 'S8', 'i1'),
    32: ('uint8_data', 'U8', 'u1'),
}


def detect() -> str:
    """Which audio_common_msgs is installed."""
    from audio_common_msgs import msg
    fields = msg.AudioData.get_fields_and_field_types()
    if hasattr(msg, 'AudioStamped') and 'int16_data' in fields:
        return MGONZS13
    if 'data' in fields and hasattr(msg, 'AudioInfo'):
        return ROS_DRIVERS
    raise ImportError(f'audio_common_msgs/AudioData has fields {sorted(fields)}: neither the ros-drivers nor the '
                      'mgonzs13 audio_common this node knows')


def stamped_format(info, coding: str = 'wave') -> StreamFormat:
    """The StreamFormat of an mgonzs13 AudioInfo (format as a PortAudio code)."""
    if int(info.format) not in PORTAUDIO_FORMATS:
        raise AudioFormatError(f'PortAudio format {info.format} is not supported; use one of '
                               f'{sorted(PORTAUDIO_FORMATS)} (1 f32, 2 i32, 8 i16, 16 i8, 32 u8)')
    return StreamFormat(int(info.rate), int(info.channels), PORTAUDIO_FORMATS[int(info.format)][1], coding)


def stamped_samples(audio) -> bytes:
    """The bytes of the typed array that an mgonzs13 Audio's info.format names."""
    field, _, dtype = PORTAUDIO_FORMATS[int(audio.info.format)]
    return np.asarray(getattr(audio.audio_data, field), dtype=dtype).tobytes()
