"""rosbag2 audio without a ROS graph (rosbags, pure Python): read audio_common messages from
any bag (mcap or sqlite3, including ones recorded by `ros2 bag record`) and write new ones."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from .model_paths import SOURCE_WEIGHTS

AUDIO_DATA = 'audio_common_msgs/msg/AudioData'
AUDIO_STAMPED = 'audio_common_msgs/msg/AudioDataStamped'
AUDIO_INFO = 'audio_common_msgs/msg/AudioInfo'
EMOTION = 'ser_msgs/msg/Emotion'
MSG_DIRS = {'audio_common_msgs': 'msgs/compat/audio_common_msgs/msg', 'ser_msgs': 'msgs/ser_msgs/msg'}


def msg_definition(package: str, name: str) -> str:
    """The .msg text of an interface: from the installed package, else from this source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory
        path = Path(get_package_share_directory(package)) / 'msg' / f'{name}.msg'
        if path.is_file():
            return path.read_text()
    except (ImportError, LookupError, ValueError):
        pass
    return (SOURCE_WEIGHTS.parent / MSG_DIRS[package] / f'{name}.msg').read_text()


def typestore():
    """Kilted's standard types plus audio_common_msgs and ser_msgs."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for full in (AUDIO_DATA, AUDIO_STAMPED, AUDIO_INFO, EMOTION):
        package, _, name = full.split('/')
        types.update(get_types_from_msg(msg_definition(package, name), full))
    store.register(types)
    return store


@dataclass
class AudioMessage:
    log_ns: int                 # when the bag received it
    topic: str
    kind: str                   # 'data' or 'info'
    data: bytes = b''
    stamp_ns: int = 0           # header stamp (AudioDataStamped), 0 otherwise
    frame_id: str = ''
    info: object = None         # the AudioInfo message


def read_audio(bag, audio_topic: str | None = None) -> Iterator[AudioMessage]:
    """Audio and AudioInfo messages in log order. With several audio topics, name the one to use."""
    store = typestore()
    with Reader(Path(bag)) as reader:
        audio = [c for c in reader.connections if c.msgtype in (AUDIO_DATA, AUDIO_STAMPED)]
        if audio_topic:
            audio = [c for c in audio if c.topic == audio_topic]
        topics = sorted({c.topic for c in audio})
        if len(topics) != 1:
            raise ValueError(f'{bag}: need exactly one audio topic, found {topics or "none"}; pass audio_topic')
        info = [c for c in reader.connections if c.msgtype == AUDIO_INFO]
        for connection, log_ns, raw in reader.messages(connections=audio + info):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            if connection.msgtype == AUDIO_INFO:
                yield AudioMessage(log_ns, connection.topic, 'info', info=msg)
            elif connection.msgtype == AUDIO_STAMPED:
                stamp = msg.header.stamp
                yield AudioMessage(log_ns, connection.topic, 'data', msg.audio.data.tobytes(),
                                   stamp.sec * 1_000_000_000 + stamp.nanosec, msg.header.frame_id)
            else:
                yield AudioMessage(log_ns, connection.topic, 'data', msg.data.tobytes())
