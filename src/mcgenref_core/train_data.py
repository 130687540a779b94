"""Training batches indexed by their step, made in the trainer or in worker processes.

Batch ``b`` of a run is drawn from ``np.random.default_rng([seed, b])`` alone, so what it holds
depends only on the run's seed and the step: it is the same with 0 or 12 workers, and a resumed
run picks up at its next step without replaying the stream. Workers let a fast device (a GPU)
train without waiting on synthesis, which runs on the CPU; on a CPU-only machine the default of
0 workers keeps synthesis in the training process, beside torch's own threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


def batch_rng(seed: int, step: int) -> np.random.Generator:
    """The random stream of training batch ``step`` (0-based) of a run seeded with ``seed``."""
    return np.random.default_rng([int(seed), int(step)])


def hard_negatives_in_batch(step: int, train) -> int:
    """How many mined hard negatives batch ``step`` (0-based) of segmentor training carries.

    Mining first runs at step ``hard_negative_every`` and keeps ``hard_negative_keep`` patches,
    so from then on every batch takes ``round(batch_size * hard_negative_fraction)`` of them
    (at most as many as are kept); before it, none.
    """
    n_hard = int(round(train.batch_size * train.hard_negative_fraction))
    if not n_hard or step < train.hard_negative_every:
        return 0
    return min(n_hard, int(train.hard_negative_keep), int(train.hard_negative_pool))


@dataclass
class SegmentorBatches:
    """Makes batch ``step`` of segmentor training: ``(images, masks)``.

    ``images`` (n, P, P) float32 normalised, with the texture augmentation applied;
    ``masks`` (n, P, P) uint16 MC ids; ``n = batch_size - hard_negatives_in_batch(step)``
    (the trainer adds the mined hard negatives). Picklable, so worker processes can run it.
    """

    generator: Any  # SyntheticPairGenerator
    train: Any  # TrainConfig

    def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        from .train import augment_texture

        rng = batch_rng(self.train.seed, step)
        n = self.train.batch_size - hard_negatives_in_batch(step, self.train)
        images, masks = self.generator.batch(n, rng)
        return augment_texture(images, rng, self.train), masks


@dataclass
class FlowBatches:
    """Makes batch ``step`` of flow training: ``(x, seed, context, eps, t)`` CPU tensors.

    See :func:`mcgenref_core.train_flow.flow_batch` for the shapes; the seed maps come from the
    exact masks of freshly synthesised pairs. Picklable, so worker processes can run it.
    """

    generator: Any  # SyntheticPairGenerator
    train: Any  # FlowTrainConfig
    peaks: Any = None  # train_flow.SegmentorPeaks: false seeds on a segmentor's peaks

    def __call__(self, step: int):
        from .train_flow import flow_batch, seed_batch

        rng = batch_rng(self.train.seed, step)
        images, masks = self.generator.batch(self.train.batch_size, rng)
        peaks = self.peaks(images) if self.peaks is not None and self.train.false_seeds > 0 else None
        seeds = seed_batch(masks, self.train.seed_sigma_px, images, rng, self.train.false_seeds, peaks)
        return flow_batch(images, seeds, rng, self.train)


def iterate_batches(make: Callable[[int], Any], first: int, last: int, workers: int = 0, prefetch: int = 4) -> Iterator[Any]:
    """Yield ``make(step)`` for ``step`` in ``[first, last)``, in order.

    ``workers`` > 0 runs ``make`` in that many worker processes (torch's DataLoader; each
    worker keeps ``prefetch`` batches ready); 0 runs it here, one batch at a time. The batches
    are identical either way. Closing the iterator stops the workers. DataLoader gives each
    worker one torch thread; the work is numpy synthesis, one core per worker.
    """
    if workers <= 0:
        for step in range(first, last):
            yield make(step)
        return
    import torch.utils.data as tud

    loader = tud.DataLoader(
        _StepDataset(make, first, last), batch_size=None, shuffle=False, num_workers=int(workers),
        collate_fn=_as_is, prefetch_factor=max(1, int(prefetch)),
    )
    yield from loader


class _StepDataset:
    """Map-style dataset: item ``i`` is ``make(first + i)``."""

    def __init__(self, make: Callable[[int], Any], first: int, last: int):
        self.make, self.first, self.last = make, int(first), int(last)

    def __len__(self) -> int:
        return max(0, self.last - self.first)

    def __getitem__(self, i: int):
        return self.make(self.first + int(i))


def _as_is(batch):
    return batch

