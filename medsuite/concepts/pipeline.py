"""Training the concept models from a pipeline YAML, and the trained model object used for prediction."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from medsuite import distributed
from medsuite.backbones import EncoderSpec
from medsuite.concepts import model as M
from medsuite.concepts.data import report_labels
from medsuite.concepts.cohort import Cohort
from medsuite.concepts.synthetic import generate_cohort
from medsuite.concepts.vocabulary import Vocabulary, load_vocabulary
from medsuite.config import load_pipeline, pipeline_path
from medsuite.data.intensity import IntensityRule

KIND = "concepts"


class DataSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    card: str = "choroid_synthetic"
    root: str | None = None


class SyntheticSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patients: int = Field(750, ge=12)
    test_patients: int = Field(300, ge=12)
    image_size: int = Field(64, ge=16)
    seed: int = 0


class TrainSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    encoder_epochs: int = Field(8, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    svm_c: float = Field(0.1, gt=0)
    bottleneck_steps: int = Field(500, ge=1)
    bottleneck_lr: float = Field(0.05, gt=0)
    modality_dropout: float = Field(0.2, ge=0, lt=1)
    joint_epochs: int = Field(3, ge=0)
    joint_lr: float = Field(5e-4, gt=0)
    concept_loss_weight: float = Field(1.0, ge=0)


class ConceptsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: DataSection = Field(default_factory=DataSection)
    classes: list[str] = Field(min_length=2)
    vocabulary: str | None = Field(None, description="concept vocabulary YAML, relative to the pipeline file; null: the shipped one (medsuite/concepts/vocabulary.yaml)")
    synthetic: SyntheticSection = Field(default_factory=SyntheticSection)
    image_size: int = Field(64, ge=16)
    # Checkpoints from before this field validate with its default, which is the rule they were trained with.
    intensity: IntensityRule = Field(
        default_factory=lambda: IntensityRule(kind="percentile", lower=0.5, upper=99.5),
        description="how pictures without a bit depth (NIfTI, MHA, NRRD, DICOM) are scaled to 0-1; PNG/JPEG/TIFF are divided by their maximum value",
    )
    backbone: EncoderSpec
    train: TrainSection = Field(default_factory=TrainSection)


def load_concepts_pipeline(name_or_path: str | Path) -> tuple[ConceptsConfig, Vocabulary]:
    """The pipeline (a shipped name or a path) and its vocabulary, found relative to the pipeline file."""
    path = pipeline_path(name_or_path)
    config = load_pipeline(path, ConceptsConfig)
    if config.vocabulary is None:
        return config, load_vocabulary()
    vocab_path = Path(config.vocabulary)
    return config, load_vocabulary(vocab_path if vocab_path.is_absolute() else path.parent / vocab_path)


def training_cohorts(config: ConceptsConfig, vocabulary: Vocabulary, root: str | None = None) -> tuple[Cohort, Cohort]:
    """(train, test): generated for a synthetic card; the card's patient-level split otherwise."""
    from medsuite.data.cards import load_card

    card = load_card(config.data.card)
    if card.synthetic:
        s = config.synthetic
        return (
            generate_cohort(vocabulary, s.patients, size=config.image_size, seed=s.seed, classes=tuple(config.classes)),
            generate_cohort(vocabulary, s.test_patients, size=config.image_size, seed=s.seed + 1000, classes=tuple(config.classes)),
        )
    from medsuite.concepts.data import cohort_from_records
    from medsuite.data.datasets import discover_records, split_records

    splits = split_records(card, discover_records(card, root or config.data.root))
    train = cohort_from_records(splits["train"] + splits["val"], vocabulary, config.classes, config.image_size, config.intensity)
    return train, cohort_from_records(splits["test"], vocabulary, config.classes, config.image_size, config.intensity)


@dataclass
class ConceptModel:
    """Everything prediction needs: frozen encoders, CAVs, bottleneck, joint model and black box."""

    config: ConceptsConfig
    vocabulary: Vocabulary
    nets: dict[str, M.ModalityNet]
    cavs: dict[str, tuple[np.ndarray, np.ndarray]]
    bottleneck: M.Bottleneck
    blackbox: M.BlackBox
    joint: M.JointCBM | None
    present_values: np.ndarray  # per concept: the typical score of a reported-present case (intervention "present")
    absent_values: np.ndarray

    @property
    def modalities(self) -> list[str]:
        return list(self.vocabulary.modalities)

    @property
    def index(self) -> dict[str, list[int]]:
        return {m: self.vocabulary.of_modality(m) for m in self.modalities}

    def features(self, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {m: M.image_features(self.nets[m], a) for m, a in images.items() if m in self.nets}

    def scores(self, features: dict[str, np.ndarray], present: np.ndarray) -> np.ndarray:
        return M.concept_scores(features, self.cavs, self.index, len(self.vocabulary.concepts), present, self.modalities)

    def blackbox_inputs(self, features: dict[str, np.ndarray], present: np.ndarray) -> np.ndarray:
        n = len(present)
        width = next(iter(self.nets.values())).n_features
        blocks = [features[m].max(1) * present[:, i : i + 1] if m in features else np.zeros((n, width), np.float32) for i, m in enumerate(self.modalities)]
        return np.concatenate(blocks, 1).astype(np.float32)

    @torch.no_grad()
    def predict_scores(self, scores: np.ndarray) -> np.ndarray:
        return torch.softmax(self.bottleneck(torch.from_numpy(scores)), 1).numpy()

    @torch.no_grad()
    def predict_blackbox(self, features: dict[str, np.ndarray], present: np.ndarray) -> np.ndarray:
        return torch.softmax(self.blackbox(torch.from_numpy(self.blackbox_inputs(features, present))), 1).numpy()

    @torch.no_grad()
    def predict_joint(self, images: dict[str, np.ndarray], present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, s = self.joint({m: torch.from_numpy(a) for m, a in images.items()}, torch.from_numpy(present))
        return torch.softmax(logits, 1).numpy(), s.numpy()

    def save(self, path: str | Path, **extra: Any) -> Path:
        from medsuite.checkpoints import save_checkpoint

        tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731 - checkpoints hold tensors, not numpy
        state = {
            "nets": {m: n.state_dict() for m, n in self.nets.items()},
            "cavs": {m: [tensor(w), tensor(b)] for m, (w, b) in self.cavs.items()},
            "bottleneck": self.bottleneck.state_dict(),
            "blackbox": self.blackbox.state_dict(),
            "joint": self.joint.state_dict() if self.joint is not None else None,
            "present_values": tensor(self.present_values),
            "absent_values": tensor(self.absent_values),
        }
        return save_checkpoint(path, kind=KIND, state=state, config={"pipeline": self.config.model_dump(mode="json"), "vocabulary": self.vocabulary.to_dict(), "backbone": self.config.backbone.model_dump(mode="json")}, **extra)

    @classmethod
    def load(cls, path: str | Path) -> ConceptModel:
        from medsuite.checkpoints import load_model

        return load_model(path, KIND).model

    @classmethod
    def from_checkpoint(cls, path: Path, payload: dict[str, Any]) -> ConceptModel:
        """The model of a checked checkpoint payload (``medsuite.checkpoints.load_model`` calls this)."""
        from medsuite.checkpoints import fill, validated

        config = validated(path, ConceptsConfig, payload["config"]["pipeline"])
        vocabulary = Vocabulary.from_dict(payload["config"]["vocabulary"], path)
        state = payload["state"]
        model = cls._empty(config, vocabulary, with_joint=state["joint"] is not None)
        for m, net in model.nets.items():
            fill(path, net, state["nets"][m])
        model.cavs = {m: (w.numpy(), b.numpy()) for m, (w, b) in state["cavs"].items()}
        fill(path, model.bottleneck, state["bottleneck"])
        fill(path, model.blackbox, state["blackbox"])
        if model.joint is not None:
            fill(path, model.joint, state["joint"])
        model.present_values, model.absent_values = state["present_values"].numpy(), state["absent_values"].numpy()
        return model.eval()

    @classmethod
    def _empty(cls, config: ConceptsConfig, vocabulary: Vocabulary, with_joint: bool) -> ConceptModel:
        n_classes, n_concepts = len(config.classes), len(vocabulary.concepts)
        backbone = config.backbone.model_dump()
        nets = {m: M.ModalityNet(backbone, n_classes) for m in vocabulary.modalities}
        width = next(iter(nets.values())).n_features
        joint = None
        if with_joint:
            joint_nets = {m: M.ModalityNet(backbone, n_classes) for m in vocabulary.modalities}
            joint = M.JointCBM(joint_nets, {m: vocabulary.of_modality(m) for m in vocabulary.modalities}, n_concepts, n_classes)
        zeros = np.zeros(n_concepts, np.float32)
        return cls(config, vocabulary, nets, {}, M.Bottleneck(n_concepts, n_classes), M.BlackBox(width * len(nets), n_classes), joint, zeros, zeros)

    def encoders_to(self, device: torch.device | str) -> ConceptModel:
        """Run the modality encoders (the model's convolutions) on ``device``; the bottleneck stays on the CPU."""
        for net in self.nets.values():
            net.to(device)
        return self

    def eval(self) -> ConceptModel:
        for module in (*self.nets.values(), self.bottleneck, self.blackbox, *([self.joint] if self.joint else [])):
            module.eval()
        return self


def _columns(vocabulary: Vocabulary) -> list[list[int]]:
    return [vocabulary.of_modality(m) for m in vocabulary.modalities]


def fit(config: ConceptsConfig, vocabulary: Vocabulary, cohort: Cohort, *, log=print, device: str = "cpu") -> ConceptModel:
    """Sequential CBM (encoders -> CAVs -> bottleneck), black box and joint CBM on one training cohort.

    The networks learn on ``device`` (auto | cpu | cuda); the CAVs and bottlenecks are fitted on the CPU, and
    the model is returned there (``encoders_to`` moves it for inference)."""
    import copy

    from medsuite.runtime import seed_everything

    t = config.train
    seed_everything(t.seed)
    ctx = distributed.init(device)
    model = ConceptModel._empty(config, vocabulary, with_joint=False).encoders_to(ctx.device)
    n_classes = len(config.classes)
    positive, usable = report_labels(cohort.reports, vocabulary)
    present = np.ones((len(cohort), len(vocabulary.modalities)), np.float32)
    # torchrun: the networks learn on this rank's patients (gradients averaged, medsuite.distributed); the
    # features, CAVs and bottlenecks that follow are fitted on every patient, identically on every rank.
    mine = ctx.shard_indices(len(cohort)) if ctx.enabled else slice(None)
    own = cohort.subset(mine) if ctx.enabled else cohort
    features = {}
    for m, net in model.nets.items():
        start = time.perf_counter()
        images = torch.from_numpy(cohort.images[m].reshape(-1, 1, *cohort.images[m].shape[2:]))
        warm_up = net.encoder.warm_up(images.to(ctx.device), batch_size=t.batch_size, seed=t.seed)  # the backbone's own pretraining, if any
        if warm_up:
            ctx.broadcast_weights(net.encoder)
            log(f"encoder {m}: warm-up loss {warm_up[0]:.3f} -> {warm_up[-1]:.3f}")
        history = M.train_modality_net(net, own.images[m], own.labels, epochs=t.encoder_epochs, batch_size=t.batch_size, lr=t.lr, seed=t.seed)
        features[m] = M.image_features(net, cohort.images[m])
        cols = vocabulary.of_modality(m)
        model.cavs[m] = M.fit_cavs(features[m], positive[:, cols], usable[:, cols], t.svm_c, t.seed)
        log(f"encoder {m}: loss {history[0]:.3f} -> {history[-1]:.3f} ({time.perf_counter() - start:.0f}s)")
    scores = model.scores(features, present)
    model.present_values = np.array([np.median(scores[positive[:, k] == 1, k]) if positive[:, k].any() else 1.0 for k in range(scores.shape[1])], np.float32)
    model.absent_values = np.array([np.median(scores[positive[:, k] == 0, k]) if (positive[:, k] == 0).any() else -1.0 for k in range(scores.shape[1])], np.float32)
    pres = torch.from_numpy(present).bool()
    M.train_bottleneck(model.bottleneck, torch.from_numpy(scores), cohort.labels, pres, _columns(vocabulary), n_classes=n_classes, steps=t.bottleneck_steps, lr=t.bottleneck_lr, dropout=t.modality_dropout, seed=t.seed)
    width = next(iter(model.nets.values())).n_features
    blocks = [list(range(i * width, (i + 1) * width)) for i in range(len(model.nets))]
    M.train_bottleneck(model.blackbox, torch.from_numpy(model.blackbox_inputs(features, present)), cohort.labels, pres, blocks, n_classes=n_classes, steps=t.bottleneck_steps, lr=t.bottleneck_lr / 5, dropout=t.modality_dropout, seed=t.seed)
    if t.joint_epochs:
        start = time.perf_counter()
        model.joint = M.JointCBM({m: copy.deepcopy(n) for m, n in model.nets.items()}, model.index, len(vocabulary.concepts), n_classes).to(ctx.device)
        history = M.train_joint(model.joint, own.images, own.labels, positive[mine], usable[mine], present[mine], epochs=t.joint_epochs, batch_size=t.batch_size // 2 or 1, lr=t.joint_lr, concept_weight=t.concept_loss_weight, dropout=t.modality_dropout, seed=t.seed)
        log(f"joint CBM: loss {history[0]:.3f} -> {history[-1]:.3f} ({time.perf_counter() - start:.0f}s)")
        model.joint.cpu()
    return model.encoders_to("cpu").eval()
