"""Cardiac segmentation: neU-Net and the MONAI U-Net family behind one factory; train, evaluate, infer.

Stages, each its own module: ``config`` (pipeline YAML schema), ``labels`` (class names from the card's
label_map), ``wavelets`` + ``neunet`` (the model of Yang et al. 2023), ``models`` (the factory and checkpoint
loading), ``data`` (card -> 2D slices), ``train``, ``predict`` (whole-volume prediction), ``metrics`` (Dice,
HD95), ``evaluate`` (a checkpoint on a card split) and ``infer`` (the batch ``segment`` command's library side).
"""
