"""The shared MONAI data layer: data cards, transforms, datasets, embedded samples."""
