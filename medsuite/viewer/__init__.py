"""Pure rendering and bookkeeping for the review station (numpy in, RGB uint8 out).

Nothing here imports Streamlit: the app in ``apps/`` only lays these results out, so every picture a
clinician sees is computed by a function that is unit-tested on arrays with known numbers.
"""
