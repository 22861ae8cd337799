"""The native SpectralMix kernel (ser_models.native) against its ONNX function body and numpy.

scripts/setup.sh builds the library; where a C compiler or onnxruntime's C header is missing these
tests skip with the reason, and CkTIM runs the exact graph operators (tested here too).
"""
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ser_models
from ser_models import native

CKTIM = Path(__file__).resolve().parents[1] / 'weights' / 'cktim'
FREQUENCIES, IN_CHANNELS = 7, 5


def mix_graph(out_channels: int, constant_kernel: bool = True, kernel_dtype=np.float32):
    """x (F, B, I) -> SpectralMix(x, 2x - 1, kernel) -> (y_real, y_imag), the kernel an initializer or an input."""
    rng = np.random.default_rng(out_channels)
    kernel = rng.standard_normal((2, FREQUENCIES, IN_CHANNELS, out_channels)).astype(kernel_dtype)
    nodes = [helper.make_node('Mul', ['x', 'two'], ['doubled']),
             helper.make_node('Sub', ['doubled', 'one'], ['x_imag']),
             helper.make_node('SpectralMix', ['x', 'x_imag', 'kernel_real', 'kernel_imag'], ['y_real', 'y_imag'],
                              domain=native.DOMAIN)]
    spectra = [numpy_helper.from_array(kernel[0], 'kernel_real'), numpy_helper.from_array(kernel[1], 'kernel_imag')]
    inputs = [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['frequencies', 'batch', 'channels'])]
    if not constant_kernel:
        inputs += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in spectra]
    constants = [numpy_helper.from_array(np.float32(2), 'two'), numpy_helper.from_array(np.float32(1), 'one')]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ['frequencies', 'batch', out_channels])
               for name in ('y_real', 'y_imag')]
    graph = helper.make_graph(nodes, 'mix', inputs, outputs, constants + (spectra if constant_kernel else []))
    model = helper.make_model(graph, functions=[native.spectral_mix_function()], ir_version=9,
                              opset_imports=[helper.make_opsetid('', native.FUNCTION_OPSET),
                                             helper.make_opsetid(native.DOMAIN, 1)])
    return model.SerializeToString(), kernel


def session(model: bytes, library=None, precision: str = 'float32') -> ort.InferenceSession:
    options = ort.SessionOptions()
    if library:
        options.add_session_config_entry(native.PRECISION_KEY, precision)
        options.register_custom_ops_library(str(library))
    return ort.InferenceSession(model, options, providers=['CPUExecutionProvider'])


def expected(x: np.ndarray, kernel: np.ndarray):
    spectrum = x.astype(np.complex128) + 1j * (2 * x - 1)
    product = np.einsum('fbi,fio->fbo', spectrum, kernel[0] + 1j * kernel[1])
    return product.real, product.imag


@pytest.mark.parametrize('out_channels', [3, 8, 11, 50])   # under, at and past one vector; two register blocks
@pytest.mark.parametrize('engine', ['function body', 'native float32', 'native float16'])
def test_spectral_mix_matches_numpy(library, engine, out_channels):
    model, kernel = mix_graph(out_channels)
    precision = engine.split()[-1]
    sess = session(model, library if engine.startswith('native') else None, precision)
    x = np.random.default_rng(1).standard_normal((FREQUENCIES, 3, IN_CHANNELS)).astype(np.float32)
    y_real, y_imag = sess.run(None, {'x': x})
    want_real, want_imag = expected(x, kernel)
    scale = max(np.abs(want_real).max(), np.abs(want_imag).max())
    tolerance = 2e-3 if precision == 'float16' else 1e-5    # float16 spectra: 11-bit mantissa
    assert np.abs(y_real - want_real).max() < tolerance * scale
    assert np.abs(y_imag - want_imag).max() < tolerance * scale


@pytest.mark.parametrize('kernel_dtype', [np.float32, np.float16])
def test_the_portable_loop_for_cpus_without_avx2_matches_numpy(library, monkeypatch, kernel_dtype):
    monkeypatch.setenv('SER_SPECTRAL_MIX_PORTABLE', '1')      # read when a kernel is created
    model, kernel = mix_graph(11, kernel_dtype=kernel_dtype)
    x = np.random.default_rng(5).standard_normal((FREQUENCIES, 3, IN_CHANNELS)).astype(np.float32)
    for precision in native.PRECISIONS:
        y_real, y_imag = session(model, library, precision).run(None, {'x': x})
        want_real, want_imag = expected(x, kernel.astype(np.float64))
        np.testing.assert_allclose(y_real, want_real, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(y_imag, want_imag, rtol=1e-4, atol=1e-4)


def test_kernel_given_as_an_input_is_packed_per_call(library):
    model, kernel = mix_graph(11, constant_kernel=False)
    sess = session(model, library)
    x = np.random.default_rng(2).standard_normal((FREQUENCIES, 2, IN_CHANNELS)).astype(np.float32)
    for scale in (1.0, -3.0):   # a changed kernel must be seen
        y_real, _ = sess.run(None, {'x': x, 'kernel_real': scale * kernel[0], 'kernel_imag': scale * kernel[1]})
        np.testing.assert_allclose(y_real, expected(x, scale * kernel)[0], rtol=1e-4, atol=1e-4)


def test_wrong_shapes_and_settings_are_clear_errors(library):
    model, _ = mix_graph(11)
    sess = session(model, library)
    with pytest.raises(Exception, match='SpectralMix: inputs must be'):
        sess.run(None, {'x': np.zeros((FREQUENCIES + 1, 1, IN_CHANNELS), np.float32)})
    assert sess.run(None, {'x': np.zeros((FREQUENCIES, 1, IN_CHANNELS), np.float32)})[0].shape == (FREQUENCIES, 1, 11)
    with pytest.raises(Exception, match='float16 or float32'):
        session(model, library, precision='int8')


def test_kernel_spectra_stored_in_float16_are_read_as_they_are(library):
    model, kernel = mix_graph(11, kernel_dtype=np.float16)
    x = np.random.default_rng(4).standard_normal((FREQUENCIES, 2, IN_CHANNELS)).astype(np.float32)
    y_real, y_imag = session(model, library, 'float16').run(None, {'x': x})
    want_real, want_imag = expected(x, kernel.astype(np.float64))
    np.testing.assert_allclose(y_real, want_real, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y_imag, want_imag, rtol=1e-4, atol=1e-4)
    # At float32 (and on CPUs without F16C) the half values are widened once, in portable code.
    y_real, _ = session(model, library, 'float32').run(None, {'x': x})
    np.testing.assert_allclose(y_real, want_real, rtol=1e-4, atol=1e-4)


def test_the_float16_folded_graph_keeps_its_spectra_only_in_float16(library):
    import onnx

    from ser_models.ckconv import CKConv
    from ser_models.folding import folded_path
    from ser_models.registry import build
    predictor = ser_models.load(CKTIM, spectral_mix='float16')
    assert predictor.spectral_mix == 'float16' and not predictor.folding_problem
    meta = ser_models.read_model_json(CKTIM)
    graph = onnx.load(str(folded_path(meta['onnx']['sha256'], meta['weights']['sha256'], 'float16')),
                      load_external_data=False).graph
    spectra = {name for node in graph.node if node.op_type == 'SpectralMix' for name in node.input[2:4]}
    types = {tensor.name: tensor.data_type for tensor in graph.initializer}
    ckconvs = sum(isinstance(module, CKConv) for module in build(meta['architecture']).modules())
    assert len(spectra) == 2 * ckconvs and {types[name] for name in spectra} == {onnx.TensorProto.FLOAT16}


def test_cktim_runs_each_spectral_mix_it_is_asked_for(library):
    chosen = {mix: ser_models.load(CKTIM, spectral_mix=mix) for mix in ser_models.SPECTRAL_MIX}
    assert {mix: p.spectral_mix for mix, p in chosen.items()} == {mix: mix for mix in ser_models.SPECTRAL_MIX}
    with pytest.raises(ValueError, match='spectral_mix must be one of'):
        ser_models.load(CKTIM, spectral_mix='int8')


def with_declared_mix(directory: Path, mix) -> Path:
    """A copy of the shipped CkTIM whose model.json declares `mix` (None: declares nothing)."""
    import json
    import shutil
    shutil.copytree(CKTIM, directory)
    meta = json.loads((directory / 'model.json').read_text())
    meta.pop('spectral_mix', None)
    if mix is not None:
        meta['spectral_mix'] = mix
    (directory / 'model.json').write_text(json.dumps(meta))
    return directory


@pytest.mark.parametrize('declared', [None, 'float16', 'float32', 'onnx'])
def test_auto_runs_the_spectral_mix_the_model_declares(library, tmp_path, declared):
    copy = with_declared_mix(tmp_path / 'cktim', declared)
    assert ser_models.load(copy).spectral_mix == (declared or 'float16')
    assert ser_models.load(copy, spectral_mix='auto').spectral_mix == (declared or 'float16')
    assert ser_models.load(copy, spectral_mix='onnx').spectral_mix == 'onnx'   # an explicit choice wins


def test_the_declared_spectral_mix_is_the_fastest_within_the_bound():
    from ser_models.predictor import fastest_faithful_spectral_mix
    assert fastest_faithful_spectral_mix({'float16': 4e-4, 'float32': 5e-5, 'onnx': 1e-7}) == 'float16'
    assert fastest_faithful_spectral_mix({'float16': 0.02, 'float32': 5e-5, 'onnx': 1e-7}) == 'float32'
    assert fastest_faithful_spectral_mix({'float16': 0.02, 'float32': 0.01, 'onnx': 1e-7}) == 'onnx'


def test_a_model_declaring_an_unknown_spectral_mix_is_refused(tmp_path):
    copy = with_declared_mix(tmp_path / 'cktim', 'int8')
    with pytest.raises(ser_models.ArtifactError, match='spectral_mix'):
        ser_models.load(copy)


def test_without_the_library_cktim_runs_the_exact_operators(monkeypatch, tmp_path):
    monkeypatch.setenv('SER_MODELS_CACHE', str(tmp_path))       # no library built in this cache
    monkeypatch.setattr(native, 'header_directories', lambda: [tmp_path / 'none'])
    predictor = ser_models.load(CKTIM)
    assert predictor.spectral_mix == 'onnx' and 'onnxruntime_c_api.h' in predictor.native_problem
    assert predictor.predict(np.full(16000, 0.01, np.float32), 16000).shape == (len(predictor.labels),)
