"""ament_python package ser_ros: the node, the ROS-free model core and the training tools."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'ser_ros'


def shipped_weights():
    """data_files entries for every shipped model artifact directory under weights/ (an ensemble's members
    are folders inside its own)."""
    entries = []
    for model_dir in sorted(glob('weights/*/**/', recursive=True)):
        files = [f for f in glob(model_dir + '*') if os.path.isfile(f)]
        if files:
            entries.append((f'share/{PACKAGE}/{model_dir.rstrip("/")}', files))
    return entries


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=['ser_ros', 'ser_ros.*', 'ser_models', 'ser_models.*',
                                    'training', 'training.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml')),
        (f'share/{PACKAGE}/data', ['test/data/demo_bag.json']),
        (f'share/{PACKAGE}/data/demo_bag', glob('test/data/demo_bag/*')),
    ] + shipped_weights(),
    package_data={'ser_models.native': ['spectral_mix.c']},   # compiled on first use (ser_models.native)
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='ser_ros maintainers',
    maintainer_email='ser-ros@example.org',
    description='Speech emotion recognition for robots on ROS 2',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'ser_node = ser_ros.ser_node:main',
            'ser-replay = ser_ros.replay:main',
            'ser-bag-eval = ser_ros.bag_eval:main',
            'ser-demo = ser_ros.demo:main',
        ],
    },
)
