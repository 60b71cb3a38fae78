"""``python -m medsuite.viewer.serve run APP ...``: Streamlit's own command line, with the modules the
pages need imported first.

Streamlit runs page scripts in its server process, so what is imported here is already in memory
when the first browser tab opens: the first page renders without paying ~3 s of imports (nibabel,
SimpleITK, SciPy, Matplotlib) behind loading skeletons.
"""

from __future__ import annotations

import importlib
import sys

WARM_MODULES = (
    "medsuite.io",
    "medsuite.viewer.clinical",
    "medsuite.viewer.compare",
    "medsuite.viewer.correction",
    "medsuite.viewer.deformation",
    "medsuite.viewer.overlay",
    "medsuite.viewer.planes",
    "medsuite.viewer.results",
    "medsuite.viewer.reviews",
    "medsuite.viewer.slicing",
    "medsuite.viewer.uploads",
    "medsuite.viewer.views",
    "medsuite.viewer.windowing",
    "medsuite.viewer.longaxis",
    "matplotlib.figure",  # the concept page's charts
    "medsuite.concepts",  # the concept page's intervention (imports torch: the slowest of all)
)


def main() -> None:
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional part missing here only means its page pays the import
            pass
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
