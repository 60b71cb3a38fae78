"""The concept page's two charts, drawn server-side by Matplotlib as PNGs: full concept names, every
colour in a legend.

Pictures rather than Vega-Lite charts: the browser then loads no chart library (~0.8 MB of JavaScript)
before the page's first paint, and a chart is drawn once per prediction (cached by the page).
``matplotlib.figure.Figure`` is used directly: pyplot's global state is not safe across Streamlit's
session threads.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

RAISES, LOWERS = "raises P(class)", "lowers P(class)"
PREDICTED, OTHER = "predicted class", "other class"
#: Okabe-Ito blue / vermillion / orange: distinguishable with any colour vision.
SIGN_COLOURS = {RAISES: "#0072B2", LOWERS: "#D55E00"}
CLASS_COLOURS = {PREDICTED: "#E69F00", OTHER: "#7f7f7f"}
_TEXT, _BACKGROUND = "#fafafa", "#0e1117"  # the viewer's dark theme


def probabilities(probabilities: dict[str, float], winner: str) -> bytes:
    names = list(probabilities)
    colours = [CLASS_COLOURS[PREDICTED if name == winner else OTHER] for name in names]
    return _bars(names, [probabilities[n] for n in names], colours, "probability", CLASS_COLOURS, xlim=(0.0, 1.0), value_format="{:.3f}")


def contributions(ranked: list[dict[str, Any]], winner: str) -> bytes:
    """Bars of each concept's contribution to the winner's logit, signed colours, names never cut."""
    values = [float(c["contributions"][winner]) for c in ranked]
    colours = [SIGN_COLOURS[RAISES if v >= 0 else LOWERS] for v in values]
    return _bars([c["name"] for c in ranked], values, colours, f"contribution to the logit of {winner}", SIGN_COLOURS, value_format="{:+.2f}")


def _bars(names: list[str], values: list[float], colours: list[str], xlabel: str, legend: dict[str, str], *, xlim: tuple[float, float] | None = None, value_format: str) -> bytes:
    """Horizontal bars, first name on top, the value written at each bar's end; PNG bytes."""
    figure = Figure(figsize=(6.4, 0.26 * len(names) + 1.3), dpi=100, facecolor=_BACKGROUND)
    axes = figure.add_subplot(facecolor=_BACKGROUND)
    rows = np.arange(len(names))
    axes.barh(rows, values, color=colours, height=0.7)
    axes.set_yticks(rows, names, fontsize=8, color=_TEXT)
    axes.invert_yaxis()
    axes.axvline(0, color=_TEXT, linewidth=0.6)
    if xlim:
        axes.set_xlim(*xlim)
    else:
        reach = max((abs(v) for v in values), default=1.0) or 1.0
        axes.set_xlim(-1.25 * reach, 1.25 * reach)  # room for the value labels on both sides
    for row, value in zip(rows, values):
        axes.text(value, row, " " + value_format.format(value) + " ", va="center", ha="left" if value >= 0 else "right", fontsize=7, color=_TEXT)
    axes.set_xlabel(xlabel, fontsize=8, color=_TEXT)
    axes.tick_params(axis="x", colors=_TEXT, labelsize=7)
    for spine in axes.spines.values():
        spine.set_color("#555555")
    axes.legend(handles=[Patch(color=c, label=name) for name, c in legend.items()], loc="upper center", bbox_to_anchor=(0.5, -0.12 - 2.0 / (len(names) + 4)), ncol=len(legend), fontsize=8, frameon=False, labelcolor=_TEXT)
    out = io.BytesIO()
    figure.savefig(out, format="png", bbox_inches="tight", facecolor=_BACKGROUND)  # tight: long names are never cut
    return out.getvalue()
