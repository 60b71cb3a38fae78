"""A segmentation checkpoint as a MONAI bundle (https://docs.monai.io/en/stable/mb_specification.html).

::

    BUNDLE/configs/metadata.json         what the model is: version, changelog, task, labels, input/output,
                                         intended use and limitations (model card), training data card + licence
    BUNDLE/configs/metadata_schema.json  the JSON schema metadata.json is checked against offline
    BUNDLE/configs/inference.json        `python -m monai.bundle run` segments a folder with medsuite's own pipeline
    BUNDLE/models/model.pt               the network's state dict (tensors only: loads with weights_only=True)
    BUNDLE/models/model.ts               TorchScript (traced) for deployment without medsuite
    BUNDLE/docs/README.md                the model card, then how to run the bundle
    BUNDLE/docs/data_license.txt         the training data's licence, as the MONAI model zoo asks

``medsuite segment --model BUNDLE/`` reads the same folder back through :func:`load_bundle`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from monai.networks.utils import convert_to_torchscript
from torch import nn

from medsuite import __version__
from medsuite.checkpoints import LoadedModel, fill, load_model, validated
from medsuite.errors import MedsuiteError
from medsuite.export.catalog import CARD_NAME
from medsuite.export.terminology import term_for
from medsuite.io import atomic_path, sha256_file, write_json
from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.models import make_model

# The schema URL MONAI's model zoo checks bundles against; verify_metadata fetches it only when no local
# copy is given, so medsuite ships its own transcription of the specification's required keys (SCHEMA_FILE).
MONAI_SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json"
SCHEMA_FILE = Path(__file__).with_name("bundle_metadata_schema.json")
TORCHSCRIPT_TOLERANCE = 1e-5


def patch_shape(config: SegmentationConfig) -> tuple[int, ...]:
    """(channels, *spatial) of one network input: a 2D model's slice patch or a 3D model's window."""
    spatial = config.model.roi_size if config.model.spatial_dims == 3 and config.model.roi_size else config.data.image_size
    return (int(config.backbone.in_channels), *map(int, spatial))


def model_labels(payload: dict[str, Any]) -> dict[int, str]:
    """Foreground label value -> name: stored in the checkpoint, else its data card's label_map."""
    from medsuite.segmentation.labels import checkpoint_labels

    return checkpoint_labels(payload)


def is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / "configs" / "metadata.json").is_file()


def network_from_pipeline(pipeline: dict[str, Any]) -> nn.Module:
    """``network_def`` of inference.json: the same factory medsuite trains with."""
    return make_model(SegmentationConfig.model_validate(pipeline))


# ------------------------------------------------------------------------------------------------
# The model card (Markdown beside the checkpoint) and the data card


def card_sections(card: Path) -> dict[str, str]:
    """'## Heading' -> its text; the text before the first heading under 'preamble'."""
    sections, name, lines = {}, "preamble", []
    for line in card.read_text().splitlines():
        if line.startswith("## "):
            sections[name] = "\n".join(lines).strip()
            name, lines = line[3:].strip().lower(), []
        else:
            lines.append(line)
    sections[name] = "\n".join(lines).strip()
    return sections


def _plain(markdown: str) -> str:
    """One paragraph of text from Markdown bullets and emphasis (metadata.json is read by tools, not people)."""
    text = re.sub(r"[*`]", "", markdown)
    return " ".join(line.strip().lstrip("-").strip() for line in text.splitlines() if line.strip())


def _model_card(checkpoint: Path) -> Path | None:
    card = checkpoint.with_name(CARD_NAME)
    return card if card.is_file() else None


def describe(checkpoint: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """What metadata.json says beyond versions: from the model card when there is one, else the data card."""
    from medsuite.data.cards import load_card

    card_id = payload.get("card")
    try:
        data_card = load_card(card_id) if card_id else None
    except MedsuiteError:
        data_card = None
    model_card = _model_card(checkpoint)
    sections = card_sections(model_card) if model_card else {}
    research_line = next((_plain(line) for line in sections.get("preamble", "").splitlines() if line.startswith("**")), "")
    intended = [research_line] if research_line else []
    if data_card is not None:
        intended += [f"training data intended for: {use}" for use in data_card.intended_use]
    limitations = _plain(sections["limitations"]) if "limitations" in sections else " ".join(data_card.known_limitations) if data_card else ""
    return {
        "intended_use": " ".join(intended) or "research use; no model card or data card was found to say more",
        "limitations": limitations or "not stated: no model card beside the checkpoint",
        "model_card": model_card,
        "data_card": {
            "id": card_id,
            "name": data_card.name if data_card else None,
            "licence": data_card.licence.name if data_card else None,
            "licence_url": data_card.licence.url if data_card else None,
            "citation": data_card.licence.citation if data_card else None,
        },
    }


# ------------------------------------------------------------------------------------------------
# Export


def _metadata(checkpoint: Path, config: SegmentationConfig, about: dict[str, Any], foreground: dict[int, str], version: str, changelog: str, weights_sha: str) -> dict[str, Any]:
    labels = {0: "background", **foreground}
    checkpoint_sha = sha256_file(checkpoint)
    size = list(patch_shape(config)[1:])
    data = about["data_card"]
    return {
        "schema": MONAI_SCHEMA_URL,
        "version": version,
        "changelog": {version: changelog},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"medsuite": __version__},
        "optional_packages_version": {"nibabel": _version("nibabel"), "SimpleITK": _version("SimpleITK")},
        "name": f"medsuite {config.model.name} ({checkpoint.stem})",
        "task": "Segmentation of " + ", ".join(term_for(name).label.lower() for name in foreground.values()) + f" ({data['name'] or 'MR'})",
        "description": f"{config.model.name}, {config.model.spatial_dims}D, exported by medsuite {__version__} from {checkpoint.name} (sha256 {checkpoint_sha})",
        "authors": "medsuite",
        "copyright": f"weights derived from {data['name'] or 'the training data'}; see docs/data_license.txt",
        "data_source": f"medsuite data card {data['id']}: {data['name']}",
        "data_type": "nifti",
        "image_classes": "one channel: an MR short-axis slice, intensities scaled per volume by the 0.5-99.5 percentiles to [0, 1]",
        "label_classes": ", ".join(f"{k} {v}" for k, v in labels.items()),
        "pred_classes": f"{len(labels)} channels of logits, one per label; argmax gives the label map",
        "label_names": {str(k): v for k, v in labels.items()},
        "intended_use": about["intended_use"],
        "limitations": about["limitations"],
        "training_data": {"card_id": data["id"], "licence": data["licence"], "licence_url": data["licence_url"], "citation": data["citation"]},
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image", "format": "magnitude", "modality": "MR", "num_channels": 1,
                    "spatial_shape": size, "dtype": "float32", "value_range": [0, 1], "is_patch_data": True,
                    "channel_def": {"0": "image"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image", "format": "segmentation", "num_channels": len(labels),
                    "spatial_shape": size, "dtype": "float32", "value_range": [], "is_patch_data": True,
                    "channel_def": {str(k): v for k, v in labels.items()},
                }
            },
        },
        "medsuite": {"kind": "segmentation", "checkpoint": checkpoint.name, "checkpoint_sha256": checkpoint_sha, "model_sha256": weights_sha, "card": data["id"]},
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _inference_config(config: SegmentationConfig) -> dict[str, Any]:
    return {
        "bundle_root": ".",
        "device": "cpu",
        "dataset_dir": "$@bundle_root + '/inputs'",
        "output_dir": "$@bundle_root + '/eval'",
        "output_formats": ["nifti"],
        "pipeline": config.model_dump(mode="json"),
        "network_def": {"_target_": "medsuite.export.bundle.network_from_pipeline", "pipeline": "@pipeline"},
        "run": [
            {
                "_target_": "medsuite.export.bundle.segment_folder",
                "bundle_root": "@bundle_root", "dataset_dir": "@dataset_dir", "output_dir": "@output_dir",
                "device": "@device", "output_formats": "@output_formats",
            }
        ],
    }


def _readme(metadata: dict[str, Any], model_card: Path | None) -> str:
    card = model_card.read_text() if model_card else f"# {metadata['name']}\n\nNo model card was found beside the checkpoint.\n"
    return card.rstrip() + f"""

## Running this bundle

```
python -m monai.bundle run --config_file configs/inference.json --bundle_root . --dataset_dir IMAGES/ --output_dir OUT/
medsuite segment IMAGES/ -o OUT/ --model .
python -m monai.bundle verify_metadata --meta_file configs/metadata.json --filepath configs/metadata_schema.json
```

IMAGES/ holds NIfTI/MHA/NRRD files or DICOM series folders; OUT/ receives `<case>_seg.nii.gz` and report.json.
`models/model.ts` is the traced network ({metadata['network_data_format']['inputs']['image']['spatial_shape']} patches, one
channel in, {metadata['network_data_format']['outputs']['pred']['num_channels']} logit channels out); the slicing, normalisation,
sliding window and largest-component cleanup around it are medsuite's (`medsuite.segmentation`).
"""


def export_bundle(checkpoint: Path, out_dir: Path, *, version: str | None = None, changelog: str | None = None) -> Path:
    """Write the bundle folder; returns it. Refuses to write into a non-empty folder that is not a bundle."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not is_bundle(out_dir):
        raise MedsuiteError(out_dir, "exists and is not a bundle", "give a new or empty folder with -o")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedsuiteError(out_dir, f"cannot be created ({exc.strerror})", "choose a writable folder with -o") from exc
    if not os.access(out_dir, os.W_OK):
        raise MedsuiteError(out_dir, "is not writable", "choose a writable folder with -o")
    loaded = load_model(checkpoint, "segmentation")
    model, config, payload = loaded.model, loaded.config, loaded.payload
    version = version or __version__
    changelog = changelog or f"exported by medsuite {__version__} from {checkpoint.name}"

    weights = out_dir / "models" / "model.pt"
    with atomic_path(weights) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    example = torch.rand(1, *patch_shape(config), generator=torch.Generator().manual_seed(0))
    with atomic_path(out_dir / "models" / "model.ts") as tmp:
        # traced, not scripted: the network's Python is traced once for its fixed patch size, and MONAI's
        # verify step checks the traced outputs against the eager model's
        convert_to_torchscript(model, tmp, use_trace=True, inputs=[example], verify=True, rtol=0.0, atol=TORCHSCRIPT_TOLERANCE)

    about = describe(checkpoint, payload)
    metadata = _metadata(checkpoint, config, about, model_labels(payload), version, changelog, sha256_file(weights))
    write_json(out_dir / "configs" / "metadata.json", metadata)
    write_json(out_dir / "configs" / "inference.json", _inference_config(config))
    with atomic_path(out_dir / "configs" / "metadata_schema.json") as tmp:
        shutil.copyfile(SCHEMA_FILE, tmp)
    with atomic_path(out_dir / "docs" / "README.md") as tmp:
        tmp.write_text(_readme(metadata, about["model_card"]))
    data = about["data_card"]
    with atomic_path(out_dir / "docs" / "data_license.txt") as tmp:
        tmp.write_text(f"{data['licence'] or 'unknown'}\n{data['licence_url'] or ''}\nCite: {data['citation'] or '-'}\n")
    return out_dir


# ------------------------------------------------------------------------------------------------
# Reading a bundle back


def load_bundle(path: Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """A bundle made ready like ``load_model`` makes a checkpoint: its weights' sha256 checked against
    metadata.json, the pipeline config of inference.json validated, the weights loaded strictly."""
    path = Path(path)
    try:
        metadata = json.loads((path / "configs" / "metadata.json").read_text())
        inference = json.loads((path / "configs" / "inference.json").read_text())
    except (OSError, ValueError) as exc:
        raise MedsuiteError(path, f"is not a readable bundle ({type(exc).__name__})", "export it again with medsuite models export") from exc
    about = metadata.get("medsuite", {})
    if about.get("kind") != "segmentation" or "pipeline" not in inference:
        raise MedsuiteError(path, "is not a medsuite segmentation bundle", "give a bundle written by medsuite models export")
    weights = path / "models" / "model.pt"
    if not weights.is_file() or sha256_file(weights) != about.get("model_sha256"):
        raise MedsuiteError(weights, "is missing or does not match the sha256 in configs/metadata.json", "export the bundle again")
    config = validated(path, SegmentationConfig, inference["pipeline"])
    model = make_model(config)
    fill(weights, model, torch.load(weights, map_location="cpu", weights_only=True))
    return LoadedModel(model=model.to(device).eval(), config=config, payload={"kind": "segmentation", "card": about.get("card"), "labels": {k: v for k, v in metadata.get("label_names", {}).items() if k != "0"}}, path=path)


def segment_folder(bundle_root: str, dataset_dir: str, output_dir: str, *, device: str = "cpu", output_formats: list[str] | None = None) -> int:
    """``run`` of inference.json: medsuite's batch segmentation with this bundle's model."""
    from medsuite.segmentation.infer import segment_batch

    code = segment_batch([Path(dataset_dir)], Path(output_dir), checkpoint=Path(bundle_root), device=device, quiet=True, output_formats=output_formats)
    if code != 0:
        raise MedsuiteError(Path(output_dir) / "errors.tsv", "some cases failed", "read the error lines there")
    return code
