"""Batch classification of choroid case folders (``medsuite classify``): prediction.json and explanation.png
per case, report.json with the run's energy estimate, through the shared batch runner."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medsuite.errors import MedsuiteError
from medsuite.sharding import WHOLE, Part

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "concepts" / "model.pt"


def patient_energy(model, images: dict) -> dict[str, Any]:
    """Inference energy of one patient's images (modality -> (phases, H, W)) through the modality encoders.

    Real images, not a blank one: a spiking encoder's accumulates depend on how many neurons the data makes fire.
    """
    import torch

    from medsuite.backbones.energy import combine_estimates, estimate_energy

    device = next(next(iter(model.nets.values())).parameters()).device
    estimates = [estimate_energy(model.nets[m].encoder, torch.as_tensor(stack, dtype=torch.float32, device=device)[:, None]) for m, stack in images.items()]
    return combine_estimates(estimates) | {"per": "patient", "images": sum(len(s) for s in images.values())}


def first_case_energy(model, cases) -> dict[str, Any] | None:
    """The energy estimate on the first case that loads (a broken case is logged by the batch runner instead)."""
    from medsuite.concepts.data import load_case

    for case in cases:
        try:
            images = load_case(case.path, model.vocabulary, model.config.image_size, model.config.intensity)[0]
        except (MedsuiteError, OSError, ValueError):
            continue
        return patient_energy(model, images)
    return None


def find_case_folders(inputs: list[Path], modalities: list[str]):
    """The batch cases: patient folders (FA/, ICGA/, US/ image subfolders), given directly or as a folder of them."""
    from medsuite.batch import find_cases
    from medsuite.concepts.data import is_case_folder

    for item in map(Path, inputs):
        if item.is_dir() and not is_case_folder(item, modalities) and not any(is_case_folder(c, modalities) for c in item.iterdir()):
            raise MedsuiteError(item, f"holds no case ({'/, '.join(modalities)}/ subfolders with images)", "give patient folders with FA/, ICGA/ or US/ image subfolders")
    return find_cases(inputs, case_kind=lambda p: is_case_folder(p, modalities))


def relative_images(images: dict[str, list[str]], folder: Path, root: Path) -> dict[str, list[str]]:
    """Image paths inside ``root`` made relative to ``folder`` (where prediction.json lies, the viewer's base
    for relative names), so a results folder moved as a whole keeps its images; others stay absolute."""
    root, base = root.resolve(), folder.resolve()
    return {m: [os.path.relpath(p, base) if Path(p).resolve().is_relative_to(root) else p for p in paths] for m, paths in images.items()}


def classify_cases(
    inputs: list[Path],
    output: Path,
    *,
    model_path: Path = DEFAULT_MODEL,
    corrections: list[str] | None = None,
    resume: bool = False,
    quiet: bool = False,
    device: str = "cpu",
    part: Part = WHOLE,
    portable_root: Path | None = None,
) -> int:
    """Classify case folders into OUTPUT/<case>/prediction.json (+ explanation.png) and OUTPUT/report.json;
    returns the batch exit code (0 all done, 1 some case failed). ``portable_root``: a folder moved as a
    whole with the results (the demo's), inside which images are named by relative paths."""
    from medsuite.batch import run_batch
    from medsuite.concepts.explain import intervene, parse_corrections, plot_explanation
    from medsuite.concepts.pipeline import ConceptModel
    from medsuite.concepts.predict import predict_case
    from medsuite.io import ensure_output_outside_inputs, write_json

    model = ConceptModel.load(model_path).encoders_to(device)
    wanted = parse_corrections(corrections or [], model.vocabulary.keys)
    cases = find_case_folders(inputs, model.modalities)
    ensure_output_outside_inputs(output, [case.path for case in cases])

    def process(case) -> dict:
        prediction = predict_case(model, case.path, case.name)
        if wanted:
            prediction = intervene(prediction, wanted)
        folder = output / case.name
        if portable_root is not None:
            prediction["images"] = relative_images(prediction["images"], folder, portable_root)
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
    return run_batch(cases, output, process, outputs_of=lambda c: [output / c.name / "prediction.json", output / c.name / "explanation.png"], command="classify", parameters=parameters, resume=resume, quiet=quiet, report_extra={"energy": first_case_energy(model, cases)}, part=part)
