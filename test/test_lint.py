"""ruff over every Python file of the project."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    if shutil.which('ruff') is None and subprocess.run(
            [sys.executable, '-m', 'ruff', '--version'], capture_output=True).returncode != 0:
        pytest.skip('ruff is not installed (scripts/setup.sh installs it)')
    result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache', str(REPO)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
