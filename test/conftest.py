"""Shared fixtures: paths, the corpora, and a live rclpy context on loopback-only DDS."""
import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get('SER_DATA_DIR', REPO.parent / 'shared' / 'data'))


def pytest_configure(config):
    # Every ROS participant a test starts must stay on loopback.
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_HOME', str(REPO / '.ros'))
    # The checkout's cache, where scripts/setup.sh builds the native SpectralMix library (as env.sh sets).
    os.environ.setdefault('SER_MODELS_CACHE', str(REPO / '.ros' / 'ser_models'))


@pytest.fixture(scope='session')
def data_dir():
    """The corpora folder; tests that need it skip with the reason when it is absent."""
    if not (DATA_DIR / 'manifest.csv').is_file():
        pytest.skip(f'corpora not found: {DATA_DIR}/manifest.csv is absent (set SER_DATA_DIR)')
    return DATA_DIR


@pytest.fixture(scope='session')
def library():
    """The native SpectralMix library (scripts/setup.sh builds it); skips with the reason where it is
    missing, e.g. without a C compiler or onnxruntime's C header."""
    from ser_models import native
    path, problem = native.library()
    if path is None:
        pytest.skip(f'native spectral mix unavailable: {problem}')
    return path


@pytest.fixture
def ros_node(request):
    """A fresh rclpy context and node for one test; torn down afterwards."""
    rclpy = pytest.importorskip('rclpy', reason='rclpy missing: run the tests through scripts/test.sh')
    from rclpy.executors import SingleThreadedExecutor
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f'test_{request.node.name[:40]}'.replace('[', '_').replace(']', '_')
                             .replace('-', '_'), context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    node.executor_for_test = executor
    yield node
    executor.shutdown()
    node.destroy_node()
    context.try_shutdown()


def spin_until(node, predicate, timeout=10.0):
    """Spin the test node's executor until predicate() is true; return whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        node.executor_for_test.spin_once(timeout_sec=0.05)
    return predicate()
