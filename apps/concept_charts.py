"""The concept page's two charts (Altair, shipped with Streamlit): full concept names, every colour in a legend."""

from __future__ import annotations

from typing import Any

import altair as alt

RAISES, LOWERS = "raises P(class)", "lowers P(class)"
PREDICTED, OTHER = "predicted class", "other class"
#: Okabe-Ito blue / vermillion: distinguishable with any colour vision.
SIGN_COLOURS = alt.Scale(domain=[RAISES, LOWERS], range=["#0072B2", "#D55E00"])
CLASS_COLOURS = alt.Scale(domain=[PREDICTED, OTHER], range=["#E69F00", "#7f7f7f"])
LEGEND = alt.Legend(orient="bottom", title=None)


def probabilities(probabilities: dict[str, float], winner: str) -> alt.Chart:
    rows = [{"class": name, "probability": p, "colour": PREDICTED if name == winner else OTHER} for name, p in probabilities.items()]
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            y=alt.Y("class:N", sort=None, axis=alt.Axis(labelLimit=0, title=None)),
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("colour:N", scale=CLASS_COLOURS, legend=LEGEND),
            tooltip=["class:N", alt.Tooltip("probability:Q", format=".3f")],
        )
    )


def contributions(ranked: list[dict[str, Any]], winner: str) -> alt.Chart:
    """Bars of each concept's contribution to the winner's logit, signed colours, names never cut."""
    rows = [
        {"concept": c["name"], "contribution": c["contributions"][winner], "colour": RAISES if c["contributions"][winner] >= 0 else LOWERS}
        for c in ranked
    ]
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            y=alt.Y("concept:N", sort=None, axis=alt.Axis(labelLimit=0, title=None)),
            x=alt.X("contribution:Q", title=f"contribution to the logit of {winner}"),
            color=alt.Color("colour:N", scale=SIGN_COLOURS, legend=LEGEND),
            tooltip=["concept:N", alt.Tooltip("contribution:Q", format="+.3f")],
        )
    )
