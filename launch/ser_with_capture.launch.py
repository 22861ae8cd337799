"""ser_node together with audio_capture (ros-drivers/audio_common).

    ros2 launch ser_ros ser_with_capture.launch.py [capture_device:=hw:1] [model:=timnet_egemaps] [capture_format:=mp3]

audio_capture is started 16 kHz mono in the `audio` namespace, so ser_node's defaults (/audio/audio,
/audio/audio_info) match it; format wave (lossless S16LE) unless capture_format:=mp3, the driver's
own default, which ser_node decodes as it arrives.
"""
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, LogInfo
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from ser_ros.model_paths import DEFAULT_MODEL, MODEL_CHOICES


def generate_launch_description():
    here = Path(get_package_share_directory('ser_ros')) / 'launch'
    ser = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(here / 'ser.launch.py')),
                                   launch_arguments={'model': LaunchConfiguration('model')}.items())
    arguments = [DeclareLaunchArgument('model', default_value=DEFAULT_MODEL,
                                       description=f'shipped model for ser_node: {MODEL_CHOICES}'),
                 DeclareLaunchArgument('capture_device', default_value='', description='ALSA device, e.g. hw:1'),
                 DeclareLaunchArgument('capture_format', default_value='wave', choices=['wave', 'mp3'],
                                       description='what audio_capture publishes: wave (raw PCM) or mp3')]
    try:
        get_package_share_directory('audio_capture')
    except PackageNotFoundError:
        return LaunchDescription(arguments + [
            LogInfo(msg='audio_capture is not installed (apt install ros-$ROS_DISTRO-audio-capture); '
                        'starting ser_node alone'), ser])
    capture = Node(package='audio_capture', executable='audio_capture_node', namespace='audio',
                   parameters=[{'format': LaunchConfiguration('capture_format'), 'channels': 1,
                                'sample_rate': 16000, 'sample_format': 'S16LE',
                                'device': LaunchConfiguration('capture_device')}],
                   output='screen')
    return LaunchDescription(arguments + [capture, ser])
