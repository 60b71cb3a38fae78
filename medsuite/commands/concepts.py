"""`medsuite concepts extract|synth`, `medsuite classify` and `medsuite train concepts`: concept-based choroid tumour classification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

DEMO_ORDER = 40
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "concepts" / "model.pt"
DEFAULT_PIPELINE = "concepts_choroid"

concepts_app = typer.Typer(help="Choroid tumour concepts: report extraction, synthetic cohorts.", no_args_is_help=True)
console = Console(highlight=False)


def classify_cases(inputs: list[Path], output: Path, *, model_path: Path = DEFAULT_MODEL, corrections: list[str] | None = None, resume: bool = False, quiet: bool = False, seed: int = 0) -> int:
    """Classify case folders into OUTPUT/<case>/prediction.json (+ explanation.png) and OUTPUT/report.json."""
    from medsuite.batch import find_cases, run_batch
    from medsuite.concepts.data import is_case_folder
    from medsuite.concepts.explain import intervene, parse_corrections, plot_explanation
    from medsuite.concepts.pipeline import ConceptModel
    from medsuite.concepts.predict import predict_case
    from medsuite.io import write_json
    from medsuite.runtime import seed_everything

    seed_everything(seed)
    wanted = parse_corrections(corrections or [])
    model = ConceptModel.load(model_path)
    modalities = model.modalities
    for item in map(Path, inputs):
        if item.is_dir() and not is_case_folder(item, modalities) and not any(is_case_folder(c, modalities) for c in item.iterdir()):
            from medsuite.errors import MedsuiteError

            raise MedsuiteError(item, f"holds no case ({'/, '.join(modalities)}/ subfolders with images)", "give patient folders with FA/, ICGA/ or US/ image subfolders")
    cases = find_cases(inputs, case_kind=lambda p: is_case_folder(p, modalities))
    for case in cases:
        if output.resolve() == case.path.resolve() or output.resolve().is_relative_to(case.path.resolve()):
            from medsuite.errors import MedsuiteError

            raise MedsuiteError(output, "is inside an input case folder", "choose an output folder outside the cases with -o")

    def process(case) -> dict:
        prediction = predict_case(model, case.path, case.name)
        if wanted:
            prediction = intervene(prediction, wanted)
        folder = output / case.name
        write_json(folder / "prediction.json", prediction)
        plot_explanation(prediction, folder / "explanation.png")
        return {
            "prediction": f"{case.name}/prediction.json",
            "explanation": f"{case.name}/explanation.png",
            "predicted_class": prediction["predicted_class"],
            "probabilities": prediction["probabilities"],
            "modalities_used": prediction["modalities_used"],
        }

    parameters = {"model": str(model_path), "corrections": wanted, "variant": "sequential", "classes": list(model.config.classes)}
    return run_batch(cases, output, process, outputs_of=lambda c: [output / c.name / "prediction.json"], command="classify", parameters=parameters, resume=resume, quiet=quiet, report_extra={"energy": _first_case_energy(model, cases)})


def train_concepts(pipeline: str | Path, output: Path, root: Optional[Path] = None, quiet: bool = False) -> dict:
    """Train the sequential CBM, joint CBM and black box; write RUN/model.pt and RUN/report.json with held-out figures."""
    import time

    from medsuite.concepts.evaluate import evaluate
    from medsuite.concepts.pipeline import fit, load_concepts_pipeline, training_cohorts
    from medsuite.config import pipeline_path
    from medsuite.data.cards import load_card
    from medsuite.io import write_json
    from medsuite.provenance import new_report

    start = time.perf_counter()
    config, vocabulary = load_concepts_pipeline(pipeline)
    train, test = training_cohorts(config, vocabulary, str(root) if root else None)
    log = (lambda *_: None) if quiet else console.print
    log(f"training on {len(train)} patients (classes {dict(zip(config.classes, map(int, __import__('numpy').bincount(train.labels))))}), testing on {len(test)}")
    model = fit(config, vocabulary, train, log=log)
    output.mkdir(parents=True, exist_ok=True)
    model.save(output / "model.pt", card=config.data.card)
    report = new_report("train concepts", [pipeline_path(pipeline)], config.model_dump(mode="json"))
    report["data_card"] = config.data.card
    report["synthetic"] = load_card(config.data.card).synthetic
    report["test"] = evaluate(model, test)
    report["energy"] = _energy(model, {m: test.images[m][0] for m in model.modalities})  # the first held-out patient
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["outputs"] = {"model": "model.pt"}
    write_json(output / "report.json", report)
    return report


def _first_case_energy(model, cases) -> dict | None:
    """The energy estimate on the first case that loads (a broken case is logged by the batch runner instead)."""
    from medsuite.concepts.data import load_case
    from medsuite.errors import MedsuiteError

    for case in cases:
        try:
            images = load_case(case.path, model.vocabulary, model.config.image_size)[0]
        except (MedsuiteError, OSError, ValueError):
            continue
        return _energy(model, images)
    return None


def _energy(model, images: dict) -> dict:
    """Inference energy of one patient's images (modality -> (phases, H, W)) through the modality encoders.

    Real images, not a blank one: a spiking encoder's accumulates depend on how many neurons the data makes fire.
    """
    import torch

    from medsuite.backbones.energy import estimate_energy

    estimates = [estimate_energy(model.nets[m].encoder, torch.as_tensor(stack, dtype=torch.float32)[:, None]) for m, stack in images.items()]
    total = {key: sum(e[key] for e in estimates) for key in ("macs", "acs", "energy_mj")}
    return total | {"convention": estimates[0]["convention"], "note": estimates[0]["note"], "per": "patient", "images": sum(len(s) for s in images.values())}


def run_demo(out_dir: Path, console: Console) -> None:
    """Six synthetic patients (one with ultrasound only) classified by the shipped model, with one intervention."""
    import shutil
    import tempfile

    from medsuite.concepts import generate_cohort, load_vocabulary, write_cohort

    target = out_dir / "concepts"
    vocabulary = load_vocabulary()
    with tempfile.TemporaryDirectory() as tmp:
        cohort = generate_cohort(vocabulary, 12, seed=4242)
        picked = [int(i) for k in range(3) for i in (cohort.labels == k).nonzero()[0][:2]]
        cases = write_cohort(cohort.subset(__import__("numpy").array(picked)), Path(tmp) / "cases")
        only_us = sorted(cases.iterdir())[-1]
        for modality in ("FA", "ICGA"):
            shutil.rmtree(only_us / modality)
        code = classify_cases([cases], target, quiet=True)
        truth = {p.name: (p / "label.txt").read_text().strip() for p in cases.iterdir()}
    if code:
        raise RuntimeError(f"classify failed on some demo cases (see {target / 'errors.tsv'})")
    report = json.loads((target / "report.json").read_text())
    for name, entry in report["cases"].items():
        console.print(f"{name}: {entry['predicted_class']} (truth {truth[name]}) from {', '.join(entry['modalities_used'])}")
    _demo_intervention(target, next(iter(report["cases"])), console)


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
    from medsuite.commands import train_app

    @concepts_app.command("extract")
    def extract(
        report: Path = typer.Argument(..., help="Report text file."),
        vocabulary: Optional[Path] = typer.Option(None, "--vocabulary", help="Concept vocabulary YAML (default: the shipped concepts_vocabulary.yaml)."),
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

    @concepts_app.command("synth")
    def synth(
        output: Path = typer.Option(..., "-o", "--output", help="Folder for the SYNTHETIC patient folders (FA/, ICGA/, US/, report.txt, label.txt)."),
        patients: int = typer.Option(20, "--patients", min=3, help="How many (split 542:128:80 like the CTI cohort)."),
        size: int = typer.Option(64, "--size", min=16, help="Image side in pixels."),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Write a synthetic cohort in the hospital layout (data card choroid_synthetic)."""
        from medsuite.concepts import generate_cohort, load_vocabulary, write_cohort

        write_cohort(generate_cohort(load_vocabulary(), patients, size=size, seed=seed), output)
        typer.echo(f"wrote {patients} synthetic patients to {output}")

    @app.command("classify")
    def classify(
        cases: list[Path] = typer.Argument(..., help="Case folders (FA/, ICGA/, US/ subfolders, optional report.txt), or folders of them."),
        output: Path = typer.Option(..., "-o", "--output", help="Result folder."),
        model: Path = typer.Option(DEFAULT_MODEL, "--model", help="Concept model (model.pt of `medsuite train concepts`; default: the shipped one, trained on synthetic data)."),
        corrections: list[str] = typer.Option([], "--set", help='Clinician correction, e.g. "US:acoustic hollowing=absent" (present/absent/number); repeatable.'),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (the bottleneck model is small and runs on the CPU)."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch, SimpleITK and OpenMP (default: all available cores)."),
        seed: int = typer.Option(0, "--seed", help="Seed of any random step (the prediction itself is deterministic)."),
        resume: bool = typer.Option(False, "--continue", help="Skip cases whose prediction.json exists."),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Classify choroid tumours (melanoma / hemangioma / metastasis) with concept explanations."""
        from medsuite.runtime import configure_runtime

        configure_runtime(threads, device)  # validates the device; the bottleneck model runs on the CPU
        code = classify_cases(cases, output, model_path=model, corrections=corrections, resume=resume, quiet=quiet, seed=seed)
        if not quiet:
            typer.echo(f"wrote {output}")
        raise typer.Exit(code)

    @train_app.command("concepts")
    def train(
        pipeline: str = typer.Option(DEFAULT_PIPELINE, "--pipeline", help="Concepts pipeline YAML, or a shipped pipeline's name."),
        output: Path = typer.Option(..., "-o", "--output", help="Run folder (model.pt, report.json)."),
        root: Optional[Path] = typer.Option(None, "--root", help="Data folder of a non-synthetic card (e.g. choroid_cti)."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch, SimpleITK and OpenMP (default: all available cores)."),
        quiet: bool = typer.Option(False, "--quiet", help="Print only the summary."),
    ) -> None:
        """Train the sequential and joint concept bottleneck models and the black-box baseline."""
        from medsuite.runtime import configure_runtime

        configure_runtime(threads)
        report = train_concepts(pipeline, output, root, quiet)
        if not quiet:
            t = report["test"]
            console.print(f"held-out macro-F1: CBM {t['f1_cbm_sequential']:.3f}, joint {t.get('f1_cbm_joint', float('nan')):.3f}, black box {t['f1_black_box']:.3f}; concept AUC {t['concept_auc_sequential']:.3f}")
            console.print(f"wrote {output}")

    app.add_typer(concepts_app, name="concepts")
