"""``medsuite train concepts``: fit the sequential CBM, joint CBM and black box on a pipeline's card and
write RUN/model.pt and RUN/report.json with the held-out figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def train_concepts(pipeline: str | Path, output: Path, root: Path | None = None, log: Callable[[str], None] | None = None, *, device: str = "cpu", seed: int | None = None) -> dict:
    """Train from a pipeline (a shipped name or a YAML path) into ``output``; returns report.json's content.
    ``seed`` overrides the pipeline's ``train.seed``; ``device`` is where the networks learn."""
    from medsuite import distributed
    from medsuite.concepts.evaluate import evaluate
    from medsuite.concepts.infer import patient_energy
    from medsuite.concepts.pipeline import fit, load_concepts_pipeline, training_cohorts
    from medsuite.config import pipeline_path
    from medsuite.data.cards import load_card
    from medsuite.io import check_output_dir, write_json
    from medsuite.provenance import new_report

    log = log or (lambda *_: None)
    start = time.perf_counter()
    check_output_dir(output, 64 << 20)  # before minutes of training
    config, vocabulary = load_concepts_pipeline(pipeline)
    if seed is not None:
        config = config.model_copy(update={"train": config.train.model_copy(update={"seed": seed})})
    train, test = training_cohorts(config, vocabulary, str(root) if root else None)
    ctx = distributed.init(device)
    if not ctx.is_main:  # under torchrun one rank speaks
        log = lambda *_: None  # noqa: E731
    log(f"training on {len(train)} patients (classes {dict(zip(config.classes, map(int, np.bincount(train.labels))))}), testing on {len(test)}")
    model = fit(config, vocabulary, train, log=log, device=device)
    output.mkdir(parents=True, exist_ok=True)
    if ctx.enabled:
        distributed.record_run(output, ctx, torch.nn.ModuleList([*model.nets.values(), model.bottleneck, model.blackbox, *([model.joint] if model.joint else [])]))
    if not ctx.is_main:  # torchrun: rank 0 writes the model and the report
        return {}
    model.save(output / "model.pt", card=config.data.card)
    report = new_report("train concepts", [pipeline_path(pipeline)], config.model_dump(mode="json"))
    report["data_card"] = config.data.card
    report["synthetic"] = load_card(config.data.card).synthetic
    report["test"] = evaluate(model, test)
    report["energy"] = patient_energy(model, {m: test.images[m][0] for m in model.modalities})  # the first held-out patient
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["outputs"] = {"model": "model.pt"}
    write_json(output / "report.json", report)
    return report
