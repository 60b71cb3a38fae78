"""A synthetic multimodal choroid-tumour cohort. SYNTHETIC: no patient data, drawn by rule.

Each patient gets a class (melanoma : hemangioma : metastasis = 542 : 128 : 80, the CTI cohort's
imbalance), a set of findings sampled from the vocabulary's per-class priors, images in which each
finding is drawn visibly (US: lesion shape, reflectivity, hollowing...; FA/ICGA: three phases with
early hyperfluorescence, leakage, vessels, washout...), and a free-text report written from the same
ground truth in varied phrasing with negations, uncertainty, synonyms and misspellings.
Deterministic for a seed; about 1 ms per patient.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from medsuite.concepts.cohort import Cohort
from medsuite.concepts.extract import ABSENT, NOT_MENTIONED, PRESENT, UNCERTAIN
from medsuite.concepts.vocabulary import Vocabulary

CLASSES = ("melanoma", "hemangioma", "metastasis")
CTI_COUNTS = (542, 128, 80)  # patients per class in the paper's cohort


def sample_findings(vocabulary: Vocabulary, label: str, rng: np.random.Generator) -> np.ndarray:
    """Independent findings by prior; one member per exclusive group (or none if priors sum below 1)."""
    truth = np.zeros(len(vocabulary.concepts), dtype=np.uint8)
    groups: dict[str, list[int]] = {}
    for i, concept in enumerate(vocabulary.concepts):
        if concept.group:
            groups.setdefault(concept.group, []).append(i)
        elif rng.random() < concept.prevalence.get(label, 0.0):
            truth[i] = 1
    for members in groups.values():
        p = np.array([vocabulary.concepts[i].prevalence.get(label, 0.0) for i in members])
        choice = rng.choice(len(members) + 1, p=np.append(p, max(0.0, 1 - p.sum())) / max(1.0, p.sum()))
        if choice < len(members):
            truth[members[choice]] = 1
    return truth


# ---------------------------------------------------------------- drawing
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:size, 0:size].astype(np.float32)


def draw_us(findings: set[str], size: int, rng: np.random.Generator) -> np.ndarray:
    """A B-scan: bright eye wall near the bottom, the lesion rising from it, speckle everywhere."""
    y, x = _grid(size)
    s = size / 64
    wall = 0.75 * size + rng.uniform(-2, 2) * s
    cx = size / 2 + rng.uniform(-6, 6) * s
    image = 0.08 + 0.7 * np.exp(-((y - wall) ** 2) / (2 * (1.5 * s) ** 2))
    height, width = rng.uniform(14, 20) * s, rng.uniform(10, 14) * s
    if "flat" in findings:
        height, width = rng.uniform(4, 6) * s, rng.uniform(16, 20) * s
    top = wall - y
    if "irregular" in findings:
        top = top + 2.5 * s * np.sin(x / (2.0 * s) + rng.uniform(0, 6))
    lesion = (top >= 0) & ((top / height) ** 2 + ((x - cx) / width) ** 2 <= 1)
    if "mushroom" in findings:  # narrow stalk through Bruch's membrane, wide cap above it
        stalk = (top >= 0) & (top < 0.45 * height) & (np.abs(x - cx) < 0.35 * width)
        cap = ((top - 0.7 * height) / (0.3 * height)) ** 2 + ((x - cx) / width) ** 2 <= 1
        lesion = stalk | cap
    level = {"low_reflectivity": 0.22, "high_reflectivity": 0.9, "medium_reflectivity": 0.55}
    brightness = next((v for k, v in level.items() if k in findings), 0.55) + rng.uniform(-0.05, 0.05)
    texture = brightness * np.ones_like(image)
    if "hollowing" in findings:  # echoes fade towards the base of the tumour
        texture = texture * np.clip(0.25 + top / (0.8 * height), 0.25, 1.0)
    image = np.where(lesion, texture, image)
    if "excavation" in findings:  # the choroid dips below the lesion
        image -= 0.6 * np.exp(-(((y - wall - 3 * s) / (2.5 * s)) ** 2 + ((x - cx) / (5 * s)) ** 2))
    if "detachment" in findings:  # a thin bright membrane arching over and beyond the lesion
        arc = wall - (height + 5 * s) * np.clip(1 - ((x - cx) / (1.9 * width)) ** 2, 0, None)
        image += 0.6 * np.exp(-((y - arc) ** 2) / (2 * (0.7 * s) ** 2)) * (np.abs(x - cx) < 1.9 * width)
    speckle = rng.rayleigh(0.12, image.shape).astype(np.float32)
    return np.clip(image * (0.7 + speckle), 0, 1)


def _blob(y: np.ndarray, x: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, float, float, float]:
    cy, cx = size / 2 + rng.uniform(-8, 8, 2) * size / 64
    r = rng.uniform(10, 15) * size / 64
    angle = np.arctan2(y - cy, x - cx)
    radius = r * (1 + 0.12 * np.sin(3 * angle + rng.uniform(0, 6)))
    return (np.hypot(y - cy, x - cx) <= radius).astype(np.float32), cy, cx, r


def _lines(size: int, mask: np.ndarray, count: int, rng: np.random.Generator, curvy: bool) -> np.ndarray:
    y, x = _grid(size)
    out = np.zeros((size, size), np.float32)
    for _ in range(count):
        a = rng.uniform(0, np.pi)
        offset = rng.uniform(-6, 6) * size / 64
        d = (x - size / 2) * np.sin(a) - (y - size / 2) * np.cos(a) - offset
        if curvy:
            d = d + 2.5 * np.sin(((x - size / 2) * np.cos(a) + (y - size / 2) * np.sin(a)) / 3.0)
        out = np.maximum(out, np.exp(-(d**2) / 1.2))
    return out * mask


def draw_angiography(findings: set[str], phases: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Early, mid, late frames of a fundus angiogram with the lesion's fluorescence pattern."""
    y, x = _grid(size)
    mask, cy, cx, r = _blob(y, x, size, rng)
    background = 0.35 + 0.25 * _lines(size, np.ones_like(mask), 3, rng, curvy=True)  # retinal vessels
    frames = []
    for phase in range(phases):
        early, late = phase == 0, phase == phases - 1
        f = background.copy()
        if "blocked" in findings:
            f -= 0.25 * mask
        if "early_hyper" in findings and early:
            f += 0.45 * mask
        if "double_circulation" in findings and not late:
            f += 0.5 * _lines(size, mask, 3, rng, curvy=False)
        if "vessels" in findings and not late:
            f += 0.5 * _lines(size, mask, 4, rng, curvy=True)
        if "lacy" in findings and not early:
            f += 0.35 * mask * (np.sin(x / 1.3) * np.sin(y / 1.3) > 0.2)
        if "mottled" in findings and not early:
            f += 0.4 * mask * (ndimage.gaussian_filter(rng.standard_normal((size, size)), 1.5) > 0.15)
        if "pinpoint" in findings and not early:
            dots = np.zeros((size, size), np.float32)
            for _ in range(8):
                py, px = cy + rng.uniform(-r, r) * 0.7, cx + rng.uniform(-r, r) * 0.7
                dots = np.maximum(dots, np.exp(-((y - py) ** 2 + (x - px) ** 2) / 1.0))
            f += 0.6 * dots
        if "washout" in findings:
            if late:  # dye leaves the tumour: dark centre, bright rim
                ring = np.exp(-((np.hypot(y - cy, x - cx) - r) ** 2) / 3.0)
                f += -0.35 * mask + 0.4 * ring
            elif not early:
                f += 0.4 * mask
        if "late_leakage" in findings and late:
            f += 0.45 * ndimage.gaussian_filter(ndimage.binary_dilation(mask > 0, iterations=int(4 * size / 64)).astype(np.float32), 2.0)
        if "late_staining" in findings and late:
            f += 0.35 * mask
        frames.append(f + rng.normal(0, 0.05, f.shape))
    return np.clip(np.stack(frames), 0, 1).astype(np.float32)


# ---------------------------------------------------------------- reports
_PRESENT = ["{c}.", "There is {c}.", "{C} is noted.", "The lesion shows {c}.", "{C} present.", "Evidence of {c}.", "{C} is seen.", "Findings consistent with {c}.", "Marked {c}."]
_ABSENT = ["No {c}.", "Without {c}.", "{C} is absent.", "{C} not seen.", "Negative for {c}.", "No evidence of {c}.", "No definite {c}.", "{C} was not observed."]
_UNCERTAIN = ["Possible {c}.", "{C} cannot be excluded.", "Suspicious for {c}.", "Questionable {c}.", "Cannot exclude {c}.", "{C} is not excluded.", "Probable {c}?"]
_HEADERS = {"US": ["B-scan ultrasound:", "B-scan:", "Ultrasound:"], "FA": ["FA:", "Fluorescein angiography:", "FFA:"], "ICGA": ["ICGA:", "ICG:", "Indocyanine green angiography:"]}


def _misspell(phrase: str, rng: np.random.Generator) -> str:
    words = phrase.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha()]
    if not long:
        return phrase
    i = int(rng.choice(long))
    w = words[i]
    j = int(rng.integers(1, len(w) - 2))
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :] if rng.random() < 0.5 else w[:j] + w[j + 1 :]  # swap or drop
    return " ".join(words)


def write_report(vocabulary: Vocabulary, truth: np.ndarray, rng: np.random.Generator, *, p_mention=0.92, p_negate=0.35, p_uncertain=0.12, p_typo=0.08) -> tuple[str, dict[str, str]]:
    """A report from the ground truth; returns the text and what it states for each concept."""
    mentions: dict[str, str] = {}
    lines = []
    for modality in vocabulary.modalities:
        sentences, negated = [], []
        for i in vocabulary.of_modality(modality):
            concept = vocabulary.concepts[i]
            if truth[i] and rng.random() < p_mention:
                status = UNCERTAIN if rng.random() < p_uncertain else PRESENT
            elif not truth[i] and rng.random() < p_negate:
                status = ABSENT
            else:
                status = NOT_MENTIONED
            mentions[concept.key] = status
            if status == NOT_MENTIONED:
                continue
            phrase = str(rng.choice(concept.phrases))
            if rng.random() < p_typo:
                phrase = _misspell(phrase, rng)
            if status == ABSENT and rng.random() < 0.4:  # radiologists list negatives: "No X or Y."
                negated.append(phrase)
                continue
            template = str(rng.choice({PRESENT: _PRESENT, ABSENT: _ABSENT, UNCERTAIN: _UNCERTAIN}[status]))
            sentences.append(template.format(c=phrase, C=phrase[0].upper() + phrase[1:]))
        if negated:
            sentences.append("No " + (", ".join(negated[:-1]) + " or " if len(negated) > 1 else "") + negated[-1] + ".")
        rng.shuffle(sentences)
        lines.append(f"{rng.choice(_HEADERS.get(modality, [modality + ':']))} " + " ".join(sentences or ["Unremarkable."]))
    return "\n".join(lines) + "\n", mentions


# ---------------------------------------------------------------- cohort
def class_counts(n: int) -> list[int]:
    """n patients split in the CTI ratio 542:128:80 (every class at least 2)."""
    share = np.array(CTI_COUNTS) / sum(CTI_COUNTS)
    counts = np.maximum(2, np.round(share * n).astype(int))
    counts[0] = max(2, n - counts[1:].sum())
    return counts.tolist()


def generate_cohort(vocabulary: Vocabulary, n: int, *, size: int = 64, seed: int = 0, classes: tuple[str, ...] = CLASSES) -> Cohort:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(class_counts(n))])
    labels = labels[rng.permutation(len(labels))]
    images: dict[str, list[np.ndarray]] = {m: [] for m in vocabulary.modalities}
    truths, mentions, reports = [], [], []
    for label in labels:
        truth = sample_findings(vocabulary, classes[label], rng)
        for modality, phases in vocabulary.modalities.items():
            drawn = {vocabulary.concepts[i].draw for i in vocabulary.of_modality(modality) if truth[i]}
            if phases == 1:
                images[modality].append(draw_us(drawn, size, rng)[None])
            else:
                images[modality].append(draw_angiography(drawn, phases, size, rng))
        report, stated = write_report(vocabulary, truth, rng)
        truths.append(truth)
        mentions.append(stated)
        reports.append(report)
    ids = [f"synth_{seed}_{i:04d}" for i in range(len(labels))]
    return Cohort({m: np.stack(v).astype(np.float32) for m, v in images.items()}, labels, np.stack(truths), mentions, reports, classes, ids)


def write_cohort(cohort: Cohort, root: str | Path) -> Path:
    """The hospital layout (data card kind choroid_folders): root/<patient>/{FA,ICGA,US}/*.png, report.txt, label.txt."""
    from PIL import Image

    root = Path(root)
    for i, patient in enumerate(cohort.ids):
        folder = root / patient
        for modality, stack in cohort.images.items():
            (folder / modality).mkdir(parents=True, exist_ok=True)
            for phase, frame in enumerate(stack[i]):
                Image.fromarray(np.round(frame * 255).astype(np.uint8)).save(folder / modality / f"phase{phase + 1}.png")
        (folder / "report.txt").write_text(cohort.reports[i])
        (folder / "label.txt").write_text(cohort.classes[cohort.labels[i]] + "\n")
    return root
