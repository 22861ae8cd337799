"""Our audio_common_msgs stand-in is wire-identical to the released package; ser_msgs is as specified."""
import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

# Field definitions of the released ros-drivers/audio_common audio_common_msgs (ros2 branch).
RELEASED_AUDIO_COMMON_MSGS = {
    'audio_common_msgs/msg/AudioData': 'uint8[] data\n',
    'audio_common_msgs/msg/AudioDataStamped': 'std_msgs/Header header\naudio_common_msgs/AudioData audio\n',
    'audio_common_msgs/msg/AudioInfo': (
        'uint8 channels\nuint32 sample_rate\nstring sample_format\nuint32 bitrate\nstring coding_format\n'),
}


# ROS4HRI's hri_msgs/Expression (ros4hri/hri_msgs, ROS 2 releases): its fields and expression constants.
RELEASED_HRI_EXPRESSION = ('std_msgs/Header header\nstring expression\nfloat32 valence\nfloat32 arousal\n'
                           'float32 confidence\n')
RELEASED_HRI_CONSTANTS = {
    'NEUTRAL': 'neutral', 'ANGRY': 'angry', 'SAD': 'sad', 'HAPPY': 'happy', 'SURPRISED': 'surprised',
    'DISGUSTED': 'disgusted', 'SCARED': 'scared', 'PLEADING': 'pleading', 'VULNERABLE': 'vulnerable',
    'DESPAIRED': 'despaired', 'GUILTY': 'guilty', 'DISAPPOINTED': 'disappointed', 'EMBARRASSED': 'embarrassed',
    'HORRIFIED': 'horrified', 'SKEPTICAL': 'skeptical', 'ANNOYED': 'annoyed', 'FURIOUS': 'furious',
    'SUSPICIOUS': 'suspicious', 'REJECTED': 'rejected', 'BORED': 'bored', 'TIRED': 'tired', 'ASLEEP': 'asleep',
    'CONFUSED': 'confused', 'AMAZED': 'amazed', 'EXCITED': 'excited'}


def share_dir(package):
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory(package))


def built_type_hash(type_name):
    package, _, name = type_name.split('/')
    description = json.loads((share_dir(package) / 'msg' / f'{name}.json').read_text())
    hashes = {h['type_name']: h['hash_string'] for h in description['type_hashes']}
    return hashes[type_name]


def released_typestore():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_KILTED)
    for type_name, text in RELEASED_AUDIO_COMMON_MSGS.items():
        store.register(get_types_from_msg(text, type_name))
    return store


@pytest.mark.parametrize('type_name', sorted(RELEASED_AUDIO_COMMON_MSGS))
def test_audio_common_type_hash_matches_released_package(type_name):
    assert built_type_hash(type_name) == released_typestore().hash_rihs01(type_name)


def test_hri_expression_matches_the_released_message():
    from hri_msgs.msg import Expression
    store = released_typestore()
    from rosbags.typesys import get_types_from_msg
    store.register(get_types_from_msg(RELEASED_HRI_EXPRESSION, 'hri_msgs/msg/Expression'))
    assert built_type_hash('hri_msgs/msg/Expression') == store.hash_rihs01('hri_msgs/msg/Expression')
    assert {name: getattr(Expression, name) for name in RELEASED_HRI_CONSTANTS} == RELEASED_HRI_CONSTANTS


def test_every_class_maps_to_a_released_expression_and_a_circumplex_point():
    from ser_models.affect import AFFECT, expression, valence_arousal
    assert {expression(label) for label in AFFECT} <= set(RELEASED_HRI_CONSTANTS.values())
    labels = list(AFFECT)
    for index, label in enumerate(labels):
        certain = [1.0 if i == index else 0.0 for i in range(len(labels))]
        assert valence_arousal(labels, certain) == AFFECT[label][1:]
    assert valence_arousal(labels, [1 / len(labels)] * len(labels)) == pytest.approx(
        tuple(sum(AFFECT[label][k] for label in labels) / len(labels) for k in (1, 2)))
    assert valence_arousal(['happy', 'sad'], [0.5, 0.5]) == pytest.approx((0.05, 0.05))
    with pytest.raises(ValueError, match='no ROS4HRI expression'):
        expression('bored')


def test_emotion_message_fields_and_hash():
    from rosbags.typesys import get_types_from_msg
    from ser_msgs.msg import Emotion

    assert Emotion.get_fields_and_field_types() == {
        'header': 'std_msgs/Header', 'label': 'string', 'confidence': 'float',
        'labels': 'sequence<string>', 'probabilities': 'sequence<float>', 'voiced': 'boolean',
        'window_start': 'builtin_interfaces/Time', 'window_duration': 'float',
        'inference_time': 'float', 'model': 'string',
    }
    store = released_typestore()
    msg_text = (share_dir('ser_msgs') / 'msg' / 'Emotion.msg').read_text()
    store.register(get_types_from_msg(msg_text, 'ser_msgs/msg/Emotion'))
    assert built_type_hash('ser_msgs/msg/Emotion') == store.hash_rihs01('ser_msgs/msg/Emotion')


def test_stand_in_is_kept_away_from_colcon_crawling():
    repo = Path(__file__).resolve().parents[1]
    assert (repo / 'msgs' / 'compat' / 'COLCON_IGNORE').is_file()


def test_ser_ros_is_in_the_ament_index():
    from ament_index_python.packages import get_package_prefix
    prefix = Path(get_package_prefix('ser_ros'))
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'ser_ros').is_file()
    assert (prefix / 'share' / 'ser_ros' / 'package.xml').is_file()
    assert os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') == 'LOCALHOST'
