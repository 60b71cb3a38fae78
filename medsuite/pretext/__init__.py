"""Anatomy-plane pretext tasks for cardiac MR (Zhang et al., Medical Image Analysis 2024, 103151).

- ``geometry``: planes from DICOM or NIfTI, intersecting lines, lines in pixel grids, slice locations.
- ``exams``: DICOM exam folders and NIfTI sets -> views (SAX / 2CH / 3CH / 4CH) with per-slice planes.
- ``targets``: line heatmaps (task 1, relative orientation) and slice locations (task 2, relative location).
- ``export``: NIfTI targets, lines.json and PNG overlays of an exam; ``write_targets_folder`` (``pretext targets``).
- ``model``: the multitask U-Net (encoder from ``make_encoder``); ``pretrain``: card sources read through the data
  layer, loss, loop, and ``pretrain_to_folder`` (``medsuite pretrain``).
- ``synthetic``: a phantom exam with exactly known geometry (demo, tests).
"""
