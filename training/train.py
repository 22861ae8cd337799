"""Train CkTIM-net, TIM-Net or LMU on emotional speech corpora.

    python -m training.train --config config/train/cktim.yaml --out runs/cktim \
        [--preset NAME ...] [--set training.epochs=30 ...] [--resume]

Writes, per fold: an artifact (model.json, model.safetensors, model.onnx), per-epoch metrics,
test metrics, confusion-matrix and curve plots; plus the resolved config, environment info and
a summary over folds. Multi-GPU (or multi-process CPU): torchrun --nproc_per_node N -m training.train ...
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from threadpoolctl import threadpool_limits
from torch import nn
from torch.nn import functional
from tqdm import tqdm

from ser_models import FeatureConfig, build, save_artifact
from ser_models.features import MfccExtractor, SpeakerNormalizer
from ser_models.predictor import TorchPredictor, resolve_device
from ser_models.registry import count_parameters, resolve_config
from ser_models.windowing import predict_clips

from . import config as config_module
from .classical import cached_features, out_of_speaker_probabilities, standardise_per_speaker
from .data import ClipSet, WindowBatcher
from .datasets import labels_present, load_clips
from .distill import Teacher, allowed_log_softmax
from .metrics import classification_metrics
from .plots import plot_confusion, plot_curves
from .splits import make_splits, speaker_folds

REPO = Path(__file__).resolve().parents[1]
EVAL_HOP_SECONDS = 0.5
FEATURE_TARGET_LIMIT = 5.0   # standard deviations: training.feature_targets beyond are clipped
CLIP_TEACHER_GROUPS = 4    # speaker groups of training.clip_teacher's out-of-speaker fits


class Distributed:
    """torchrun's environment, or a single process."""

    def __init__(self):
        self.world = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        self.local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        self.enabled = self.world > 1

    def start(self, device: str):
        if self.enabled:
            backend = 'nccl' if device.startswith('cuda') else 'gloo'
            torch.distributed.init_process_group(backend=backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.enabled:
            torch.distributed.barrier()

    def from_main(self, values: dict) -> dict:
        """Rank 0's values on every rank (e.g. its validation scores), so all ranks decide alike."""
        if not self.enabled:
            return values
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        torch.distributed.broadcast(tensor, src=0)
        return dict(zip(keys, tensor.tolist(), strict=True))

    def mean(self, values: dict) -> dict:
        """The mean over ranks of each value (e.g. training loss over every rank's share of the data)."""
        if not self.enabled:
            return values
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return {k: v / self.world for k, v in zip(keys, tensor.tolist(), strict=True)}

    def stop(self):
        """Leave together: a rank that tears gloo down while its peer still talks can abort the peer."""
        if self.enabled:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def pick_device(requested: str, dist: Distributed) -> str:
    device, warning = resolve_device(requested, 'torch')
    if warning and dist.main:
        print(f'[train] {warning}', flush=True)
    if device == 'cuda' and dist.enabled:
        return f'cuda:{dist.local_rank}'
    return device


def git_commit() -> str:
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or 'unknown'
    except (OSError, subprocess.SubprocessError):
        return 'unknown'


def environment_info(device: str, dist: Distributed) -> dict:
    import onnxruntime
    return {'python': sys.version.split()[0], 'torch': torch.__version__, 'numpy': np.__version__,
            'onnxruntime': onnxruntime.__version__, 'platform': platform.platform(),
            'cpu_count': os.cpu_count(), 'device': device, 'world_size': dist.world,
            'commit': git_commit(), 'started': time.strftime('%Y-%m-%dT%H:%M:%S%z')}


def sampling_weights(datasets: np.ndarray, labels: np.ndarray, balance: bool,
                     balance_classes: bool) -> np.ndarray | None:
    """Each training clip's chance of being drawn, or None for a plain shuffle. balance: every corpus
    equally often; balance_classes: every label equally often (with balance, each corpus equally often
    within a label), so a label only one corpus has (EMOVO's disgust) is not drawn a quarter as often."""
    def inverse_counts(keys) -> np.ndarray:
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        return 1.0 / counts[inverse]

    if balance_classes and balance:
        corpora_per_label = {label: len(set(datasets[labels == label])) for label in set(labels)}
        weights = inverse_counts([f'{d}/{label}' for d, label in zip(datasets, labels, strict=True)])
        weights /= [corpora_per_label[label] for label in labels]
    elif balance_classes:
        weights = inverse_counts(labels)
    elif balance:
        weights = inverse_counts(datasets)
    else:
        return None
    return weights / weights.sum()


def label_shares(clips, labels: list[str], data: dict) -> np.ndarray:
    """Each label's share of the training draws of these clips under the config's `data` sampling
    settings (sampling_weights), in `labels` order."""
    emotions = np.array([clip.emotion for clip in clips])
    weights = sampling_weights(np.array([clip.dataset for clip in clips]), emotions,
                               data.get('balance', False), data.get('balance_classes', False))
    if weights is None:
        weights = np.full(len(clips), 1.0 / len(clips))
    return np.array([weights[emotions == label].sum() for label in labels])


def corpus_classes(clips, labels: list[str]) -> np.ndarray:
    """(clips, labels) booleans: the labels among the given clips of each clip's corpus."""
    present = {}
    for clip in clips:
        present.setdefault(clip.dataset, set()).add(clip.emotion)
    return np.array([[label in present[clip.dataset] for label in labels] for clip in clips])


def corpus_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor,
                         smoothing: float) -> torch.Tensor:
    """Cross-entropy with label smoothing over each window's allowed classes only: the others take no
    probability and no smoothing mass (torch's CrossEntropyLoss where every class is allowed)."""
    log_probs = allowed_log_softmax(logits, allowed)
    spread = allowed.float() / allowed.sum(dim=-1, keepdim=True)
    wanted = (1.0 - smoothing) * functional.one_hot(targets, logits.shape[-1]).float() + smoothing * spread
    return -(wanted * log_probs).sum(dim=-1).mean()


def epoch_order(indices: np.ndarray, weights: np.ndarray | None, copies: int, rng) -> np.ndarray:
    """Training order for one epoch: shuffled copies, or with sampling weights a weighted draw."""
    count = len(indices) * copies
    if weights is None:
        return np.concatenate([rng.permutation(indices) for _ in range(copies)])
    return rng.choice(indices, size=count, replace=True, p=weights)


def clip_probabilities(model, clip_set: ClipSet, indices, config: dict, device: str) -> np.ndarray:
    """Clip probabilities through the node's scoring path (ser_models.windowing.predict_clips)."""
    model.eval()
    features = FeatureConfig.from_dict(config['features'])
    meta = {'labels': clip_set.labels, 'model_id': 'in-training', 'sample_rate': features.sample_rate,
            'window_seconds': config['window_seconds'], 'features': features.to_dict()}
    predictor = TorchPredictor(meta, threads=0, device=device, model=model)
    normalizers = None if clip_set.normalizers is None else [clip_set.normalizers[i] for i in indices]
    return predict_clips(predictor, [clip_set.audio[i] for i in indices], predictor.sample_rate, EVAL_HOP_SECONDS,
                         normalizers=normalizers)


def score(model, clip_set, indices, config, device) -> dict:
    probabilities = clip_probabilities(model, clip_set, indices, config, device)
    targets = clip_set.targets[np.asarray(indices, dtype=np.int64)]
    metrics = classification_metrics(targets, probabilities.argmax(axis=1), clip_set.labels)
    eps = 1e-7
    metrics['loss'] = float(-np.mean(np.log(probabilities[np.arange(len(targets)), targets] + eps))) \
        if len(targets) else 0.0
    return metrics


def make_optimizer(parameters, t: dict):
    parameters = list(parameters)
    if t['optimizer'] == 'adam':
        return torch.optim.Adam(parameters, lr=t['lr'], betas=tuple(t['betas']), weight_decay=t['weight_decay'])
    if t['optimizer'] == 'adamw':
        return torch.optim.AdamW(parameters, lr=t['lr'], betas=tuple(t['betas']), weight_decay=t['weight_decay'])
    if t['optimizer'] == 'sgd':
        return torch.optim.SGD(parameters, lr=t['lr'], momentum=0.9, weight_decay=t['weight_decay'])
    raise ValueError(f"unknown optimizer {t['optimizer']!r}")


def make_scheduler(optimizer, t: dict, mode: str):
    if t['scheduler'] == 'plateau':
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=t['plateau_factor'],
                                                          patience=t['plateau_patience'], min_lr=t['min_lr'])
    if t['scheduler'] == 'steps':    # a plateau schedule replayed: drops at the epochs given
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(epoch) - 1 for epoch in t['lr_drops']],
                                                    gamma=t['plateau_factor'])
    if t['scheduler'] == 'cosine':
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t['epochs'], eta_min=t['min_lr'])
    if t['scheduler'] == 'none':
        return None
    raise ValueError(f"unknown scheduler {t['scheduler']!r}")


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -scale (Ganin & Lempitsky, 2015)."""

    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


class EmbeddingHead(nn.Module):
    """A linear head on the embedding the model's emotion classifier reads (kept by a forward hook): the
    speaker adversary, behind gradient reversal, and the whole-clip feature regressor. Never exported."""

    def __init__(self, model: nn.Module, outputs: int):
        super().__init__()
        self.head = nn.Linear(model.classifier.in_features, outputs)
        self.embedding = None
        model.classifier.register_forward_pre_hook(self._keep)

    def _keep(self, module, inputs):
        self.embedding = inputs[0]

    def forward(self, reversal: float | None = None) -> torch.Tensor:
        """The head on the last forward pass's embedding; with reversal, its gradient flipped and scaled."""
        embedding = self.embedding if reversal is None else GradientReversal.apply(self.embedding, reversal)
        return self.head(embedding)


class FoldTrainer:
    """Trains one split, with checkpoints every epoch and resume."""

    def __init__(self, config, architecture, clip_set, split_indices, batcher, device, dist, fold_dir):
        self.config, self.architecture, self.clip_set = config, architecture, clip_set
        self.train_idx, self.val_idx, self.test_idx = split_indices
        self.batcher, self.device, self.dist, self.fold_dir = batcher, device, dist, fold_dir
        self.t = config['training']
        torch.manual_seed(self.t['seed'])
        self.model = build(architecture).to(device)
        self.net = self.model
        if dist.enabled:
            ids = [dist.local_rank] if device.startswith('cuda') else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.adversary = None
        if self.t['speaker_adversarial'] > 0:
            speakers = {speaker: i for i, speaker in enumerate(sorted({clip_set.clips[i].speaker_key
                                                                       for i in self.train_idx}))}
            self.adversary = EmbeddingHead(self.model, len(speakers)).to(device)
            self.speaker_targets = np.array([speakers.get(c.speaker_key, -1) for c in clip_set.clips])
        self.feature_head = None
        if self.t['feature_targets']:
            if float(self.t['feature_target_weight']) < 0:
                raise ValueError(f"training.feature_target_weight must be >= 0, got {self.t['feature_target_weight']}")
            self.feature_targets = self.clip_feature_targets()
            self.feature_head = EmbeddingHead(self.model, self.feature_targets.shape[1]).to(device)
        self.teacher = None
        if self.t['teachers'] or self.t['clip_teacher']:
            if not 0.0 <= float(self.t['distill_weight']) <= 1.0:
                raise ValueError(f"training.distill_weight must be in [0, 1], got {self.t['distill_weight']}")
            validation_speakers, test_speakers = ({clip_set.clips[i].speaker_key for i in group}
                                                  for group in (self.val_idx, self.test_idx))
            self.teacher = Teacher(self.t['teachers'], clip_set.labels, batcher.features.config,
                                   test_speakers=test_speakers, validation_speakers=validation_speakers,
                                   temperature=self.t['distill_temperature'],
                                   clip_probabilities=self.clip_teacher_probabilities())
        decay = float(self.t['weight_average_decay'])
        if not 0.0 <= decay < 1.0:
            raise ValueError(f'training.weight_average_decay must be in [0, 1), got {decay}')
        self.averaged = None
        if decay > 0:
            self.averaged = torch.optim.swa_utils.AveragedModel(
                self.model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)
        parameters = [*self.model.parameters(), *(p for head in self.heads for p in head.parameters())]
        self.optimizer = make_optimizer(parameters, self.t)
        if self.t['validate_on'] not in ('all', 'unseen_speakers'):
            raise ValueError(f"training.validate_on must be all or unseen_speakers, got {self.t['validate_on']!r}")
        self.selection_idx = self.val_idx
        if self.t['validate_on'] == 'unseen_speakers':
            seen = {clip_set.clips[i].speaker_key for i in self.train_idx}
            unseen = [i for i in self.val_idx if clip_set.clips[i].speaker_key not in seen]
            self.selection_idx = unseen or self.val_idx
        self.has_validation = len(self.selection_idx) > 0
        self.scheduler = make_scheduler(self.optimizer, self.t, 'max' if self.has_validation else 'min')
        self.amp = bool(self.t['amp']) and device.startswith('cuda')
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.amp)
        self.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=self.t['label_smoothing'])
        self.allowed = None
        if self.t['corpus_classes_only']:
            allowed = np.zeros((len(clip_set.clips), len(clip_set.labels)), bool)
            allowed[self.train_idx] = corpus_classes([clip_set.clips[i] for i in self.train_idx], clip_set.labels)
            self.allowed = torch.from_numpy(allowed).to(device)
        self.history: list[dict] = []
        self.best = {'uar': -1.0, 'epoch': -1, 'state': None}
        self.start_epoch = 0
        self.checkpoint_path = fold_dir / 'checkpoint.pt'
        data = config['data']
        self.sampling_weights = sampling_weights(np.array([clip_set.clips[i].dataset for i in self.train_idx]),
                                                 np.array([clip_set.clips[i].emotion for i in self.train_idx]),
                                                 data.get('balance', False), data.get('balance_classes', False))

    @property
    def heads(self) -> list[EmbeddingHead]:
        return [head for head in (self.adversary, self.feature_head) if head is not None]

    def clip_feature_targets(self) -> np.ndarray:
        """training.feature_targets of every training clip, standardised over its speaker's training clips
        and clipped to +-FEATURE_TARGET_LIMIT (rows of other clips stay zero)."""
        clips = [self.clip_set.clips[i] for i in self.train_idx]
        features = cached_features(self.t['feature_targets'], [c.path for c in clips], self.t['feature_cache'])
        standardised = standardise_per_speaker(np.nan_to_num(features), [c.speaker_key for c in clips])
        targets = np.zeros((len(self.clip_set.clips), features.shape[1]), np.float32)
        targets[self.train_idx] = np.clip(standardised, -FEATURE_TARGET_LIMIT, FEATURE_TARGET_LIMIT)
        return targets

    def clip_teacher_probabilities(self) -> np.ndarray | None:
        """training.clip_teacher's probabilities for the training clips (rows of other clips stay zero),
        each from a classifier fitted on training clips of other speakers only: never a validation or test
        clip. Speakers are grouped as the benchmark groups them (every corpus spread over the groups)."""
        kind = self.t['clip_teacher']
        if not kind:
            return None
        clips = [self.clip_set.clips[i] for i in self.train_idx]
        features = cached_features(kind, [c.path for c in clips], self.t['feature_cache'])
        groups = speaker_folds(clips, CLIP_TEACHER_GROUPS, self.config['split']['seed'])
        probabilities = np.zeros((len(self.clip_set.clips), len(self.clip_set.labels)), np.float32)
        probabilities[self.train_idx] = out_of_speaker_probabilities(
            features, self.clip_set.targets[self.train_idx], [c.speaker_key for c in clips], groups,
            len(self.clip_set.labels))
        return probabilities

    def save_checkpoint(self, epoch: int):
        if not self.dist.main:
            return
        state = {'epoch': epoch, 'model': self.model.state_dict(), 'optimizer': self.optimizer.state_dict(),
                 'adversary': self.adversary.state_dict() if self.adversary else {},
                 'feature_head': self.feature_head.state_dict() if self.feature_head else {},
                 'averaged': self.averaged.state_dict() if self.averaged else {},
                 'scheduler': self.scheduler.state_dict() if self.scheduler else {},
                 'scaler': self.scaler.state_dict(), 'history': json.dumps(self.history),
                 'best_uar': self.best['uar'], 'best_epoch': self.best['epoch'],
                 'best_state': self.best['state'] or {}}
        tmp = self.checkpoint_path.with_suffix('.tmp')
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)  # never leave a half-written checkpoint

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_path.is_file():
            return False
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state['model'])
        if self.adversary:
            self.adversary.load_state_dict(state['adversary'])
        if self.feature_head:
            self.feature_head.load_state_dict(state['feature_head'])
        if self.averaged:
            self.averaged.load_state_dict(state['averaged'])
        self.optimizer.load_state_dict(state['optimizer'])
        if self.scheduler and state['scheduler']:
            self.scheduler.load_state_dict(state['scheduler'])
        self.scaler.load_state_dict(state['scaler'])
        self.history = json.loads(state['history'])
        self.best = {'uar': state['best_uar'], 'epoch': state['best_epoch'], 'state': state['best_state'] or None}
        self.start_epoch = state['epoch'] + 1
        return True

    def train_epoch(self, epoch: int) -> dict:
        t, a = self.t, self.config['augment']
        rng = np.random.default_rng([t['seed'], epoch])
        torch.manual_seed(t['seed'] * 100003 + epoch * 1009 + self.dist.rank)
        order = epoch_order(np.asarray(self.train_idx), self.sampling_weights, a['copies'], rng)
        order = order[self.dist.rank::self.dist.world]
        worker_rng = np.random.default_rng([t['seed'], epoch, self.dist.rank, 7])
        per_rank_batch = max(1, t['batch_size'] // self.dist.world)
        batches = [order[i:i + per_rank_batch] for i in range(0, len(order), per_rank_batch)]
        if self.dist.enabled:  # equal step counts on every rank, or DDP waits forever
            steps = torch.tensor(len(batches))
            torch.distributed.all_reduce(steps, op=torch.distributed.ReduceOp.MIN)
            batches = batches[:int(steps)]
        self.net.train()
        total, correct, seen = 0.0, 0, 0
        progress = tqdm(batches, desc=f'{self.fold_dir.name} epoch {epoch + 1}/{t["epochs"]}', leave=False,
                        disable=not self.dist.main or not sys.stderr.isatty())
        # Speaker adversary strength ramps from 0 to its weight over training (DANN's schedule).
        progress_fraction = epoch / max(1, t['epochs'] - 1)
        reversal = 2.0 / (1.0 + np.exp(-10.0 * progress_fraction)) - 1.0
        for batch in progress:
            mfcc, targets = self.batcher.training_batch(self.clip_set, batch, worker_rng)
            mfcc = torch.from_numpy(mfcc).to(self.device)
            targets = torch.from_numpy(targets).to(self.device)
            # Mixup: each window blended with another of the batch; both labels count by their share.
            share, partner = 1.0, None
            if t['mixup'] > 0:
                share = float(worker_rng.beta(t['mixup'], t['mixup']))
                partner = torch.from_numpy(worker_rng.permutation(len(batch))).to(self.device)
                mfcc = share * mfcc + (1 - share) * mfcc[partner]
            soft_targets = self.teacher.targets(mfcc, batch, share, partner) if self.teacher else None
            allowed = None
            if self.allowed is not None:    # a mixed window may take either partner's classes
                allowed = self.allowed[torch.from_numpy(np.asarray(batch)).to(self.device)]
                allowed = allowed if partner is None else allowed | allowed[partner]
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast('cuda', enabled=self.amp):
                logits = self.net(mfcc)
                loss = self.mixed_loss(logits.float(), targets, share, partner, allowed)
                if self.teacher:
                    weight = t['distill_weight']
                    loss = (1 - weight) * loss + weight * self.teacher.loss(logits.float(), soft_targets, allowed)
                if self.adversary:
                    speakers = torch.from_numpy(self.speaker_targets[np.asarray(batch)]).to(self.device)
                    speaker_logits = self.adversary(reversal).float()
                    loss = loss + t['speaker_adversarial'] * self.mixed_loss(speaker_logits, speakers, share, partner)
                if self.feature_head:
                    wanted = torch.from_numpy(self.feature_targets[np.asarray(batch)]).to(self.device)
                    if partner is not None:
                        wanted = share * wanted + (1 - share) * wanted[partner]
                    loss = loss + t['feature_target_weight'] * functional.mse_loss(self.feature_head().float(), wanted)
            self.scaler.scale(loss).backward()
            if self.dist.enabled:   # DDP syncs the model only; the heads are averaged here
                for parameter in (p for head in self.heads for p in head.parameters()):
                    torch.distributed.all_reduce(parameter.grad)
                    parameter.grad /= self.dist.world
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.averaged:
                self.averaged.update_parameters(self.model)
            total += loss.item() * len(batch)
            correct += int((logits.argmax(dim=1) == targets).sum())
            seen += len(batch)
            progress.set_postfix(loss=f'{total / seen:.3f}')
        return {'loss': total / max(seen, 1), 'accuracy': correct / max(seen, 1)}

    def mixed_loss(self, logits, targets, share: float, partner, allowed=None) -> torch.Tensor:
        """The task loss of a batch (mixed windows: each label by its share); allowed: the classes each
        window's loss covers (training.corpus_classes_only), None: all."""
        def loss_fn(wanted):
            if allowed is None:
                return self.loss_fn(logits, wanted)
            return corpus_cross_entropy(logits, wanted, allowed, self.t['label_smoothing'])
        loss = loss_fn(targets)
        if partner is None:
            return loss
        return share * loss + (1 - share) * loss_fn(targets[partner])

    def fit(self, resume: bool) -> None:
        if resume and self.load_checkpoint() and self.dist.main:
            print(f'[train] {self.fold_dir.name}: resumed after epoch {self.start_epoch}', flush=True)
        patience = self.t['early_stop_patience']
        for epoch in range(self.start_epoch, self.t['epochs']):
            started = time.perf_counter()
            train = self.dist.mean(self.train_epoch(epoch))
            record = {'epoch': epoch + 1, 'train_loss': train['loss'], 'train_accuracy': train['accuracy'],
                      'lr': self.optimizer.param_groups[0]['lr']}
            if self.has_validation:
                # Rank 0 validates and every rank takes its scores: BatchNorm statistics differ per rank,
                # and ranks that disagree on stopping hang, on the learning rate silently diverge.
                val = {'val_loss': 0.0, 'val_uar': 0.0, 'val_war': 0.0, 'val_f1': 0.0}
                if self.dist.main:
                    scores = score(self.kept_model, self.clip_set, self.selection_idx, self.config, self.device)
                    val = {'val_loss': scores['loss'], 'val_uar': scores['uar'], 'val_war': scores['war'],
                           'val_f1': scores['f1_macro']}
                record.update(self.dist.from_main(val))
                if record['val_uar'] > self.best['uar']:
                    self.best = {'uar': record['val_uar'], 'epoch': epoch + 1,
                                 'state': {k: v.detach().cpu().clone()
                                           for k, v in self.kept_model.state_dict().items()}}
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(record.get('val_uar', train['loss']))
            elif self.scheduler:
                self.scheduler.step()
            record['seconds'] = time.perf_counter() - started
            self.history.append(record)
            self.save_checkpoint(epoch)
            if self.dist.main:
                shown = ' '.join(f'{k}={v:.4g}' for k, v in record.items() if k != 'epoch')
                print(f'[train] {self.fold_dir.name} epoch {epoch + 1}: {shown}', flush=True)
            if (patience and self.has_validation and self.t['select'] == 'best_validation'
                    and epoch + 1 - self.best['epoch'] >= patience):
                if self.dist.main:
                    print(f'[train] {self.fold_dir.name}: early stop, best epoch {self.best["epoch"]}', flush=True)
                break

    @property
    def kept_model(self) -> nn.Module:
        """The weights validation scores and training keeps: their moving average where enabled."""
        return self.averaged.module if self.averaged else self.model

    def selected_model(self):
        if self.t['select'] == 'best_validation' and self.best['state'] is not None:
            self.model.load_state_dict(self.best['state'])
            return self.model, self.best['epoch']
        if self.averaged:
            self.model.load_state_dict(self.averaged.module.state_dict())
        return self.model, len(self.history)


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2) + '\n')


def run(config: dict, out_dir: Path, resume: bool = False) -> dict:
    dist = Distributed()
    t = config['training']
    device = pick_device(t['device'], dist)
    dist.start(device)
    limit_threads(int(t['threads']))
    np.random.seed(t['seed'])
    torch.manual_seed(t['seed'])
    out_dir = Path(out_dir)
    data = config['data']
    root = (REPO / data['root']).resolve() if not Path(data['root']).is_absolute() else Path(data['root'])
    clips = load_clips(root, data.get('manifest'), data.get('datasets'))
    if not clips:
        raise SystemExit(f'no clips found under {root}')
    labels = labels_present(clips)
    features = FeatureConfig.from_dict(config['features'])
    window_samples = int(round(config['window_seconds'] * features.sample_rate))
    architecture = resolve_config({**config['model'], 'n_classes': len(labels), 'n_mfcc': features.channels,
                                   'frames': features.num_frames(window_samples)})
    resolved = copy.deepcopy(config)
    resolved['model'] = architecture
    resolved['features'] = features.to_dict()
    if dist.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / 'config.yaml').write_text(yaml.safe_dump(resolved, sort_keys=False))
        write_json(out_dir / 'environment.json', environment_info(device, dist))
        print(f'[train] {len(clips)} clips, labels {labels}, {architecture["name"]} with '
              f'{count_parameters(build(architecture)):,} parameters, device {device}', flush=True)
    clip_set = ClipSet(clips, labels, features.sample_rate)
    extractor = MfccExtractor(features)
    if features.normalize == 'speaker':
        augment = config['augment']
        clip_set.fit_speaker_normalizers(
            extractor, augment['virtual_speaker_speeds'] if augment['virtual_speaker_prob'] else (),
            augment['stream_pause_seconds'] if augment['stream_pause_prob'] else 0.0)
    position = {id(c): i for i, c in enumerate(clips)}
    split = config['split']
    splits = make_splits(clips, split['protocol'], split['folds'], split['validation_fraction'], split['seed'],
                         split['min_validation_speakers'], split['validation_into_training'])
    if split.get('fold') is not None:
        splits = [splits[int(split['fold'])]]
    results = []
    for part in splits:
        fold_dir = out_dir / part.name
        if dist.main:
            fold_dir.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        indices = tuple([position[id(c)] for c in group] for group in (part.train, part.validation, part.test))
        prior = stream_statistics(config, features, clip_set, indices[0])
        batcher = WindowBatcher(extractor, window_samples, config['augment'],
                                speaker_prior=SpeakerNormalizer(features.channels, prior) if prior else None)
        trainer = FoldTrainer(config, architecture, clip_set, indices, batcher, device, dist, fold_dir)
        trainer.fit(resume)
        model, epoch = trainer.selected_model()
        result = {'fold': part.name, 'selected_epoch': epoch, 'n_train': len(part.train),
                  'n_validation': len(part.validation), 'n_test': len(part.test),
                  'test_speakers': sorted({c.speaker_key for c in part.test}),
                  'validation_uar': trainer.best['uar'] if trainer.has_validation else None}
        if dist.main:
            write_json(fold_dir / 'metrics.json', trainer.history)
            plot_curves(trainer.history, fold_dir / 'curves.png')
            if part.test:
                test = score(model, clip_set, indices[2], config, device)
                test['per_dataset'] = per_dataset_metrics(model, clip_set, indices[2], config, device)
                write_json(fold_dir / 'test_metrics.json', test)
                plot_confusion(test['confusion'], labels, fold_dir / 'confusion.png',
                               f'{architecture["name"]} {part.name}: UAR {test["uar"]:.3f}')
                result['test'] = {k: test[k] for k in ('uar', 'war', 'f1_macro', 'precision_macro', 'recall_macro')}
                result['test_per_dataset'] = {d: {k: m[k] for k in ('n', 'uar', 'war', 'f1_macro')}
                                              for d, m in test['per_dataset'].items()}
            provenance = {'data': {'root': str(data['root']), 'datasets': data.get('datasets'),
                                   'train_clips': len(part.train), 'validation_clips': len(part.validation),
                                   'train_speakers': sorted({c.speaker_key for c in part.train}),
                                   'validation_speakers': sorted({c.speaker_key for c in part.validation}),
                                   'test_speakers': result['test_speakers']},
                          'commit': git_commit(), 'selected_epoch': epoch,
                          'validation_uar': result['validation_uar'], 'test': result.get('test'),
                          'licence': 'trained on corpora licensed for non-commercial research use; '
                                     'those terms carry over to these weights'}
            save_artifact(model.cpu(), fold_dir / 'artifact', architecture=architecture, labels=labels,
                          features=features, window_seconds=config['window_seconds'],
                          model_id=f'{architecture["name"]}-{out_dir.name}-{part.name}', provenance=provenance,
                          speaker_normalization=prior)
            model.to(device)
        results.append(result)
    summary = summarize(results)
    if dist.main:
        write_json(out_dir / 'summary.json', summary)
        print_summary(summary)
    dist.stop()
    return summary


def limit_threads(threads: int) -> None:
    """torch's threads and numpy's BLAS pools (feature extraction) to `threads`; 0 leaves them alone.
    BLAS counts too: two folds training side by side on two cores would otherwise run four BLAS threads."""
    if threads:
        torch.set_num_threads(threads)
        threadpool_limits(threads)


def stream_statistics(config: dict, features: FeatureConfig, clip_set: ClipSet, train_indices) -> dict | None:
    """Where a stream's speaker statistics start: the training side's, pooled (speaker-normalised models)."""
    if clip_set.normalizers is None:
        return None
    frames_per_second = features.sample_rate / features.hop_length
    settings = config['speaker_normalization']
    return {**clip_set.pooled_statistics(train_indices).summary(settings['prior_seconds'] * frames_per_second),
            'memory_frames': settings['memory_seconds'] * frames_per_second}


def per_dataset_metrics(model, clip_set, indices, config, device) -> dict:
    by_dataset = {}
    for index in indices:
        by_dataset.setdefault(clip_set.clips[index].dataset, []).append(index)
    return {dataset: score(model, clip_set, group, config, device) for dataset, group in sorted(by_dataset.items())}


def summarize(results: list[dict]) -> dict:
    summary = {'folds': results}
    tested = [r for r in results if 'test' in r]
    if tested:
        for key in ('uar', 'war', 'f1_macro'):
            values = [r['test'][key] for r in tested]
            summary[f'test_{key}_mean'] = float(np.mean(values))
            summary[f'test_{key}_std'] = float(np.std(values))
        datasets = sorted({d for r in tested for d in r.get('test_per_dataset', {})})
        summary['per_dataset'] = {}
        for dataset in datasets:
            values = [r['test_per_dataset'][dataset]['uar'] for r in tested if dataset in r['test_per_dataset']]
            summary['per_dataset'][dataset] = {'uar_mean': float(np.mean(values)), 'uar_std': float(np.std(values)),
                                               'folds': len(values)}
    return summary


def print_summary(summary: dict) -> None:
    for r in summary['folds']:
        test = r.get('test')
        shown = f"UAR {test['uar']:.3f} WAR {test['war']:.3f} F1 {test['f1_macro']:.3f}" if test else 'no test set'
        print(f"[train] {r['fold']}: epoch {r['selected_epoch']}, {shown}", flush=True)
    if 'test_uar_mean' in summary:
        print(f"[train] mean over {len(summary['folds'])} folds: UAR {summary['test_uar_mean']:.3f} "
              f"± {summary['test_uar_std']:.3f}, WAR {summary['test_war_mean']:.3f} "
              f"± {summary['test_war_std']:.3f}", flush=True)
        for dataset, values in summary['per_dataset'].items():
            print(f"[train]   {dataset}: UAR {values['uar_mean']:.3f} ± {values['uar_std']:.3f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', help='YAML config (layered over the defaults and presets)')
    parser.add_argument('--preset', action='append', default=[], help='named preset from training/presets')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='override any key, e.g. training.lr=0.01 or model.n_tab=6')
    parser.add_argument('--out', required=True, help='run directory')
    parser.add_argument('--resume', action='store_true', help='continue from the checkpoints in --out')
    args = parser.parse_args(argv)
    config = config_module.resolve(args.config, args.preset, args.set)
    run(config, Path(args.out), resume=args.resume)
    return 0


if __name__ == '__main__':
    sys.exit(main())
