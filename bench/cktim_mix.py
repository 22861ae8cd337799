"""What one CKConv's per-frequency channel mix costs in onnxruntime, and why.

    python bench/cktim_mix.py [--repeats 300] [--rounds 10]

The mix is CkTIM's largest cost: per layer, one (2B, I) x (I, O) product for every frequency of the
kernel spectrum (real and imaginary kernel parts, batch 1 here). Prints, for a single MatMul node with
a constant (F, I, 2 O) right-hand side, onnxruntime 1 thread, median thread CPU time:
- per frequency as F grows from spectra that fit in L2 to ones that do not (memory traffic would
  make the per-frequency cost grow with F);
- against the channel count (a narrower model);
- beside two other ways to write the same product: a grouped 1x1 Conv (one group per frequency)
  and one row per product (M = 1);
- onnxruntime's own DFT operator against the DFT matmul the export uses, for one layer's input;
- the shipped CkTIM (weights/cktim) on each spectral_mix setting, one window, timed in turn in one
  process round after round, so that host noise falls on all three alike.
Random weights in the single-node probes: the cost does not depend on their values.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

FRAMES = 121
REPO = Path(__file__).resolve().parents[1]


def session(nodes, inputs: dict, outputs: dict, constants: dict) -> ort.InferenceSession:
    graph = helper.make_graph(
        nodes, 'probe', [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        [numpy_helper.from_array(v, n) for n, v in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=['CPUExecutionProvider'])


def median_us(sess: ort.InferenceSession, feed: dict, repeats: int) -> float:
    for _ in range(30):
        sess.run(None, feed)
    samples = []
    for _ in range(repeats):
        started = time.thread_time()
        sess.run(None, feed)
        samples.append(time.thread_time() - started)
    return float(np.median(samples) * 1e6)


def mix_matmul(n_freq: int, channels: int, rows: int = 2):
    kernel = np.random.default_rng(0).standard_normal((n_freq, channels, 2 * channels)).astype(np.float32)
    sess = session([helper.make_node('MatMul', ['x', 'k'], ['y'])], {'x': [n_freq, rows, channels]},
                   {'y': [n_freq, rows, 2 * channels]}, {'k': kernel})
    return sess, {'x': np.ones((n_freq, rows, channels), np.float32)}


def mix_grouped_conv(n_freq: int, channels: int):
    weight = np.random.default_rng(0).standard_normal((n_freq * 2 * channels, channels, 1)).astype(np.float32)
    sess = session([helper.make_node('Conv', ['x', 'w'], ['y'], group=n_freq)], {'x': [2, n_freq * channels, 1]},
                   {'y': [2, n_freq * 2 * channels, 1]}, {'w': weight})
    return sess, {'x': np.ones((2, n_freq * channels, 1), np.float32)}


def spectral_mix_rounds(rounds: int, calls: int) -> dict[str, list[float]]:
    """Median thread CPU ms per window of the shipped CkTIM on each spectral mix, one entry per round."""
    import sys
    sys.path.insert(0, str(REPO))
    import ser_models
    window = (np.random.default_rng(1).standard_normal((1, 48000)) * 0.1).astype(np.float32)
    predictors = {mix: ser_models.load(REPO / 'weights' / 'cktim', spectral_mix=mix) for mix in ser_models.SPECTRAL_MIX}
    mfcc = next(iter(predictors.values())).model_inputs(window)
    medians = {mix: [] for mix in predictors}
    for _ in range(rounds):
        for mix, predictor in predictors.items():
            for _ in range(10):
                predictor._logits(mfcc)
            samples = []
            for _ in range(calls):
                started = time.thread_time()
                predictor._logits(mfcc)
                samples.append(time.thread_time() - started)
            medians[mix].append(float(np.median(samples) * 1e3))
    return medians


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=300)
    parser.add_argument('--rounds', type=int, default=10, help='rounds of the spectral-mix comparison')
    args = parser.parse_args(argv)
    print('one layer\'s mix, 39 channels, by frequencies (spectra bytes):')
    for n_freq in (8, 32, FRAMES, 4 * FRAMES):
        us = median_us(*mix_matmul(n_freq, 39), args.repeats)
        megabytes = n_freq * 39 * 78 * 4 / 1e6
        print(f'  F={n_freq:4d} ({megabytes:5.2f} MB): {us:7.1f} us, {us / n_freq:.2f} us per frequency')
    print(f'one layer\'s mix, {FRAMES} frequencies, by channels:')
    for channels in (16, 24, 32, 39):
        print(f'  {channels} channels: {median_us(*mix_matmul(FRAMES, channels), args.repeats):7.1f} us')
    print(f'the same mix ({FRAMES} frequencies, 39 channels) written otherwise:')
    two_rows = median_us(*mix_matmul(FRAMES, 39), args.repeats)
    grouped = median_us(*mix_grouped_conv(FRAMES, 39), args.repeats)
    one_row = median_us(*mix_matmul(FRAMES, 39, rows=1), args.repeats)
    print(f'  batched MatMul, 2 rows per product (the export): {two_rows:.1f} us')
    print(f'  grouped 1x1 Conv, one group per frequency:      {grouped:.1f} us')
    print(f'  batched MatMul, 1 row per product, x2:           {2 * one_row:.1f} us')
    n_fft = 256
    signal = np.zeros((1, 39, n_fft, 1), np.float32)
    dft_op = session([helper.make_node('DFT', ['x'], ['y'], onesided=1, axis=2)], {'x': list(signal.shape)},
                     {'y': [1, 39, n_fft // 2 + 1, 2]}, {})
    table = np.random.default_rng(0).standard_normal((FRAMES, 2 * FRAMES)).astype(np.float32)
    dft_matmul = session([helper.make_node('MatMul', ['x', 't'], ['y'])], {'x': [1, 39, FRAMES]},
                         {'y': [1, 39, 2 * FRAMES]}, {'t': table})
    print('forward transform of one layer\'s input (39 channels):')
    print(f'  onnxruntime DFT operator, {n_fft} points: {median_us(dft_op, {"x": signal}, args.repeats):.1f} us')
    print(f'  DFT matmul, {FRAMES} frequencies (the export): '
          f'{median_us(dft_matmul, {"x": np.ones((1, 39, FRAMES), np.float32)}, args.repeats):.1f} us')
    print(f'shipped CkTIM, one window, each spectral_mix in turn ({args.rounds} rounds of 100 calls, '
          'median thread CPU ms per round):')
    for mix, medians in spectral_mix_rounds(args.rounds, 100).items():
        print(f'  {mix:8s} ' + ' '.join(f'{m:.2f}' for m in medians))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
