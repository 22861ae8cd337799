"""Saving a trained torch model as an artifact directory, ONNX export included. Imports torch."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from .artifact import ONNX_FILE, WEIGHTS_FILE, sha256_of, write_model_json
from .ckconv import CKConv, dft_matrices
from .native import FUNCTION_OPSET as ONNX_OPSET
from .native import define_spectral_mix
from .registry import resolve_config


class _SharedTables(torch.nn.Module):
    """Holds tensors that many layers use as buffers, so the trace stores each once."""

    def __init__(self, model: torch.nn.Module, tables):
        super().__init__()
        self.model = model
        for index, table in enumerate(tables):
            self.register_buffer(f'table_{index}', table)

    def forward(self, x):
        return self.model(x)


def export_onnx(model: torch.nn.Module, path: Path, n_mfcc: int, frames: int) -> None:
    """Export with a dynamic batch axis; CKConvs run as DFT matmuls, generating kernels in-graph."""
    was_training = model.training
    model.eval()
    ckconvs = [m for m in model.modules() if isinstance(m, CKConv)]
    for conv in ckconvs:
        conv.use_dft_matmul = True
    tables = dft_matrices(frames, CKConv.dft_size(frames)) if ckconvs else ()
    try:
        example = torch.zeros(1, n_mfcc, frames)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            # The wrapper must be in eval mode too: the exporter restores the wrapper's mode
            # afterwards, recursively, which would leave the model training (dropout on).
            torch.onnx.export(_SharedTables(model, tables).eval(), (example,), str(path), input_names=['mfcc'],
                              output_names=['logits'],
                              dynamic_axes={'mfcc': {0: 'batch'}, 'logits': {0: 'batch'}},
                              opset_version=ONNX_OPSET, dynamo=False,
                              do_constant_folding=False)
    finally:
        for conv in ckconvs:
            conv.use_dft_matmul = False
        model.train(was_training)
    if ckconvs:
        define_spectral_mix(path)
    fold_pads_into_convs(path)


def fold_pads_into_convs(onnx_path: Path) -> int:
    """Move every zero-valued Pad that only feeds a Conv into that Conv's own pads attribute, and drop
    the nodes left unused. The exporter writes a causal (left-only) pad as a Pad node whose amounts are
    computed by a small subgraph; onnxruntime neither folds nor fuses it, and at 32 causal convolutions
    that costs TIM-Net about a tenth of its time. Outputs are unchanged (tested). Returns Pads folded."""
    import collections

    import numpy as np
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(str(onnx_path))
    graph = model.graph
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    candidates = [n for n in graph.node if n.op_type == 'Pad' and len(consumers[n.output[0]]) == 1
                  and consumers[n.output[0]][0].op_type == 'Conv']
    if not candidates:
        return 0
    # The pad amounts and values, evaluated once on a dummy input (they do not depend on its values).
    wanted = sorted({name for n in candidates for name in n.input[1:] if name})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)
                              for name in wanted)
    feeds = {i.name: np.zeros([d.dim_value or 1 for d in i.type.tensor_type.shape.dim], np.float32)
             for i in graph.input if i.name not in {t.name for t in graph.initializer}}
    values = dict(zip(wanted, ReferenceEvaluator(probe).run(wanted, feeds), strict=True))
    folded = 0
    for pad in candidates:
        conv = consumers[pad.output[0]][0]
        mode = next((a.s for a in pad.attribute if a.name == 'mode'), b'constant')
        amounts = [int(v) for v in values[pad.input[1]]]
        rank = len(amounts) // 2
        fill = values[pad.input[2]] if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
        auto_pad = next((a.s for a in conv.attribute if a.name == 'auto_pad'), b'NOTSET')
        if (mode != b'constant' or np.any(fill) or min(amounts) < 0 or any(amounts[:2] + amounts[rank:rank + 2])
                or auto_pad not in (b'NOTSET', b'')):
            continue
        spatial = amounts[2:rank] + amounts[rank + 2:]
        existing = next((list(a.ints) for a in conv.attribute if a.name == 'pads'), [0] * len(spatial))
        for attribute in [a for a in conv.attribute if a.name == 'pads']:
            conv.attribute.remove(attribute)
        conv.attribute.append(helper.make_attribute('pads', [a + b for a, b in zip(existing, spatial, strict=True)]))
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        folded += 1
    needed = {output.name for output in graph.output}
    kept = []
    for node in reversed(list(graph.node)):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    onnx.save(model, str(onnx_path))
    return folded


def share_weights_with_safetensors(onnx_path: Path, safetensors_path: Path, prefix: str = 'model.') -> int:
    """Point the ONNX initializers that are model weights at the bytes inside model.safetensors
    (ONNX external data), so the artifact stores every weight once. Returns how many were linked."""
    import json
    import struct

    import onnx
    from onnx import numpy_helper

    raw = safetensors_path.read_bytes()
    header_size = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + header_size])
    dtypes = {'F32': onnx.TensorProto.FLOAT, 'F64': onnx.TensorProto.DOUBLE, 'I64': onnx.TensorProto.INT64}
    model = onnx.load(str(onnx_path))
    linked = 0
    for tensor in model.graph.initializer:
        entry = header.get(tensor.name[len(prefix):] if tensor.name.startswith(prefix) else tensor.name)
        if not entry or dtypes.get(entry['dtype']) != tensor.data_type or list(entry['shape']) != list(tensor.dims):
            continue
        begin, end = entry['data_offsets']
        if numpy_helper.to_array(tensor).tobytes() != raw[8 + header_size + begin:8 + header_size + end]:
            continue
        tensor.ClearField('raw_data')
        tensor.ClearField('float_data')
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (('location', safetensors_path.name), ('offset', str(8 + header_size + begin)),
                           ('length', str(end - begin))):
            tensor.external_data.add(key=key, value=value)
        linked += 1
    onnx.save(model, str(onnx_path))
    return linked


def export_from_weights(meta: dict, directory: Path) -> dict:
    """Export directory's model.onnx afresh from its model.safetensors with the current exporter.
    Returns meta with new weights and onnx entries; writing model.json is the caller's."""
    from safetensors.torch import load_file

    from .registry import build
    directory = Path(directory)
    model = build(meta['architecture'])
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    export_onnx(model, directory / ONNX_FILE, meta['architecture']['n_mfcc'], meta['architecture']['frames'])
    share_weights_with_safetensors(directory / ONNX_FILE, directory / WEIGHTS_FILE)
    return {**meta, 'weights': {'file': WEIGHTS_FILE, 'sha256': sha256_of(directory / WEIGHTS_FILE)},
            'onnx': {'file': ONNX_FILE, 'sha256': sha256_of(directory / ONNX_FILE)}}


def save_artifact(model: torch.nn.Module, directory, *, architecture: dict, labels: list[str], features,
                  window_seconds: float, model_id: str, provenance: dict | None = None,
                  speaker_normalization: dict | None = None, with_onnx: bool = True) -> Path:
    """Write model.safetensors, model.onnx and model.json into directory; return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    architecture = resolve_config(architecture)
    model.eval()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    meta = {
        'format_version': 1,
        'model_id': model_id,
        'architecture': architecture,
        'labels': list(labels),
        'features': features.to_dict(),
        'sample_rate': features.sample_rate,
        'window_seconds': float(window_seconds),
        'weights': {'file': WEIGHTS_FILE, 'sha256': sha256_of(directory / WEIGHTS_FILE)},
        'provenance': provenance or {},
    }
    if speaker_normalization:
        meta['speaker_normalization'] = speaker_normalization
    if with_onnx:
        cpu_model = model.to('cpu')
        export_onnx(cpu_model, directory / ONNX_FILE, architecture['n_mfcc'], architecture['frames'])
        share_weights_with_safetensors(directory / ONNX_FILE, directory / WEIGHTS_FILE)
        meta['onnx'] = {'file': ONNX_FILE, 'sha256': sha256_of(directory / ONNX_FILE)}
    write_model_json(directory, meta)
    return directory
