"""Affine pre-alignment with SimpleITK (Mattes mutual information, on a downsampled pair).

Learned deformable registration assumes roughly aligned inputs; scans a user brings can be rotated,
shifted and scaled differently in world space, so a rigid then affine stage runs first.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medsuite.io import Volume, to_sitk


def _shrunk(vol: Volume, target_mm: float) -> sitk.Image:
    image = sitk.Cast(to_sitk(vol, np.asarray(vol.array, dtype=np.float32)), sitk.sitkFloat32)
    factors = [max(1, int(round(target_mm / s))) for s in image.GetSpacing()]
    return sitk.Shrink(image, factors) if any(f > 1 for f in factors) else image


def _register(fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform, iterations: int, seed: int) -> sitk.Transform:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # SimpleITK reads a sampling seed of 0 as "seed from the wall clock": offset it so every seed is fixed.
    method.SetMetricSamplingPercentage(0.25, seed + 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SetInitialTransform(initial, inPlace=False)
    # ITK sums the metric over threads in the order they finish: with more than one thread the result varies
    # run to run. The working grids are coarse, so one thread costs little and gives the same bytes every time.
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        return method.Execute(fixed, moving)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def affine_prealign(fixed: Volume, moving: Volume, *, iterations: int = 60, working_mm: float = 4.0, seed: int = 0) -> sitk.AffineTransform:
    """A fixed->moving affine (LPS physical points), rigid first then affine, on ~``working_mm`` grids.

    Runs on one ITK thread: the multi-threaded Mattes metric sums in a run-dependent order (measured: the
    affine differed from run to run on 2 threads, never on 1; the method's own thread setting does not reach
    the metric, so the global default is held at 1 meanwhile). On ~4 mm grids one thread costs little."""
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        return _rigid_then_affine(fixed, moving, iterations, working_mm, seed)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _rigid_then_affine(fixed: Volume, moving: Volume, iterations: int, working_mm: float, seed: int) -> sitk.AffineTransform:
    fixed_image, moving_image = _shrunk(fixed, working_mm), _shrunk(moving, working_mm)
    initial = sitk.CenteredTransformInitializer(fixed_image, moving_image, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)
    rigid = _register(fixed_image, moving_image, initial, iterations, seed)
    rigid = sitk.CompositeTransform(rigid).GetNthTransform(0).Downcast() if rigid.GetName() == "CompositeTransform" else rigid.Downcast()
    start = sitk.AffineTransform(3)
    start.SetCenter(rigid.GetCenter())
    start.SetMatrix(rigid.GetMatrix())
    start.SetTranslation(rigid.GetTranslation())
    result = _register(fixed_image, moving_image, start, iterations, seed)
    result = sitk.CompositeTransform(result).GetNthTransform(0).Downcast() if result.GetName() == "CompositeTransform" else result.Downcast()
    return sitk.AffineTransform(result)
