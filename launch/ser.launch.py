"""Start ser_node on an audio topic: ros2 launch ser_ros ser.launch.py model:=lmu audio_topic:=/mic/audio"""
from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from ser_ros.model_paths import DEFAULT_MODEL, MODEL_CHOICES
from ser_ros.topics import sibling_topic

# launch argument -> (default, description); each also names a ser_node parameter unless marked
ARGUMENTS = {
    'model': (DEFAULT_MODEL, f'shipped model: {MODEL_CHOICES}'),
    'weights': ('', 'artifact directory overriding the shipped weights'),
    'device': ('auto', 'auto, cpu, cuda or mps'),
    'backend': ('onnxruntime', 'onnxruntime or torch'),
    'input_type': ('data', 'data: AudioData; stamped: AudioDataStamped (e.g. /audio/audio_stamped)'),
}
LAUNCH_ONLY = {
    'audio_topic': ('/audio/audio', 'AudioData topic; AudioInfo is read from <its namespace>/audio_info'),
    'audio_topics': ('', 'several streams instead, e.g. "[/front/audio, /rear/audio]"; each publishes '
                         '<its namespace>/emotion'),
    'params_file': (str(Path(get_package_share_directory('ser_ros')) / 'config' / 'ser.yaml'),
                    'parameter file'),
    'namespace': ('', 'namespace of the node (and of its emotion topic)'),
    'log_level': ('info', 'debug, info, warn, error'),
}


def make_node(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in {**ARGUMENTS, **LAUNCH_ONLY}}
    overrides = {name: value[name] for name in ARGUMENTS}
    remappings = [('audio', value['audio_topic']), ('audio_info', sibling_topic(value['audio_topic'], 'audio_info'))]
    if value['audio_topics'].strip():
        overrides['audio_topics'] = [str(topic) for topic in yaml.safe_load(value['audio_topics'])]
        remappings = []
    return [Node(
        package='ser_ros', executable='ser_node', name='ser_node', namespace=value['namespace'],
        parameters=[value['params_file'], overrides],
        remappings=remappings,
        arguments=['--ros-args', '--log-level', value['log_level']],
        output='screen', emulate_tty=True,
    )]


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in {**ARGUMENTS, **LAUNCH_ONLY}.items()]
    return LaunchDescription(declared + [OpaqueFunction(function=make_node)])
