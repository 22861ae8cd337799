"""How compressible are CkTIM's learned kernels? Two ways to fewer bytes per window, checked on the weights.

    python bench/cktim_kernels.py [--weights weights/cktim] [--length 121]

For every CKConv, at the node's window length, prints:
- lags: how many lags from the current sample hold 99 % / 99.9 % of the kernel's energy (a short
  direct convolution could replace the spectra only if this is small);
- rank: the rank of the kernel as an (out x in, lags) matrix holding 99 % / 99.9 % of its energy, of
  at most the generator's hidden width + 1 (a factorised mix could cost less only if this is small);
- bins: how many of the rfft bins the model keeps hold 99.9 % of the spectrum's energy.
No timing: these are properties of the weights, the same on every machine.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def count_for(energy: np.ndarray, fraction: float) -> int:
    """Fewest leading entries of energy (already ordered) that hold fraction of its sum."""
    cumulative = np.cumsum(energy) / energy.sum()
    return int(np.searchsorted(cumulative, fraction)) + 1


def kernel_profile(kernel: np.ndarray, n_fft: int, generator_rank: int) -> dict:
    """kernel (O, I, L) with index 0 the current sample; generator_rank bounds its rank."""
    lag_energy = (kernel ** 2).sum(axis=(0, 1))
    singular = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)
    spectrum = np.abs(np.fft.rfft(kernel, n=n_fft)) ** 2
    bins = np.sort(spectrum.sum(axis=(0, 1)))[::-1]
    return {'lags_99': count_for(lag_energy, 0.99), 'lags_999': count_for(lag_energy, 0.999),
            'rank_99': count_for(singular ** 2, 0.99), 'rank_999': count_for(singular ** 2, 0.999),
            'bins_999': count_for(bins, 0.999), 'lags': kernel.shape[-1], 'bins_total': len(bins),
            'max_rank': generator_rank}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', default=str(REPO / 'weights' / 'cktim'))
    parser.add_argument('--length', type=int, default=121, help='frames per window (121 for 3 s)')
    args = parser.parse_args(argv)

    import ser_models
    model = ser_models.load(args.weights, backend='torch').model
    convs = [m for m in model.modules() if isinstance(m, ser_models.ckconv.CKConv)]
    print(f'{len(convs)} CKConvs at {args.length} frames')
    print('layer  lags 99%  lags 99.9%  rank 99%  rank 99.9%  bins 99.9%')
    for index, conv in enumerate(convs):
        with torch.no_grad():
            kernel = conv.kernel(args.length).flip(-1).numpy()
        # The generator's last layer maps `hidden` features plus a bias to every kernel value.
        p = kernel_profile(kernel, conv.fft_size(args.length), conv.generator.head.in_features + 1)
        print(f'{index:5d}  {p["lags_99"]:4d}/{p["lags"]}  {p["lags_999"]:6d}/{p["lags"]}  '
              f'{p["rank_99"]:4d}/{p["max_rank"]}  {p["rank_999"]:6d}/{p["max_rank"]}  '
              f'{p["bins_999"]:6d}/{p["bins_total"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
