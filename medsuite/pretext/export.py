"""Write an exam's pretext targets: per view the image and its heatmaps (NIfTI), lines.json, PNG overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsuite.io import write_json, write_nifti
from medsuite.pretext.exams import VIEW_KINDS, Exam
from medsuite.pretext.geometry import DEFAULT_MIN_ANGLE_DEG, clip_to_image, line_in_pixels
from medsuite.pretext.targets import ViewTargets, describe_lines, exam_targets, long_axis_spread

#: One colour per line kind in the overlays (matplotlib tab10), so a reader matches lines across views.
KIND_COLOURS = {"SAX": "#d62728", "2CH": "#2ca02c", "3CH": "#ff7f0e", "4CH": "#1f77b4"}


def overlay_rgb(image: np.ndarray, targets: ViewTargets, slice_index: int, heat_alpha: float = 0.35) -> np.ndarray:
    """RGB (n0, n1, 3) in [0, 1]: the image in grey with each available heatmap tinted in its kind's colour."""
    from matplotlib.colors import to_rgb

    low, high = np.percentile(image, [1, 99.5])
    grey = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for c, kind in enumerate(VIEW_KINDS):
        if targets.mask[slice_index, c]:
            weight = heat_alpha * targets.heatmaps[slice_index, c][..., None]
            rgb = rgb * (1 - weight) + weight * np.asarray(to_rgb(KIND_COLOURS[kind]))
    return np.clip(rgb, 0.0, 1.0)


def save_overlay(targets: ViewTargets, target: Path, title: str) -> Path:
    """One panel per slice: image, heatmaps, and each line drawn from the exact geometry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = targets.view
    n = len(view.planes)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.2 * cols, 5.0), 3.2 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for s, plane in enumerate(view.planes):
        ax = axes.flat[s]
        ax.imshow(overlay_rgb(view.image[s], targets, s), interpolation="nearest")
        for entry in targets.lines:
            if entry["slice"] != s or entry["line"] is None:
                continue
            ends = clip_to_image(*line_in_pixels(entry["line"], plane), plane.shape)
            if ends is not None:  # imshow puts a0 down the rows and a1 across
                ax.plot(ends[:, 1], ends[:, 0], color=KIND_COLOURS[entry["other_kind"]], lw=1.2, label=entry["other_kind"])
        ax.set_title(f"slice {s}" if n > 1 else view.name, fontsize=8)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=90)
    plt.close(fig)
    return target


def write_exam_targets(exam: Exam, out_dir: Path, sigma_mm: float, min_angle_deg: float = DEFAULT_MIN_ANGLE_DEG, inputs: list[Path] = ()) -> dict:
    """Write every primary view's image, heatmaps, overlay and lines.json; return the figures for report.json."""
    out_dir = Path(out_dir)
    targets = exam_targets(exam, sigma_mm, min_angle_deg)
    views = {}
    for item in targets:
        view = item.view
        affine = view.affine()
        image = np.moveaxis(view.image, 0, -1)  # (n0, n1, S): the view's own voxel grid
        heatmaps = np.moveaxis(item.heatmaps, (0, 1), (2, 3))  # (n0, n1, S, K)
        write_nifti(out_dir / f"{view.name}.nii.gz", image.astype(np.float32), affine, inputs=inputs)
        write_nifti(out_dir / f"{view.name}_heatmaps.nii.gz", heatmaps, affine, inputs=inputs)
        overlay = save_overlay(item, out_dir / f"{view.name}_overlay.png", f"{exam.name}: {view.name} ({view.kind}) with intersecting lines")
        views[view.name] = {
            "kind": view.kind,
            "description": view.meta.get("description", view.source.name),
            "slices": len(view.planes),
            "phases": int(view.frames.shape[0]),
            "image": f"{view.name}.nii.gz",
            "heatmaps": f"{view.name}_heatmaps.nii.gz",
            "heatmap_channels": list(VIEW_KINDS),
            "channels_with_line": [[k for k, m in zip(VIEW_KINDS, row) if m] for row in item.mask],
            "overlay": overlay.name,
            "slice_spacing_mm": round(view.slice_spacing, 4) if len(view.planes) > 1 else None,
            "slice_locations": None if item.locations is None else item.locations.round(4).tolist(),
        }
    write_json(out_dir / "lines.json", {"world": "RAS mm", "pixel_axes": "(a0, a1) = array axes of each view's NIfTI", "lines": describe_lines(targets, exam)})
    spread = long_axis_spread(exam, min_angle_deg)
    return {
        "views": views,
        "ignored_series": [v.name for v in exam.views if v.name not in views],
        "sigma_mm": sigma_mm,
        "min_angle_deg": min_angle_deg,
        "long_axis_meeting_spread_mm": {"per_sax_slice": [round(s, 3) for s in spread], "max": round(max(spread), 3) if spread else None},
        "lines": "lines.json",
    }


def write_targets_folder(exam_path: Path, out_dir: Path, sigma_mm: float, min_angle_deg: float, report_extra: dict | None = None) -> dict:
    """``medsuite pretext targets``: read an exam, write its targets and report.json (plus ``report_extra``,
    figures the caller already has); return the report."""
    from medsuite.io import check_output_dir, ensure_output_outside_inputs
    from medsuite.pretext.exams import read_exam
    from medsuite.provenance import new_report

    check_output_dir(out_dir)
    ensure_output_outside_inputs(out_dir, [exam_path])
    exam = read_exam(exam_path)
    report = new_report("pretext", [exam_path], {"sigma_mm": sigma_mm, "min_angle_deg": min_angle_deg})
    report.update(write_exam_targets(exam, out_dir, sigma_mm, min_angle_deg, inputs=[exam_path]))
    report.update(report_extra or {})
    write_json(Path(out_dir) / "report.json", report)
    return report


def targets_summary(report: dict) -> str:
    """One line: each view with its kind and slices, and how well the long-axis lines meet."""
    spread = report["long_axis_meeting_spread_mm"]["max"]
    views = ", ".join(f"{name} ({v['kind']}, {v['slices']} slice{'s' if v['slices'] > 1 else ''})" for name, v in report["views"].items())
    extra = f"; long-axis lines meet within {spread:.2f} mm in every SAX slice" if spread is not None else ""
    return f"views: {views}{extra}"
