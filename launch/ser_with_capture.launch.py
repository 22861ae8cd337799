"""ser_node together with audio_capture (ros-drivers/audio_common) publishing raw PCM.

    ros2 launch ser_ros ser_with_capture.launch.py [capture_device:=hw:1] [model:=timnet]

audio_capture is started with format:=wave (its default, mp3, is not raw PCM), 16 kHz mono S16LE in
the `audio` namespace, so ser_node's defaults (/audio/audio, /audio/audio_info) match it.
"""
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, LogInfo
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description():
    here = Path(get_package_share_directory('ser_ros')) / 'launch'
    ser = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(here / 'ser.launch.py')),
                                   launch_arguments={'model': LaunchConfiguration('model')}.items())
    arguments = [DeclareLaunchArgument('model', default_value='timnet',
                                       description='shipped model for ser_node: timnet, cktim or lmu'),
                 DeclareLaunchArgument('capture_device', default_value='', description='ALSA device, e.g. hw:1')]
    try:
        get_package_share_directory('audio_capture')
    except PackageNotFoundError:
        return LaunchDescription(arguments + [
            LogInfo(msg='audio_capture is not installed (apt install ros-$ROS_DISTRO-audio-capture); '
                        'starting ser_node alone'), ser])
    capture = Node(package='audio_capture', executable='audio_capture_node', namespace='audio',
                   parameters=[{'format': 'wave', 'channels': 1, 'sample_rate': 16000, 'sample_format': 'S16LE',
                                'device': LaunchConfiguration('capture_device')}],
                   output='screen')
    return LaunchDescription(arguments + [capture, ser])
