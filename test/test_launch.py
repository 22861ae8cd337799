"""The launch file and the parameter file agree with the parameters ser_node declares."""
import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / 'launch' / 'ser.launch.py'


def node_parameters():
    pytest.importorskip('rclpy', reason='rclpy missing: run the tests through scripts/test.sh')
    from ser_ros.ser_node import SerNode
    return SerNode.PARAMETERS


def launch_arguments(name):
    """A dict literal assigned at the top of the launch file, read without importing launch."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == name:
            return [key.value for key in node.value.keys]
    raise AssertionError(f'{name} not found in {LAUNCH_FILE}')


def test_every_parameter_launch_argument_is_a_node_parameter():
    parameters = node_parameters()
    arguments = launch_arguments('ARGUMENTS')
    assert set(arguments) == {'model', 'weights', 'device', 'backend', 'input_type'}
    assert set(arguments) <= set(parameters)
    launch_only = launch_arguments('LAUNCH_ONLY')
    assert set(launch_only) == {'audio_topic', 'audio_topics', 'params_file', 'namespace', 'log_level'}
    assert not set(launch_only) - {'audio_topics'} & set(parameters)


def test_config_file_documents_every_parameter_with_its_default():
    parameters = node_parameters()
    config = yaml.safe_load((REPO / 'config' / 'ser.yaml').read_text())
    values = config['/**']['ros__parameters']
    assert set(values) == set(parameters)
    for name, (default, _, _) in parameters.items():
        assert values[name] == default, name


def test_launch_file_under_launch_testing():
    if importlib.util.find_spec('launch_ros') is None or importlib.util.find_spec('launch_testing') is None:
        pytest.skip('launch_ros / launch_testing are not installed here (PyPI has no wheels for them); '
                    'the node is driven through its console script in test_node.py instead')
    from launch import LaunchContext
    spec = importlib.util.spec_from_file_location('ser_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    for entity in description.entities:
        entity.visit(context)
    from ser_ros.topics import sibling_topic
    assert sibling_topic('/audio/audio', 'audio_info') == '/audio/audio_info'
