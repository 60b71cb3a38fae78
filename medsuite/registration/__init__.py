"""GIRNet pathological registration (Liu & Gu et al., MICCAI 2023, arXiv 2310.11040), in 3D.

Modules: ``config`` (pipeline YAML schema), ``spatial`` (warping, velocity integration, Jacobians,
world-space composition), ``prealign`` (SimpleITK affine), ``losses``, ``networks`` (mask generator,
inpainter, symmetric velocity net), ``instance`` (instance optimisation on one pair), ``train``
(the two-stage trainer), ``inference`` (``register_pair``: the ``medsuite register`` command's work).
"""
