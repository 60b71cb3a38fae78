"""``medsuite segment`` (batch inference), ``train segmentation``, ``evaluate segmentation``, demo part."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medsuite.commands import THREADS_HELP, batch_summary, example, evaluate_app, train_app
from medsuite.commands.merge import NUM_PARTS, PART_ID, part_of
from medsuite.export.formats import OUTPUT_FORMAT_HELP, OutputFormat

DEFAULT_EVALUATION = Path("medsuite_results") / "evaluate_segmentation"  # in the current folder, as medsuite demo's results

DEMO_ORDER = 20


# one option for both commands: segment and evaluate must predict the same way by default
ORIENTATION_SEARCH = typer.Option(False, "--orientation-search/--as-given", help="Predict in the in-plane orientation (of 8 quarter turns x transposes) the model is most certain of, mapped back exactly: for stacks from other scanners or converters (fixes the M&Ms-2 example's RV); about 2.7x the CPU time, and on ACDC it costs 0.002 Dice (docs/segmentation.md). Default: the slices as stored.")


def segment(
    inputs: list[Path] = typer.Argument(..., help="NIfTI/MHA/NRRD files, DICOM series folders, or folders of them."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder: <case>_seg.nii.gz, report.json, errors.tsv."),
    model: list[Path] | None = typer.Option(None, "--model", help="Segmentation checkpoint or bundle folder (`medsuite models export`); repeat it, or give a folder of fold runs or .pt files, for an ensemble averaged in probability space (default: the shipped ACDC model)."),
    frame: int | None = typer.Option(None, "--frame", help="Frame of a 4D cine to segment (0-based)."),
    resume: bool = typer.Option(False, "--continue", help="Skip cases whose mask is already written."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of torch and numpy (inference itself is deterministic)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar; print only the results folder."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Mirroring test-time augmentation (in-plane flips, averaged) for members trained with flips; --no-tta is 4x faster."),
    orientation_search: bool = ORIENTATION_SEARCH,
    save_probabilities: bool = typer.Option(False, "--save-probabilities", help="Also write <case>_probabilities.nii.gz: float32 class probabilities (x, y, z, 1, class: NIfTI's vector layout) on the input's grid and affine."),
    qc_entropy: float | None = typer.Option(None, "--qc-entropy", help="QC threshold on the mean predictive entropy inside the heart (default: the model's, see report.json qc)."),
    pairs: Path | None = typer.Option(None, "--pairs", help="CSV with columns patient,ed,es naming the ED and ES case of each patient, for cardiac function."),
    output_format: list[OutputFormat] = typer.Option([OutputFormat.nifti], "--output-format", help=OUTPUT_FORMAT_HELP),
    num_parts: int = NUM_PARTS,
    part_id: int = PART_ID,
) -> None:
    """Segment the card's classes (RV, myocardium, LV for ACDC) in short-axis cine MR; masks keep each input's affine and shape; ED/ES pairs get cardiac function (report.json, cardiac_function.csv)."""
    from medsuite.runtime import configure_runtime
    from medsuite.segmentation.infer import segment_batch

    chosen = configure_runtime(threads, device, seed)
    code = segment_batch(inputs, output, checkpoint=model or None, frame=frame, resume=resume, device=str(chosen), quiet=quiet, tta=tta, orientation_search=orientation_search, save_probabilities=save_probabilities, qc_entropy=qc_entropy, pairs=pairs, part=part_of(num_parts, part_id), output_formats=output_format)
    typer.echo(str(output) if quiet else f"segment: {batch_summary(output)}; masks in {output} (open with: medsuite view {output})")
    raise typer.Exit(code)


def train_segmentation(
    pipeline: str = typer.Option("segmentation_neunet_acdc", "--pipeline", help="Pipeline YAML, or a shipped pipeline's name."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder (resumes from last.pt when present)."),
    max_epochs: int | None = typer.Option(None, "--max-epochs", help="Override train.epochs."),
    init: Path | None = typer.Option(None, "--init", help="Start from an encoder checkpoint (pretext pretraining) or a whole segmentation checkpoint of the same model (fine-tuning)."),
    root: Path | None = typer.Option(None, "--root", help="Data folder overriding the card's layout.root."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Override the pipeline's seed."),
    fold: int | None = typer.Option(None, "--fold", help="Cross-validation fold K (0-based, of data.folds): train on the other folds of the card's train patients, select the model on this one."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in -o from its last.pt (needed with --init when last.pt exists)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output; print only the summary line."),
) -> None:
    """Train a segmentation model from a pipeline YAML on its data card's train split (or one cross-validation fold of it)."""
    from medsuite.config import load_pipeline
    from medsuite.distributed import is_main_process
    from medsuite.errors import MedsuiteError
    from medsuite.runtime import configure_runtime
    from medsuite.segmentation.config import SegmentationConfig
    from medsuite.segmentation.train import train

    configure_runtime(threads, device)

    config = load_pipeline(pipeline, SegmentationConfig)
    updates = {k: v for k, v in {"seed": seed}.items() if v is not None}
    if root is not None:
        config.data.root = str(root)
    if fold is not None:
        if not 0 <= fold < config.data.folds:
            raise MedsuiteError("--fold", f"fold {fold} does not exist (data.folds is {config.data.folds})", f"give 0..{config.data.folds - 1}")
        config.data.fold = fold
    config = config.model_copy(update=updates)
    result = train(config, output, max_epochs=max_epochs, device=device, init=init, resume=resume, quiet=quiet)
    if is_main_process():  # under torchrun every rank returns the same result; one line is enough
        Console().print(f"best validation mean Dice {result['best_val_mean_dice']:.4f} after {result['epochs']} epochs; checkpoints in {output}")


def evaluate_segmentation(
    runs: list[Path] = typer.Argument(..., help="Training run folders (best.pt), checkpoint files, or a folder of fold runs: several are an ensemble."),
    card: str | None = typer.Option(None, "--card", help="Data card id or YAML (default: the one the model was trained on)."),
    split: str = typer.Option("test", "--split", help="train | val | test | all"),
    root: Path | None = typer.Option(None, "--root", help="Data folder overriding the card's layout.root."),
    output: Path = typer.Option(DEFAULT_EVALUATION, "-o", "--output", help="Folder for metrics.json (default: medsuite_results/evaluate_segmentation in the current folder)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of torch and numpy (inference itself is deterministic)."),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the summary line, not the tables."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Mirroring test-time augmentation, as segment does by default."),
    orientation_search: bool = ORIENTATION_SEARCH,
) -> None:
    """Per-class and mean Dice and HD95, worst case, seconds per volume, uncertainty and clinical indices vs the reference masks on a card split; writes metrics.json."""
    from medsuite.runtime import configure_runtime
    from medsuite.segmentation.evaluate import clinical_table, evaluate_checkpoint, metrics_table

    chosen = configure_runtime(threads, device, seed)
    metrics, target = evaluate_checkpoint(runs, card=card, split=split, root=root, output=output, tta=tta, orientation_search=orientation_search, device=chosen)
    if not quiet:
        Console().print(metrics_table(metrics))
        clinical = clinical_table(metrics)
        if clinical is not None:
            Console().print(clinical)
    Console().print(f"evaluated the {split} split of card {metrics['parameters']['card']} ({len(metrics['cases'])} volumes): metrics in {target}")


def run_demo(out_dir: Path, console: Console) -> None:
    """Segment a generated oblique short-axis volume with the shipped model into OUT/segmentation/; the Dice on
    the phantom goes to OUT/segmentation/phantom_metrics.json (report.json stays the batch runner's)."""
    import json

    import nibabel as nib
    import numpy as np
    import torch

    from medsuite.errors import MedsuiteError
    from medsuite.io import write_json, write_nifti
    from medsuite.segmentation.infer import segment_batch
    from medsuite.segmentation.metrics import volume_metrics
    from medsuite.segmentation.synthetic import synthetic_short_axis

    folder = out_dir / "segmentation"
    inputs = folder / "inputs"
    vol, labels = synthetic_short_axis()
    case = write_nifti(inputs / "synthetic_sax.nii.gz", vol.array, vol.affine)
    if segment_batch([case], folder, quiet=True) != 0:
        raise MedsuiteError(folder / "errors.tsv", "the demo case failed", "read the error line there")
    mask = np.asarray(nib.load(str(folder / "synthetic_sax_seg.nii.gz")).dataobj)
    names = {int(k): v for k, v in json.loads((folder / "report.json").read_text())["labels"].items()}
    scores = volume_metrics(torch.as_tensor(mask), torch.as_tensor(labels), vol.spacing.tolist(), names)
    write_json(folder / "phantom_metrics.json", {"note": "generated phantom, not ACDC: a smoke check, not an accuracy figure", **scores})
    console.print(f"segment: {folder}; Dice on the generated phantom (not ACDC): " + ", ".join(f"{k} {v['dice']:.2f}" for k, v in scores.items()))


def register(app: typer.Typer) -> None:
    app.command("segment", epilog=example("medsuite segment scans/ -o results/masks", "medsuite segment cine.nii.gz --frame 0 -o out/"))(segment)
    train_app.command("segmentation", epilog=example("medsuite train segmentation -o runs/neunet --max-epochs 5"))(train_segmentation)
    evaluate_app.command("segmentation", epilog=example("medsuite evaluate segmentation runs/neunet --split test"))(evaluate_segmentation)
