"""Cardiac segmentation: neU-Net and the MONAI U-Net family behind one factory; train, evaluate, infer.

Stages, each its own module: ``config`` (pipeline YAML schema), ``wavelets`` + ``neunet`` (the model
of Yang et al. 2023), ``models`` (the factory), ``data`` (card -> 2D slices), ``train``, ``evaluate``
and ``infer`` (the batch ``segment`` command's library side).
"""

LABELS = {1: "RV", 2: "Myo", 3: "LV"}
