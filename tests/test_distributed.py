"""torchrun data parallelism: the patient-sharding sampler, the single-process identity, and a real
``torchrun --nproc-per-node 2`` run of ``train segmentation`` on CPU (gloo) with a resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from medsuite.checkpoints import load_checkpoint
from medsuite.distributed import DistributedContext, PatientShardSampler, init, state_digest
from medsuite.errors import MedsuiteError
from medsuite.segmentation.synthetic import write_synthetic_acdc

from .conftest import REPO_ROOT


def test_sampler_deals_whole_patients_and_equal_counts():
    sizes = {"a": 9, "b": 4, "c": 4, "d": 7, "e": 2}
    patients = [p for p, n in sizes.items() for _ in range(n)]
    for epoch in range(3):
        ranks = []
        for rank in range(2):
            sampler = PatientShardSampler(patients, rank=rank, world_size=2, seed=5)
            sampler.set_epoch(epoch)
            ranks.append(list(sampler))
        assert len(ranks[0]) == len(ranks[1]) == len(sampler)
        owners = [{patients[i] for i in items} for items in ranks]
        assert owners[0].isdisjoint(owners[1]) and owners[0] | owners[1] == set(sizes)  # no patient on two ranks
        for items, mine in zip(ranks, owners):  # every slice of a rank's patients, some repeated to pad
            assert set(items) == {i for i, p in enumerate(patients) if p in mine}
    again = PatientShardSampler(patients, rank=1, world_size=2, seed=5)
    again.set_epoch(2)
    assert list(again) == ranks[1]  # seed and epoch fix the order


def test_sampler_balances_slices_between_ranks():
    patients = [f"p{k}" for k in range(10) for _ in range(3 + k % 4)]
    ranks = PatientShardSampler(patients, rank=0, world_size=3, seed=0).assignment()
    counts = [len(r) for r in ranks]
    assert sum(counts) == len(patients) and max(counts) - min(counts) <= 6  # at most one patient's slices apart


def test_more_ranks_than_patients_is_one_clear_error():
    with pytest.raises(MedsuiteError, match="2 patients cannot be shared by 3 processes"):
        PatientShardSampler(["a", "a", "b"], rank=0, world_size=3, seed=0)


def test_dealing_across_sources_and_padded_shards():
    ranks = [DistributedContext(rank=r, world_size=2) for r in range(2)]
    dealers = [ctx.dealer() for ctx in ranks]
    assert [d(["exam"]) + d(["s1", "s2", "s3"]) for d in dealers] == [["exam", "s2"], ["s1", "s3"]]  # a one-exam source is no error
    assert [ctx.shard_indices(5).tolist() for ctx in ranks] == [[0, 2, 4], [1, 3, 1]]  # equal steps on every rank
    with pytest.raises(MedsuiteError, match="1 patients cannot be shared by 2 processes"):
        lonely = ranks[1].dealer()
        lonely(["only"])
        lonely.check()


def test_without_torchrun_everything_is_the_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init("cpu")
    model = torch.nn.Linear(2, 2)
    assert ctx == DistributedContext(device=torch.device("cpu")) and not ctx.enabled and ctx.is_main
    assert ctx.wrap(model) is model and ctx.mean(2.5) == 2.5 and ctx.from_main(3) == 3 and ctx.on_main(lambda: 7) == 7
    assert ctx.shard([1, 2, 3]) == [1, 2, 3] and ctx.in_sync(model) == [state_digest(model.state_dict())]


def _torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "medsuite.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_torchrun_two_ranks_train_segmentation_and_resume(tmp_path):
    """Two CPU ranks (gloo): both finish, rank 0 alone writes one set of checkpoints, the ranks end with
    bit-identical weights (the checkpoint's), the loss falls, and a second launch resumes the run."""
    write_synthetic_acdc(tmp_path / "acdc", patients=6)
    pipeline = tmp_path / "tiny.yaml"
    pipeline.write_text(
        f"data: {{card: acdc_nifti, root: {tmp_path / 'acdc'}, image_size: [32, 32]}}\n"
        "backbone: {kind: cnn, spatial_dims: 2, channels: [4, 8, 16], strides: [2, 2, 2]}\n"
        "train: {epochs: 3, batch_size: 4, augment: false, lr: 0.01, val_every: 3}\n"
    )
    run = tmp_path / "run"
    first = _torchrun("train", "segmentation", "--pipeline", str(pipeline), "-o", str(run), "--max-epochs", "2", "--device", "cpu", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _torchrun("train", "segmentation", "--pipeline", str(pipeline), "-o", str(run), "--device", "cpu", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("best validation mean Dice") == 1  # one rank reports
    assert resumed.stderr.count("resuming") == 2  # both ranks resumed from last.pt
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "distributed.json", "history.json", "last.pt"]
    ckpt = load_checkpoint(run / "last.pt", kind="segmentation")
    record = json.loads((run / "distributed.json").read_text())
    assert record["world_size"] == 2 and record["backend"] == "gloo"
    assert record["weights_sha256_per_rank"] == [state_digest(ckpt["state"])] * 2
    losses = [e["loss"] for e in json.loads((run / "history.json").read_text())["history"]]
    assert len(losses) == 3 and ckpt["epoch"] == 3 and losses[-1] < losses[0]


def _tiny_registration(tmp_path):
    from medsuite.config import PIPELINES_DIR, load_pipeline
    from medsuite.registration.config import RegistrationConfig

    config = load_pipeline(PIPELINES_DIR / "registration_girnet.yaml", RegistrationConfig).model_dump(mode="json")
    config["train"].update(pairs=4, resolution_mm=12.0, iterations=4, checkpoint_every=2, registration_warmup=1)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    return ["train", "registration"], "girnet.pt"


def _tiny_pretext(tmp_path):
    from medsuite.pretext.synthetic import write_synthetic_exam

    for k in range(2):
        write_synthetic_exam(tmp_path / "exams" / f"exam{k}", seed=k)
    config = {"sources": [{"layout": "cinema_nifti", "path": str(tmp_path / "exams")}], "image_size": 32, "iterations": 10, "batch_size": 4}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    return ["pretrain"], "pretext_model.pt"


def _tiny_concepts(tmp_path):
    from medsuite.config import PIPELINES_DIR

    config = yaml.safe_load((PIPELINES_DIR / "concepts_choroid.yaml").read_text())
    config["synthetic"].update(patients=24, test_patients=12, image_size=32)
    config["image_size"] = 32
    config["train"].update(encoder_epochs=1, bottleneck_steps=20, joint_epochs=1, batch_size=16)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    return ["train", "concepts"], "model.pt"


def _concepts_modules(path):
    from medsuite.concepts.pipeline import ConceptModel

    model = ConceptModel.load(path)
    return torch.nn.ModuleList([*model.nets.values(), model.bottleneck, model.blackbox, *([model.joint] if model.joint else [])]).state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("setup", [_tiny_registration, _tiny_pretext, _tiny_concepts], ids=["registration", "pretext", "concepts"])
def test_every_other_trainer_runs_under_torchrun(tmp_path, setup):
    """Two CPU ranks finish, rank 0 writes the model, and both ranks hold exactly the saved weights."""
    command, saved = setup(tmp_path)
    run = tmp_path / "run"
    done = _torchrun(*command, "--pipeline", str(tmp_path / "p.yaml"), "-o", str(run), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((run / "distributed.json").read_text())
    digests = record["weights_sha256_per_rank"]
    state = _concepts_modules(run / saved) if saved == "model.pt" else torch.load(run / saved, weights_only=False)["state"]
    assert record["world_size"] == 2 and digests == [state_digest(state)] * 2


def test_torchrun_processes_share_the_cores(monkeypatch):
    from medsuite.runtime import available_cores

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    alone = available_cores()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * alone))
    assert available_cores() == 1  # never zero threads
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert available_cores() == alone
