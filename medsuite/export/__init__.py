"""Outputs that leave medsuite: masks as DICOM-SEG and RTSTRUCT beside the NIfTI, models as MONAI bundles.

``masks.write_mask_outputs`` is the one call the inference commands make where they write a mask;
``formats`` holds the light-weight option values the command line parses (no highdicom import there).
"""
