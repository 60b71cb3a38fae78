"""Concept bottleneck benchmark on a held-out SYNTHETIC choroid cohort (issue 6).

    python benchmarks/concepts.py                          # the shipped model, 1000 new patients
    python benchmarks/concepts.py --model RUN/model.pt --patients 500 --seed 2024

Prints: report concept extraction precision/recall; concept AUC from images (sequential CAVs, joint head);
class macro-F1 of the CBM (sequential, joint) vs the black box on the same encoders; F1 after setting each
case's 3 most uncertain concepts (score nearest the midpoint of its typical present/absent scores) to the truth; F1 with each single modality missing.
Targets: CBM within 0.03 F1 of the black box; intervention raises F1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from medsuite.concepts.evaluate import evaluate
from medsuite.concepts.infer import DEFAULT_MODEL
from medsuite.concepts.pipeline import ConceptModel
from medsuite.concepts.synthetic import generate_cohort
from medsuite.runtime import configure_runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a concept model (default: the shipped one)")
    parser.add_argument("--patients", type=int, default=1000, help="300 leaves ~30 metastases: F1 moves 0.015 per case")
    parser.add_argument("--seed", type=int, default=2024, help="cohort seed; differs from the training seeds (0 and 1000)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: the figures in docs/benchmarks.md)")
    args = parser.parse_args()
    configure_runtime(args.threads, "cpu")
    start = time.perf_counter()
    model = ConceptModel.load(args.model)
    cohort = generate_cohort(model.vocabulary, args.patients, size=model.config.image_size, seed=args.seed, classes=tuple(model.config.classes))
    r = evaluate(model, cohort)
    ex = r["extraction"]
    print(f"SYNTHETIC held-out cohort: {r['patients']} patients {dict(zip(model.config.classes, r['class_counts']))}, seed {args.seed}, model {args.model}")
    print(f"report extraction     precision {ex['precision']:.3f}  recall {ex['recall']:.3f}  ({ex['statements']} statements)")
    print(f"concept AUC (images)  sequential CAVs {r['concept_auc_sequential']:.3f}  joint head {r.get('concept_auc_joint', float('nan')):.3f}")
    print()
    print(f"{'macro-F1':<34}{'CBM seq':>9}{'CBM joint':>11}{'black box':>11}{'CBM-BB':>9}")
    print(f"{'all modalities':<34}{r['f1_cbm_sequential']:>9.3f}{r.get('f1_cbm_joint', float('nan')):>11.3f}{r['f1_black_box']:>11.3f}{r['f1_cbm_sequential'] - r['f1_black_box']:>+9.3f}")
    for modality, f in r["f1_without_modality"].items():
        print(f"{'without ' + modality:<34}{f['cbm']:>9.3f}{'':>11}{f['black_box']:>11.3f}{f['cbm'] - f['black_box']:>+9.3f}")
    gain = r["f1_cbm_after_intervening_3_uncertain"] - r["f1_cbm_sequential"]
    print(f"{'CBM after fixing 3 uncertain':<34}{r['f1_cbm_after_intervening_3_uncertain']:>9.3f}   (gain {gain:+.3f})")
    print()
    within = r["f1_black_box"] - r["f1_cbm_sequential"] <= 0.03
    print(f"target CBM within 0.03 of black box: {'met' if within else 'NOT met'}; intervention raises F1: {'met' if gain > 0 else 'NOT met'}  ({time.perf_counter() - start:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
