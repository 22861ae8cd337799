"""The SpectralMix operator: its ONNX function body, and its native kernel built from spectral_mix.c.

CkTIM's exported graphs call each CKConv's per-frequency channel mix as the node
ser_models.ckconv::SpectralMix, a model-local ONNX function. Without the native library onnxruntime
inlines the function (plain MatMuls, exact float32); with it registered, the library's kernel runs
instead (float16 kernel spectra packed once, or float32 ones read in place).

    python -m ser_models.native build [--fetch-headers]

builds the library into the cache (ser_models.folding.cache_root()/native). It needs a C compiler
and onnxruntime's C API header, which the onnxruntime wheel does not ship: taken from
$SER_ORT_INCLUDE, /usr/include/onnxruntime, or the cache, where --fetch-headers puts the headers
of Debian's libonnxruntime-dev package (the C API is backward compatible, so an older header
serves a newer onnxruntime). Only an explicit build fetches anything; loading never does.
"""
from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from ..folding import cache_root

DOMAIN = 'ser_models.ckconv'
FUNCTION_OPSET = 17
SOURCE = Path(__file__).with_name('spectral_mix.c')
LIBRARY_NAME = 'libser_spectral_mix.so'
HEADER = 'onnxruntime_c_api.h'
PRECISION_KEY = 'ser_ros.spectral_mix_precision'
PRECISIONS = ('float16', 'float32')
DEBIAN_INDEX = 'https://deb.debian.org/debian/dists/trixie/main/binary-amd64/Packages.xz'
DEBIAN_POOL = 'https://deb.debian.org/debian/'
HEADER_PACKAGE = 'libonnxruntime-dev'


class NativeUnavailableError(RuntimeError):
    """The library cannot be built or found here; the message says why."""


def spectral_mix_function():
    """The ONNX body of SpectralMix nodes: ser_models.ckconv.mix_spectra in plain operators."""
    from onnx import helper
    body = [
        helper.make_node('Concat', ['x_real', 'x_imag'], ['stacked'], axis=1),       # (F, 2B, I)
        helper.make_node('MatMul', ['stacked', 'kernel_real'], ['by_real']),
        helper.make_node('MatMul', ['stacked', 'kernel_imag'], ['by_imag']),
        helper.make_node('Split', ['by_real'], ['real_by_real', 'imag_by_real'], axis=1),
        helper.make_node('Split', ['by_imag'], ['real_by_imag', 'imag_by_imag'], axis=1),
        helper.make_node('Sub', ['real_by_real', 'imag_by_imag'], ['y_real']),
        helper.make_node('Add', ['real_by_imag', 'imag_by_real'], ['y_imag']),
    ]
    return helper.make_function(DOMAIN, 'SpectralMix', ['x_real', 'x_imag', 'kernel_real', 'kernel_imag'],
                                ['y_real', 'y_imag'], body, [helper.make_opsetid('', FUNCTION_OPSET)])


def define_spectral_mix(onnx_path: Path, only_if_used: bool = False) -> None:
    """Give a graph's SpectralMix nodes their function body and opset import (external data untouched)."""
    import onnx
    from onnx import helper
    model = onnx.load(str(onnx_path), load_external_data=False)
    if only_if_used and not any(n.op_type == 'SpectralMix' and n.domain == DOMAIN for n in model.graph.node):
        return
    del model.functions[:]
    model.functions.append(spectral_mix_function())
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    onnx.save(model, str(onnx_path))


def store_spectra_as_half(onnx_path: Path, external_file: str) -> int:
    """Store the constant kernel spectra of a graph's SpectralMix nodes as float16, the values the native
    kernel rounds them to at float16 precision, so the session does not also hold them in float32.
    For a folded graph that only runs with the library at that precision; returns tensors converted."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(onnx_path))
    spectra = {name for node in model.graph.node if node.op_type == 'SpectralMix' and node.domain == DOMAIN
               for name in node.input[2:4]}
    converted = 0
    for tensor in model.graph.initializer:
        if tensor.name in spectra and tensor.data_type == onnx.TensorProto.FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
            converted += 1
    kept = [info for info in model.graph.value_info if info.name not in spectra]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    (onnx_path.parent / external_file).unlink(missing_ok=True)   # onnx.save appends to an existing file
    onnx.save(model, str(onnx_path), save_as_external_data=True, location=external_file, size_threshold=1024)
    return converted


def header_directories() -> list[Path]:
    explicit = os.environ.get('SER_ORT_INCLUDE')
    return [Path(p) for p in ([explicit] if explicit else [])] + [Path('/usr/include/onnxruntime'),
                                                                   cache_root() / 'native' / 'include']


def find_headers() -> Path:
    for directory in header_directories():
        if (directory / HEADER).is_file():
            return directory
    raise NativeUnavailableError(f'no {HEADER} in {", ".join(map(str, header_directories()))} '
                            f'(python -m ser_models.native build --fetch-headers gets it)')


def compiler() -> str:
    for candidate in (os.environ.get('CC'), 'cc', 'gcc', 'clang'):
        if candidate and shutil.which(candidate):
            return candidate
    raise NativeUnavailableError('no C compiler (cc, gcc or clang) on PATH')


def library_path(headers: Path) -> Path:
    key = hashlib.sha256(SOURCE.read_bytes() + (headers / HEADER).read_bytes()).hexdigest()[:20]
    return cache_root() / 'native' / key / LIBRARY_NAME


def build(quiet: bool = True) -> Path:
    """The library for this source and header, compiled now if the cache has none."""
    headers = find_headers()
    target = library_path(headers)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix='.staging-', dir=target.parent))
    try:
        command = [compiler(), '-O3', '-std=c11', '-Wall', '-shared', '-fPIC', '-fvisibility=hidden',
                   f'-I{headers}', str(SOURCE), '-o', str(staging / LIBRARY_NAME)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise NativeUnavailableError(f'{" ".join(command)} failed: {done.stderr.strip()[-500:]}')
        if not quiet:
            print(' '.join(command))
        os.replace(staging / LIBRARY_NAME, target)   # atomic: a concurrent build may have won the race
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def library() -> tuple[Path | None, str]:
    """(path, '') of the library, built now if headers and a compiler are here; else (None, reason)."""
    try:
        return build(), ''
    except (NativeUnavailableError, OSError, subprocess.SubprocessError) as error:
        return None, str(error)


def _debian_stanza(package: str) -> dict:
    with urllib.request.urlopen(DEBIAN_INDEX, timeout=120) as response:
        index = lzma.decompress(response.read()).decode()
    for stanza in index.split('\n\n'):
        fields = dict(line.split(': ', 1) for line in stanza.splitlines() if ': ' in line and not line[0].isspace())
        if fields.get('Package') == package:
            return fields
    raise NativeUnavailableError(f'{package} is not in {DEBIAN_INDEX}')


def _ar_members(archive: bytes):
    """(name, bytes) of each member of a Unix ar archive (the .deb container)."""
    if not archive.startswith(b'!<arch>\n'):
        raise NativeUnavailableError('not a Debian package (no ar header)')
    offset = 8
    while offset + 60 <= len(archive):
        header = archive[offset:offset + 60]
        name, size = header[:16].decode().strip().rstrip('/'), int(header[48:58].decode().strip())
        yield name, archive[offset + 60:offset + 60 + size]
        offset += 60 + size + (size & 1)


def fetch_headers() -> Path:
    """Download Debian's onnxruntime dev package (checked against its index's sha256) and keep its headers."""
    fields = _debian_stanza(HEADER_PACKAGE)
    with urllib.request.urlopen(DEBIAN_POOL + fields['Filename'], timeout=120) as response:
        package = response.read()
    if hashlib.sha256(package).hexdigest() != fields['SHA256']:
        raise NativeUnavailableError(f'{fields["Filename"]}: sha256 does not match the Debian index')
    data = next((blob for name, blob in _ar_members(package) if name.startswith('data.tar')), None)
    if data is None:
        raise NativeUnavailableError(f'{fields["Filename"]}: no data.tar member')
    target = cache_root() / 'native' / 'include'
    target.mkdir(parents=True, exist_ok=True)
    prefix = './usr/include/onnxruntime/'
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            name = member.name[len(prefix):] if member.name.startswith(prefix) else ''
            if member.isfile() and name.endswith('.h') and '/' not in name:
                (target / name).write_bytes(tar.extractfile(member).read())
    if not (target / HEADER).is_file():
        raise NativeUnavailableError(f'{fields["Filename"]} holds no {HEADER}')
    return target


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('command', choices=['build'])
    parser.add_argument('--fetch-headers', action='store_true',
                        help=f'download {HEADER_PACKAGE} from Debian when no header is found')
    args = parser.parse_args(argv)
    try:
        find_headers()
    except NativeUnavailableError:
        if not args.fetch_headers:
            raise
        print(f'fetched onnxruntime headers into {fetch_headers()}')
    print(f'native spectral mix: {build(quiet=False)}')
    return 0
