"""`medsuite concepts extract|synth`, `medsuite classify` and `medsuite train concepts`: concept-based choroid tumour classification."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from medsuite.commands import THREADS_HELP, batch_summary, example, train_app
from medsuite.commands.merge import NUM_PARTS, PART_ID, part_of

DEMO_ORDER = 40

concepts_app = typer.Typer(help="Choroid tumour concepts: report extraction, synthetic cohorts.", no_args_is_help=True)
console = Console(highlight=False)


def extract(
    report: Path = typer.Argument(..., help="Report text file."),
    vocabulary: Path | None = typer.Option(None, "--vocabulary", help="Concept vocabulary YAML (default: the shipped medsuite/concepts/vocabulary.yaml)."),
    all_concepts: bool = typer.Option(False, "--all", help="Also list concepts the report does not mention."),
) -> None:
    """Print the report's concepts as JSON: present / absent / uncertain with the evidence span."""
    from medsuite.concepts.extract import NOT_MENTIONED, extract_concepts, findings_json
    from medsuite.concepts.vocabulary import DEFAULT_VOCABULARY, load_vocabulary
    from medsuite.errors import MedsuiteError

    if not report.is_file():
        raise MedsuiteError(report, "no such report file", "give a text file")
    try:
        text = report.read_text()
    except UnicodeDecodeError as exc:
        raise MedsuiteError(report, "is not UTF-8 text", "save the report as plain text") from exc
    found = findings_json(extract_concepts(text, load_vocabulary(vocabulary or DEFAULT_VOCABULARY)))
    typer.echo(json.dumps({k: v for k, v in found.items() if all_concepts or v["status"] != NOT_MENTIONED}, indent=2))


def synth(
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the SYNTHETIC patient folders (FA/, ICGA/, US/, report.txt, label.txt)."),
    patients: int = typer.Option(20, "--patients", min=3, help="How many (split 542:128:80 like the CTI cohort)."),
    size: int = typer.Option(64, "--size", min=16, help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator: the same seed writes the same cohort."),
) -> None:
    """Write a synthetic cohort in the hospital layout (data card choroid_synthetic)."""
    from medsuite.concepts import generate_cohort, load_vocabulary, write_cohort

    write_cohort(generate_cohort(load_vocabulary(), patients, size=size, seed=seed), output)
    typer.echo(f"wrote {patients} synthetic patients to {output}")


def classify(
    cases: list[Path] = typer.Argument(..., help="Case folders (FA/, ICGA/, US/ subfolders, optional report.txt), or folders of them."),
    output: Path = typer.Option(..., "-o", "--output", help="Result folder: <case>/prediction.json, explanation.png, report.json."),
    model: Path | None = typer.Option(None, "--model", help="Concept model (model.pt of `medsuite train concepts`; default: the shipped one, trained on synthetic data)."),
    corrections: list[str] = typer.Option([], "--set", help='Clinician correction, e.g. "US:acoustic hollowing=absent" (present/absent/number); repeatable.'),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda: where the modality encoders run (the bottleneck is tiny and stays on the CPU)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of torch and numpy (the prediction itself is deterministic)."),
    resume: bool = typer.Option(False, "--continue", help="Skip cases whose prediction.json exists."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar; print only the results folder."),
    num_parts: int = NUM_PARTS,
    part_id: int = PART_ID,
) -> None:
    """Classify choroid tumours (melanoma / hemangioma / metastasis) with concept explanations."""
    from medsuite.concepts.infer import DEFAULT_MODEL, classify_cases
    from medsuite.runtime import configure_runtime

    chosen = configure_runtime(threads, device, seed)
    code = classify_cases(cases, output, model_path=model or DEFAULT_MODEL, corrections=corrections, resume=resume, quiet=quiet, device=str(chosen), part=part_of(num_parts, part_id))
    typer.echo(str(output) if quiet else f"classify: {batch_summary(output)}; results in {output} (open with: medsuite view {output})")
    raise typer.Exit(code)


def train(
    pipeline: str = typer.Option("concepts_choroid", "--pipeline", help="Concepts pipeline YAML, or a shipped pipeline's name."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder (model.pt, report.json)."),
    root: Path | None = typer.Option(None, "--root", help="Data folder of a non-synthetic card (e.g. choroid_cti)."),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda: where the modality encoders learn (default cpu: the shipped model's; the CAVs and bottleneck always fit on the CPU)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Override the pipeline's seed."),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the summary line."),
) -> None:
    """Train the sequential and joint concept bottleneck models and the black-box baseline."""
    from medsuite.concepts.train import train_concepts
    from medsuite.runtime import configure_runtime

    chosen = configure_runtime(threads, device)
    report = train_concepts(pipeline, output, root, log=None if quiet else console.print, device=str(chosen), seed=seed)
    if not report:  # under torchrun, a rank other than 0: rank 0 writes and reports
        return
    t = report["test"]
    console.print(f"held-out macro-F1: CBM {t['f1_cbm_sequential']:.3f}, joint {t.get('f1_cbm_joint', float('nan')):.3f}, black box {t['f1_black_box']:.3f}; concept AUC {t['concept_auc_sequential']:.3f}; model in {output / 'model.pt'}")


def run_demo(out_dir: Path, console: Console) -> None:
    """Six synthetic patients (one with ultrasound only) classified by the shipped model, with one intervention.

    The cases are written to OUT/concepts_inputs/ (not a temporary folder): each prediction.json names its
    images relative to itself, so the viewer shows them from there even after OUT is moved."""
    import shutil

    import numpy as np

    from medsuite.concepts import generate_cohort, load_vocabulary, write_cohort
    from medsuite.concepts.infer import classify_cases

    target = out_dir / "concepts"
    inputs = out_dir / "concepts_inputs"
    shutil.rmtree(inputs, ignore_errors=True)  # the demo's own generated cases, rewritten each run
    vocabulary = load_vocabulary()
    cohort = generate_cohort(vocabulary, 12, seed=4242)
    picked = [int(i) for k in range(3) for i in (cohort.labels == k).nonzero()[0][:2]]
    cases = write_cohort(cohort.subset(np.array(picked)), inputs / "cases")
    only_us = sorted(cases.iterdir())[-1]
    for modality in ("FA", "ICGA"):
        shutil.rmtree(only_us / modality)
    code = classify_cases([cases], target, quiet=True, portable_root=out_dir)  # the demo folder may be moved
    truth = {p.name: (p / "label.txt").read_text().strip() for p in cases.iterdir()}
    if code:
        raise RuntimeError(f"classify failed on some demo cases (see {target / 'errors.tsv'})")
    predictions = {name: json.loads((target / name / "prediction.json").read_text()) for name in sorted(truth)}
    for name, prediction in predictions.items():
        console.print(f"{name}: {prediction['predicted_class']} (truth {truth[name]}) from {', '.join(prediction['modalities_used'])}")
    _demo_intervention(target, next(iter(predictions)), console)


def _demo_intervention(target: Path, name: str, console: Console) -> None:
    """What the viewer does: a clinician denies hollowing; the bottleneck alone recomputes the case."""
    from medsuite.concepts import intervene, plot_explanation
    from medsuite.io import write_json

    before = json.loads((target / name / "prediction.json").read_text())
    after = intervene(before, {"US:acoustic hollowing": "absent", "US:choroidal excavation": "absent"})
    write_json(target / name / "prediction_intervened.json", after)
    plot_explanation(after, target / name / "explanation_intervened.png")
    p0, p1 = before["probabilities"]["melanoma"], after["probabilities"]["melanoma"]
    console.print(f"intervention on {name}: hollowing and excavation set absent -> P(melanoma) {p0:.3f} -> {p1:.3f}, predicted {after['predicted_class']}")


def register(app: typer.Typer) -> None:
    concepts_app.command("extract", epilog=example("medsuite concepts extract patient01/report.txt"))(extract)
    concepts_app.command("synth", epilog=example("medsuite concepts synth -o cohort/ --patients 20"))(synth)
    app.command("classify", epilog=example("medsuite classify cohort/ -o results/classify", 'medsuite classify patient01/ -o out/ --set "US:acoustic hollowing=absent"'))(classify)
    train_app.command("concepts", epilog=example("medsuite train concepts -o runs/concepts", "medsuite train concepts --pipeline my_cti.yaml --root /data/cti -o runs/cti"))(train)
    app.add_typer(concepts_app, name="concepts")
