"""The multimodal concept bottleneck (after MMCBM, arXiv 2403.05606) and its black-box twin.

Sequential variant (the paper's): one encoder per modality (from the backbone factory) trained as a
classifier, then frozen; each concept a linear SVM (C=0.1) on the frozen features, its score the
signed distance to the hyperplane, max-pooled over the angiography phases; the bottleneck maps the
scores to class logits as ``sum_c score_c * sigmoid(w_kc) + b_k`` with weights starting at zero, so
every weight is bounded in (0, 1) and a contribution's sign is its score's sign.
Joint variant: the same encoders with a linear concept head, trained end to end with the class
loss plus a concept loss on the report labels. Black box: the same frozen features, no bottleneck.
A missing modality's concept scores are 0 (on the hyperplane: no evidence either way).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from medsuite import distributed
from medsuite.backbones import make_encoder
from medsuite.finite import require_finite_loss


class ModalityNet(nn.Module):
    """Encoder from the factory, global average+max pooling of its last stage, a linear class head."""

    def __init__(self, backbone: dict, n_classes: int):
        super().__init__()
        self.encoder = make_encoder(backbone, spatial_dims=2, in_channels=1)
        self.n_features = 2 * self.encoder.out_channels[-1]
        self.head = nn.Linear(self.n_features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        last = self.encoder(x)[-1]
        return torch.cat([last.mean(dim=(2, 3)), last.amax(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Bottleneck(nn.Module):
    """class logit = sum over concepts of score x sigmoid(weight) + bias; weights start at 0 (sigmoid 0.5)."""

    def __init__(self, n_concepts: int, n_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_classes, n_concepts))
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def bounded(self) -> torch.Tensor:
        return torch.sigmoid(self.weight)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return scores @ self.bounded().T + self.bias


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights: the cohort is 72% melanoma, and macro-F1 is what matters."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = counts.sum() / np.maximum(counts, 1) / n_classes
    return torch.tensor(weights, dtype=torch.float32)


def drop_modalities(present: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Randomly hide modalities (never all of a case's) so the heads learn to work with what is there."""
    present = present.bool()
    keep = (torch.rand(present.shape, generator=generator) >= p) & present
    empty = keep.sum(1) == 0
    keep[empty] = present[empty]
    return keep


def fit_minibatches(
    module: nn.Module,
    optimiser: torch.optim.Optimizer,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    n_items: int,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
) -> list[float]:
    """Shuffled minibatch epochs over ``n_items``: ``batch_loss(indices)`` gives each step's loss.

    Returns the mean loss per epoch and leaves the module in eval mode.
    """
    history = []
    distributed.init("cpu").average_gradients(optimiser)  # torchrun: every rank steps on its own patients' batches
    module.train()
    for _ in range(epochs):
        order, total = torch.randperm(n_items, generator=generator), 0.0
        for start in range(0, n_items, batch_size):
            idx = order[start : start + batch_size]
            loss = batch_loss(idx)
            require_finite_loss(loss.item(), step=start // batch_size + 1, cases=[f"patient {int(i)}" for i in idx])  # nothing saved yet
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        history.append(total / n_items)
    module.eval()
    return history


def train_modality_net(net: ModalityNet, images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """Per-image classification (each phase carries its patient's label); returns the loss per epoch."""
    n, phases = images.shape[:2]
    x = torch.from_numpy(images.reshape(n * phases, 1, *images.shape[2:]))
    y = torch.from_numpy(np.repeat(labels, phases)).long()
    device = next(net.parameters()).device  # the data stay on the CPU; each batch goes to the net
    weights = class_weights(labels, net.head.out_features).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)  # a CPU generator: the same draws on any device

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        batch = x[idx]
        flip = torch.rand(len(idx), generator=generator) < 0.5  # fundus and B-scan have no preferred left/right
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch).to(device)
        return F.cross_entropy(net(batch), y[idx].to(device), weight=weights)

    return fit_minibatches(net, optimiser, batch_loss, len(x), epochs=epochs, batch_size=batch_size, generator=generator)


@torch.no_grad()
def image_features(net: ModalityNet, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N, phases, H, W) -> (N, phases, F) frozen features."""
    net.eval()
    device = next(net.parameters()).device  # the encoder's device (medsuite classify --device)
    n, phases = images.shape[:2]
    flat = torch.from_numpy(images.reshape(n * phases, 1, *images.shape[2:]))
    out = torch.cat([net.features(flat[i : i + batch_size].to(device)).cpu() for i in range(0, len(flat), batch_size)])
    return out.numpy().reshape(n, phases, -1)


def fit_cavs(features: np.ndarray, positive: np.ndarray, usable: np.ndarray, c: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Concept activation vectors for one modality: a LinearSVC per concept on every phase's features.

    features (N, phases, F); positive, usable (N, K). Returns weight (K, F) and bias (K,) acting on RAW
    features and already divided by the normal's length, so ``x @ W.T + b`` is the signed distance.
    """
    from sklearn.svm import LinearSVC

    n, phases, dim = features.shape
    flat = features.reshape(n * phases, dim)
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    z = (flat - mean) / std
    weights, biases = [], []
    for k in range(positive.shape[1]):
        y = np.repeat(positive[:, k], phases)
        use = np.repeat(usable[:, k], phases).astype(bool)
        if len(set(y[use])) < 2:  # never (or always) reported: a constant score on its side
            weights.append(np.zeros(dim))
            biases.append(1.0 if use.any() and y[use].all() else -1.0)
            continue
        svm = LinearSVC(C=c, class_weight="balanced", random_state=seed, max_iter=5000).fit(z[use], y[use])
        w, b = svm.coef_[0], svm.intercept_[0]
        norm = np.linalg.norm(w) + 1e-12
        weights.append(w / std / norm)
        biases.append((b - np.dot(w, mean / std)) / norm)
    return np.asarray(weights, np.float32), np.asarray(biases, np.float32)


def concept_scores(features: dict[str, np.ndarray], cavs: dict[str, tuple[np.ndarray, np.ndarray]], index: dict[str, list[int]], n_concepts: int, present: np.ndarray, modalities: list[str]) -> np.ndarray:
    """Signed distances max-pooled over phases; a missing modality's concepts score 0."""
    n = len(present)
    scores = np.zeros((n, n_concepts), np.float32)
    for m, modality in enumerate(modalities):
        if modality not in features or not index[modality]:
            continue
        w, b = cavs[modality]
        per_phase = features[modality] @ w.T + b  # (N, phases, K)
        scores[:, index[modality]] = per_phase.max(1) * present[:, m : m + 1]
    return scores


def train_bottleneck(head: nn.Module, inputs: torch.Tensor, labels: np.ndarray, present: torch.Tensor, columns: list[list[int]], *, n_classes: int, steps: int, lr: float, dropout: float, seed: int) -> float:
    """Full-batch Adam with cross-entropy; ``columns[m]`` are modality m's input columns (zeroed when dropped)."""
    weights = class_weights(labels, n_classes)
    y = torch.from_numpy(labels).long()
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        keep = drop_modalities(present, dropout, generator)
        mask = torch.ones_like(inputs)
        for m, cols in enumerate(columns):
            mask[:, cols] = keep[:, m : m + 1].float()
        loss = F.cross_entropy(head(inputs * mask), y, weight=weights)
        require_finite_loss(loss.item(), step=step + 1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return float(loss.item())


class BlackBox(nn.Module):
    """The same frozen features (max over phases, per modality, concatenated) to the classes, no concepts."""

    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class JointCBM(nn.Module):
    """Encoders + per-modality linear concept heads + the bounded bottleneck, trained end to end."""

    def __init__(self, nets: dict[str, ModalityNet], index: dict[str, list[int]], n_concepts: int, n_classes: int):
        super().__init__()
        self.modalities = list(nets)
        self.index = index
        self.n_concepts = n_concepts
        self.nets = nn.ModuleDict(nets)
        self.concept_heads = nn.ModuleDict({m: nn.Linear(nets[m].n_features, max(1, len(index[m]))) for m in nets})
        self.bottleneck = Bottleneck(n_concepts, n_classes)

    def scores(self, images: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        n = len(present)
        out = torch.zeros(n, self.n_concepts, device=present.device)
        for m, modality in enumerate(self.modalities):
            if modality not in images or not self.index[modality]:
                continue
            x = images[modality]
            phases = x.shape[1]
            feats = self.nets[modality].features(x.reshape(n * phases, 1, *x.shape[2:]))
            per_phase = self.concept_heads[modality](feats).reshape(n, phases, -1)
            out[:, self.index[modality]] = per_phase.amax(1) * present[:, m : m + 1].float()
        return out

    def forward(self, images: dict[str, torch.Tensor], present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.scores(images, present)
        return self.bottleneck(s), s


def train_joint(model: JointCBM, images: dict[str, np.ndarray], labels: np.ndarray, positive: np.ndarray, usable: np.ndarray, present: np.ndarray, *, epochs: int, batch_size: int, lr: float, concept_weight: float, dropout: float, seed: int) -> list[float]:
    device = model.bottleneck.bias.device  # the data stay on the CPU; each batch goes to the model
    weights = class_weights(labels, model.bottleneck.bias.shape[0]).to(device)
    generator = torch.Generator().manual_seed(seed)
    # the bottleneck starts at zero and must move far; the pretrained encoders only need a nudge
    heads = [*model.bottleneck.parameters(), *model.concept_heads.parameters()]
    optimiser = torch.optim.Adam([{"params": model.nets.parameters(), "lr": lr}, {"params": heads, "lr": 20 * lr}])
    tensors = {m: torch.from_numpy(a) for m, a in images.items()}
    y, pos, use, pres = (torch.from_numpy(a) for a in (labels.astype(np.int64), positive.astype(np.float32), usable.astype(np.float32), present))

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        keep = drop_modalities(pres[idx], dropout, generator).to(device)
        logits, s = model({m: t[idx].to(device) for m, t in tensors.items()}, keep)
        seen = torch.zeros_like(s, dtype=torch.bool)
        for m, modality in enumerate(model.modalities):
            seen[:, model.index[modality]] = keep[:, m : m + 1]
        mask = use[idx].to(device) * seen.float()
        concept_loss = (F.binary_cross_entropy_with_logits(s, pos[idx].to(device), reduction="none") * mask).sum() / mask.sum().clamp(min=1)
        return F.cross_entropy(logits, y[idx].to(device), weight=weights) + concept_weight * concept_loss

    return fit_minibatches(model, optimiser, batch_loss, len(y), epochs=epochs, batch_size=batch_size, generator=generator)
