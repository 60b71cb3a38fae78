"""Concept-based choroid tumour classification (MMCBM, arXiv 2403.05606): report concepts, bottleneck, interventions.

Public pieces: ``load_vocabulary``, ``extract_concepts`` (report -> present/absent/uncertain/not mentioned),
``generate_cohort`` (SYNTHETIC multimodal cohort), ``ConceptModel`` / ``fit`` (training), ``predict_case``,
``intervene(prediction, corrections)`` (the viewer's call) and ``plot_explanation``.
Heavy modules (torch) are imported on first use so ``intervene`` stays cheap for the viewer.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from medsuite.concepts.explain import intervene, parse_corrections, plot_explanation
from medsuite.concepts.extract import extract_concepts
from medsuite.concepts.vocabulary import load_vocabulary

_LAZY = {"ConceptModel": "pipeline", "fit": "pipeline", "load_concepts_pipeline": "pipeline", "predict_case": "predict", "generate_cohort": "synthetic", "write_cohort": "synthetic"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"medsuite.concepts.{_LAZY[name]}"), name)
    raise AttributeError(name)


__all__ = ["extract_concepts", "intervene", "load_vocabulary", "parse_corrections", "plot_explanation", *_LAZY]
