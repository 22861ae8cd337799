"""Constant folding of an ONNX graph once per machine, in a child process, cached on disk.

CkTIM's graphs generate their kernel spectra from the generator weights, and onnxruntime folds that
subgraph at every session load: about 140 MB of temporaries on top of what the folded graph needs,
in the loading process's peak RSS. Here a child process folds the graph once (optimisation level
EXTENDED, which is portable across CPUs) and saves it with its initializers beside it; later loads
read the folded copy, in this process and in every node after it.

    python -m ser_models.folding SOURCE.onnx TARGET.onnx [LIBRARY PRECISION]      (what the child runs)

Where the native spectral-mix library (ser_models.native) is given, the child registers it, so the
folded graph keeps its SpectralMix nodes, and stores their kernel spectra as float16 when that is the
precision asked for (a float32 copy would sit in the session beside the kernel's own). The cache key is
the graph's and weights' sha256, the onnxruntime version, and the library's precision if one was given.
The cache lives in $SER_MODELS_CACHE, else $XDG_CACHE_HOME/ser_ros, else ~/.cache/ser_ros. Where it
cannot be written or the child fails, the caller loads the original graph and folds in process as before.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FOLDED_FILE = 'model.onnx'
INITIALIZERS_FILE = 'model.bin'


def cache_root() -> Path:
    explicit = os.environ.get('SER_MODELS_CACHE')
    if explicit:
        return Path(explicit)
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'ser_ros'


def folded_path(onnx_sha256: str, weights_sha256: str, spectral_mix: str | None = None) -> Path:
    import onnxruntime as ort
    kept = f':spectral-mix-nodes:{spectral_mix}' if spectral_mix else ''
    key = hashlib.sha256(f'{onnx_sha256}:{weights_sha256}:{ort.__version__}{kept}'.encode()).hexdigest()[:20]
    return cache_root() / 'folded' / key / FOLDED_FILE


def folded_model(source: Path, onnx_sha256: str, weights_sha256: str, native_library: Path | None = None,
                 spectral_mix: str = 'float32') -> tuple[Path | None, str]:
    """The cached folded copy of source, made now if missing; (None, reason) where that fails.
    With native_library, the copy is for sessions that register it at this spectral_mix precision."""
    target = folded_path(onnx_sha256, weights_sha256, spectral_mix if native_library else None)
    if target.is_file() and (target.parent / INITIALIZERS_FILE).is_file():
        return target, ''
    try:
        target.parent.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix='.staging-', dir=target.parent.parent))
    except OSError as error:
        return None, f'cache not writable: {error}'
    try:
        command = [sys.executable, '-m', 'ser_models.folding', str(source), str(staging / FOLDED_FILE)]
        done = subprocess.run(command + ([str(native_library), spectral_mix] if native_library else []),
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            return None, f'folding failed: {done.stderr.strip()[-300:]}'
        try:
            os.rename(staging, target.parent)     # atomic; another process may have won the race
        except OSError:
            if not target.is_file():
                raise
        return target, ''
    except (OSError, subprocess.SubprocessError) as error:
        return None, f'folding failed: {error}'
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fold(source: Path, target: Path, native_library: Path | None = None, spectral_mix: str = 'float32') -> None:
    import onnxruntime as ort
    options = ort.SessionOptions()
    if native_library:
        options.register_custom_ops_library(str(native_library))
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry('session.optimized_model_external_initializers_file_name', INITIALIZERS_FILE)
    options.add_session_config_entry('session.optimized_model_external_initializers_min_size_in_bytes', '1024')
    ort.InferenceSession(str(source), options, providers=['CPUExecutionProvider'])
    if native_library and spectral_mix == 'float16':   # only the library runs this copy: no function body
        from .native import store_spectra_as_half
        store_spectra_as_half(target, INITIALIZERS_FILE)
    elif native_library:   # onnxruntime saves no model-local functions: the body goes back in
        from .native import define_spectral_mix
        define_spectral_mix(target, only_if_used=True)


if __name__ == '__main__':
    fold(Path(sys.argv[1]), Path(sys.argv[2]), *([Path(sys.argv[3]), sys.argv[4]] if len(sys.argv) > 4 else []))
