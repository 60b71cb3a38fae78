"""The shared MONAI data layer, used by every pipeline's training and inference.

- ``cards``: the DataCard schema and the shipped cards (package data);
- ``datasets``: card -> records (``discover_records`` per layout kind), patient-level splits, MONAI datasets;
- ``transforms``: the load chains and the array primitives (``normalise_intensity`` with ``IntensityRule``,
  the anti-aliased ``resize``, ``read_h5_volume``);
- ``labels``: label volumes in ml; ``samples``: embedded sample data; ``export``: MSD dataset.json.
"""
