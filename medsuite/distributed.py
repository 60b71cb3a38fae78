"""Data-parallel training under ``torchrun``: one process per device, PyTorch's DistributedDataParallel.

Every trainer calls :func:`init` instead of resolving its device. Without torchrun's environment
(``WORLD_SIZE`` unset or 1) the context is a single process and every helper here is the identity, so a
plain run does exactly what it did before. Under ``torchrun --nproc-per-node N [--nnodes M ...]`` it joins
the process group (gloo on CPU, nccl on CUDA, one GPU per local rank) and offers what a trainer needs:

- ``wrap(model)``: DistributedDataParallel around a module trained through its ``forward``;
- ``average_gradients(optimiser)``: the same gradient averaging for trainers that step several modules
  through other methods (GIRNet's trainer), where DDP's forward hooks never fire;
- ``patient_loader`` / :class:`PatientShardSampler`: each rank draws from its own patients, never slices
  of a patient another rank holds (nnU-Net and MONAI split cases, not 2D slices, between ranks);
  ``shard`` / ``shard_indices`` / ``dealer`` do the same for trainers that hold lists of patients;
- ``mean`` / ``total`` (all-reduce of metrics), ``from_main`` (one clock, one decision), ``on_main``
  (rank 0 computes, every rank gets the result), ``barrier``, ``in_sync`` (weight digests of all ranks).
Only rank 0 (``is_main``) writes logs, checkpoints and reports.
"""

from __future__ import annotations

import atexit
import hashlib
import os
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from medsuite.errors import MedsuiteError
from medsuite.runtime import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its global rank, how many ranks there are, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        return dist.get_backend() if self.enabled else None

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around ``model`` (which stays the object to save and evaluate); the model itself when alone."""
        if not self.enabled:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def broadcast_weights(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers to every rank (what DDP does when it wraps a module)."""
        if self.enabled:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def average_gradients(self, optimiser: torch.optim.Optimizer) -> None:
        """Before each ``optimiser.step()``, replace its gradients by their mean over ranks (one all-reduce).

        For trainers whose step runs modules through methods other than ``forward`` (DDP's hooks fire only
        there). A parameter without a gradient is left out: the same code path on every rank leaves the same
        ones out, so the flattened tensors line up.
        """
        if not self.enabled:
            return

        def hook(opt: torch.optim.Optimizer, *_: Any) -> None:
            grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
            if not grads:
                return
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

        optimiser.register_step_pre_hook(hook)

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's items of a list of patients (round robin over the list's order)."""
        if not self.enabled:
            return list(items)
        _require_enough(len(items), self.world_size)
        return list(items[self.rank :: self.world_size])

    def shard_indices(self, n: int) -> np.ndarray:
        """This rank's patients among ``n`` (round robin), padded with its own first ones to ceil(n / ranks):
        trainers that step through fixed minibatches need the same number of steps on every rank."""
        if not self.enabled:
            return np.arange(n)
        _require_enough(n, self.world_size)
        mine = list(range(self.rank, n, self.world_size))
        return np.array([mine[i % len(mine)] for i in range(-(-n // self.world_size))])

    def dealer(self) -> Dealer:
        """Deal patients to ranks round robin across several lists (a trainer's data sources) in turn."""
        return Dealer(self.rank, self.world_size)

    def patient_loader(self, dataset: torch.utils.data.Dataset, patients: Sequence[Hashable], *, batch_size: int, seed: int):
        """A MONAI DataLoader over this rank's patients' items; call ``set_epoch`` on its sampler each epoch.

        The generator (which seeds MONAI's random transforms when num_workers=0) differs per rank, so two
        ranks never draw the same augmentations; seed and world size fix the whole run."""
        from monai.data import DataLoader

        sampler = PatientShardSampler(patients, rank=self.rank, world_size=self.world_size, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0, generator=torch.Generator().manual_seed(seed + self.rank))

    def mean(self, value: float) -> float:
        """The mean of a per-rank figure (a training loss) over ranks."""
        if not self.enabled:
            return value
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def mean_rows(self, rows: list[dict[str, float]]) -> list[dict[str, float]]:
        """Per-step loss records (the same keys on every rank) averaged over ranks in one all-reduce."""
        if not self.enabled or not rows:
            return rows
        keys = list(rows[0])
        tensor = torch.tensor([[row[k] for k in keys] for row in rows], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(tensor)
        return [dict(zip(keys, (tensor[i] / self.world_size).tolist())) for i in range(len(rows))]

    def total(self, values: dict[str, int]) -> dict[str, int]:
        """Per-key sums of per-rank counts (samples each rank collected from its patients)."""
        if not self.enabled:
            return dict(values)
        gathered: list[dict[str, int] | None] = [None] * self.world_size
        dist.all_gather_object(gathered, dict(values))
        keys = list(dict.fromkeys(k for part in gathered for k in part))
        return {k: sum(part.get(k, 0) for part in gathered) for k in keys}

    def from_main(self, value: T) -> T:
        """Rank 0's value on every rank: wall-clock budgets and stop decisions must agree, or ranks diverge."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, compute: Callable[[], T]) -> T:
        """Run ``compute`` on rank 0 only (validation on the whole val split) and hand the result to all."""
        if not self.enabled:
            return compute()
        return self.from_main(compute() if self.is_main else None)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def in_sync(self, module: torch.nn.Module) -> list[str]:
        """Every rank's weight digest (rank order); raises if any rank's weights differ from rank 0's."""
        digest = state_digest(module.state_dict())
        if not self.enabled:
            return [digest]
        gathered: list[str | None] = [None] * self.world_size
        dist.all_gather_object(gathered, digest)
        if len(set(gathered)) != 1:
            raise RuntimeError(f"ranks ended with different weights: {gathered}")
        return [str(d) for d in gathered]

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's tensors in key order: equal digests, bit-identical weights."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def record_run(run_dir: str | Path, ctx: DistributedContext, model: torch.nn.Module) -> None:
    """End of a distributed run: check every rank holds rank 0's weights, let rank 0 write
    ``distributed.json`` (world size, backend, each rank's weight digest), and wait for it."""
    digests = ctx.in_sync(model)
    if ctx.is_main:
        from medsuite.io import write_json

        write_json(Path(run_dir) / "distributed.json", {"world_size": ctx.world_size, "backend": ctx.backend, "device": ctx.device.type, "weights_sha256_per_rank": digests})
    ctx.barrier()


_context: DistributedContext | None = None


def init(device: str = "auto") -> DistributedContext:
    """Join torchrun's process group when launched by it (idempotent); a single-process context otherwise."""
    global _context
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=resolve_device(device))
    if _context is not None:
        return _context
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise MedsuiteError("torchrun", f"local rank {local_rank} but only {torch.cuda.device_count()} GPUs on this node", "set --nproc-per-node to the node's GPU count")
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    # an hour, not nccl's 10 minutes: the other ranks wait while rank 0 validates on the whole val split
    dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo", rank=rank, world_size=world_size, timeout=timedelta(hours=1))
    atexit.register(dist.destroy_process_group)
    _context = DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)
    return _context


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or any plain process: the one that writes reports (usable without init)."""
    return int(os.environ.get("RANK", "0")) == 0


def _require_enough(patients: int, world_size: int) -> None:
    if patients < world_size:
        raise MedsuiteError("torchrun", f"{patients} patients cannot be shared by {world_size} processes", f"use --nproc-per-node (times --nnodes) of at most {patients}")


class Dealer:
    """Keeps every ``world_size``-th item of the lists it is given, counting on from one list to the next,
    so a rank may hold no patient of a small source but every rank holds some patient overall."""

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size, self.dealt = rank, world_size, 0

    def __call__(self, items: Sequence[T]) -> list[T]:
        mine = [item for k, item in enumerate(items, start=self.dealt) if k % self.world_size == self.rank]
        self.dealt += len(items)
        return mine

    def check(self) -> None:
        """After the last list: one clear error when there were fewer patients than ranks."""
        _require_enough(self.dealt, self.world_size)


class PatientShardSampler(Sampler[int]):
    """Indices of this rank's patients, reshuffled every epoch (``set_epoch``), the same count on every rank.

    Each epoch the patients are shuffled with ``seed + epoch`` and dealt, largest first, to the rank holding the
    fewest items so far (so ranks get similar numbers of slices); a rank with fewer items repeats some of its own
    to match the longest (DDP needs the same number of steps on every rank; torch's DistributedSampler pads the
    same way, but it splits items, which would cut a patient's slices between ranks).
    """

    def __init__(self, patients: Sequence[Hashable], *, rank: int, world_size: int, seed: int):
        self.groups: dict[Hashable, list[int]] = {}
        for index, patient in enumerate(patients):
            self.groups.setdefault(patient, []).append(index)
        _require_enough(len(self.groups), world_size)
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def assignment(self) -> list[list[int]]:
        """Every rank's item indices for the current epoch (each rank computes all, and takes its own)."""
        rng = np.random.default_rng(self.seed + self.epoch)
        patients = [list(self.groups.values())[i] for i in rng.permutation(len(self.groups))]
        patients.sort(key=len, reverse=True)  # stable: equal sizes keep the shuffled order
        ranks: list[list[int]] = [[] for _ in range(self.world_size)]
        for items in patients:
            min(ranks, key=len).extend(items)
        return ranks

    def __iter__(self) -> Iterator[int]:
        ranks = self.assignment()
        mine = ranks[self.rank]
        order = np.random.default_rng([self.seed, self.epoch, self.rank]).permutation(len(mine))
        shuffled = [mine[i] for i in order]
        length = max(map(len, ranks))
        return iter([shuffled[i % len(shuffled)] for i in range(length)])

    def __len__(self) -> int:
        return max(map(len, self.assignment()))
