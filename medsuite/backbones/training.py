"""Training options for spiking backbones: TET loss, mixed time-step training, BatchNorm re-estimation.

- TET (Deng et al., ICLR 2022): supervise every time step's output, plus a small MSE pull toward a
  constant that keeps membrane potentials from drifting; the prediction is still the time average.
- MTT (mixed time-step training, ICLR 2025): each iteration sums the gradients of several sampled
  configurations, each giving every stage its own T in 1..T_max, so one model serves any T at inference.
  BatchNorm statistics depend on T, hence they are re-estimated for the chosen T before evaluation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import torch
from torch import nn


def tet_loss(outputs: torch.Tensor, target: torch.Tensor, criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lam: float = 1e-3, phi: float = 1.0) -> torch.Tensor:
    """TET: ``(1 - lam) * mean_t criterion(O_t, y) + lam * mean_t MSE(O_t, phi)``; ``outputs`` is (T, B, ...)."""
    task = torch.stack([criterion(step, target) for step in outputs]).mean()
    regulariser = torch.mean((outputs - phi) ** 2)
    return (1.0 - lam) * task + lam * regulariser


def sample_stage_steps(stages: int, t_max: int, rng: random.Random) -> list[int]:
    return [rng.randint(1, t_max) for _ in range(stages)]


def mtt_step(encoder: nn.Module, compute_loss: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer, t_max: int, configs: int = 3, rng: random.Random | None = None) -> float:
    """One MTT iteration: ``configs`` sampled per-stage time steps, gradients summed, one optimiser step.

    ``encoder`` must offer ``set_time_steps`` (the snn encoder); ``compute_loss`` runs the model on the
    current batch. Returns the mean loss over the configurations.
    """
    rng = rng or random.Random()
    optimizer.zero_grad()
    total = 0.0
    for _ in range(configs):
        encoder.set_time_steps(sample_stage_steps(len(encoder.stage_steps), t_max, rng))
        loss = compute_loss()
        loss.backward()  # gradients accumulate: the configurations' sum
        total += float(loss.detach())
    optimizer.step()
    return total / configs


_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], forward: Callable[[torch.Tensor], object] | None = None) -> int:
    """Reset BatchNorm running statistics and recompute them (cumulative average) on ``batches``.

    Only BatchNorm layers run in train mode; the rest stays in eval mode. Returns the number of
    BatchNorm layers updated; the model is left in eval mode.
    """
    forward = forward or model
    norms = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
        m.train()
    for batch in batches:
        forward(batch)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.eval()
    return len(norms)


def set_time_steps(model: nn.Module, steps: int | list[int], calibration: Iterable[torch.Tensor] = ()) -> nn.Module:
    """Run a spiking model (its ``.encoder`` an snn encoder) at ``steps`` from now on, its BatchNorm statistics
    re-estimated on ``calibration`` batches for that T (MTT evaluation at T = 1, 2, 4, 8); the model keeps its
    train/eval mode. Returns it."""
    model.encoder.set_time_steps(steps)
    batches = list(calibration)
    if batches and any(isinstance(m, _BN) for m in model.modules()):
        training = model.training
        reestimate_batchnorm(model, batches)
        model.train(training)
    return model
