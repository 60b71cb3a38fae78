"""Inference energy estimate for any backbone: MACs for analog-fed layers, synaptic ACs for spike-fed ones.

The operations are counted once and priced under several conventions (``CONVENTIONS``), side by side, each
with its source. None is a measurement of this model on a chip: they are *estimates* for comparing backbones.

- ``45nm`` (the SNN literature's default; Horowitz, ISSCC 2014, 45 nm CMOS): a 32-bit float multiply-accumulate
  costs 4.6 pJ, an accumulate 0.9 pJ. Only the synaptic layers (conv, transposed conv, linear) are counted;
  normalisation, neuron updates and memory traffic are left out. ``energy_mj`` is this convention.
- ``darwinwafer``: each synaptic operation of a spike-fed layer at the 4.9 pJ/SOP that DarwinWafer measured
  for its whole wafer system (Zhu et al., arXiv 2509.16213, 333 MHz, 0.8 V); analog-fed layers (a spiking
  network's first, direct-encoding conv, or every layer of a CNN) stay at the 45 nm MAC price, since such a
  chip does not run them.
- ``45nm+memory``: the 45 nm operations plus memory traffic, the comparison that benchmarks of quantised ANNs
  against SNNs argue for: one 32-bit SRAM access (5 pJ: half of Horowitz's 10 pJ for a 64-bit read from an
  8 KB SRAM) per weight fetched by each operation (no reuse), per input read (each dense activation, or each
  spike event), per output written, and two per spiking neuron update (its membrane read and written).

A layer is *spike-fed* when its module says so (attribute ``energy_input = "spike"``, set by the spiking
backbones on every layer behind a neuron) or, unmarked, when its input has non-zero entries that all share one
value (binary spikes, or spikes scaled by a single threshold as after ANN-to-SNN conversion). Then each input
spike costs one accumulate per synapse it reaches (its fan-out), counted exactly, borders included, by
convolving the spike mask with an all-ones kernel. An all-zero input to an unmarked layer is charged dense MACs:
a silent spiking layer costs nothing, but a blank image through a CNN still costs every multiply, and only the
mark tells the two apart. ``energy_input = "analog"`` forces MACs.
Hooks fire on every call, so a spiking network that runs its layers over T time steps is charged for all T.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PJ_PER_MAC = 4.6
PJ_PER_AC = 0.9
PJ_PER_SOP_DARWINWAFER = 4.9
PJ_PER_SRAM_ACCESS = 5.0
CONVENTION = "45nm: 4.6 pJ/MAC, 0.9 pJ/AC"
NOTE = "estimate, not a measurement: synaptic operations of conv/linear layers (and, for 45nm+memory, memory accesses) priced under each convention of 'conventions'; energy_mj is 45nm"
CONVENTIONS = {
    "45nm": "4.6 pJ/MAC, 0.9 pJ/AC; synaptic operations only (Horowitz, ISSCC 2014)",
    "darwinwafer": "4.9 pJ/SOP for spike-fed layers, measured system figure of DarwinWafer (arXiv 2509.16213); analog-fed layers at 4.6 pJ/MAC",
    "45nm+memory": "45nm operations + 5 pJ per 32-bit SRAM access: a weight per operation, inputs read, outputs written, 2 per neuron update (Horowitz, ISSCC 2014)",
}

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
SYNAPTIC_LAYERS = (*_CONV, *_CONV_T, nn.Linear)


def is_spike_tensor(x: torch.Tensor) -> bool:
    """True when ``x`` has non-zero entries and they all share one value (all-zero is ambiguous: False)."""
    nonzero = x[x != 0]
    return nonzero.numel() > 0 and bool((nonzero == nonzero.reshape(-1)[0]).all())


def _kernel_volume(module: nn.Module) -> int:
    return int(torch.tensor(module.kernel_size).prod())


def dense_macs(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Multiply-accumulates of a dense (analog) pass, the usual thop/ptflops convention."""
    if isinstance(module, nn.Linear):
        return y.numel() * module.in_features
    if isinstance(module, _CONV):
        return y.numel() * (module.in_channels // module.groups) * _kernel_volume(module)
    # transposed conv: every input element scatters to out_channels/groups x kernel positions
    return x.numel() * (module.out_channels // module.groups) * _kernel_volume(module)


def synaptic_acs(module: nn.Module, x: torch.Tensor) -> int:
    """Accumulates triggered by the spikes in ``x``: sum over spikes of the synapses each one reaches."""
    mask = (x != 0).to(torch.float64)
    if isinstance(module, nn.Linear):
        return int(mask.sum().item()) * module.out_features
    if isinstance(module, _CONV_T):
        return int(mask.sum().item()) * (module.out_channels // module.groups) * _kernel_volume(module)
    # conv: active inputs inside each output's receptive field, summed over outputs and output channels
    dims = mask.dim() - 2
    ones = torch.ones((module.out_channels, module.in_channels // module.groups, *module.kernel_size), dtype=torch.float64)
    padding = module.padding
    if module.padding_mode != "zeros":
        # reflect/replicate/circular padding copies spikes into the border, so pad the mask the same way
        mask, padding = F.pad(mask, module._reversed_padding_repeated_twice, mode=module.padding_mode), 0
    elif padding == "valid":
        padding = 0
    elif padding == "same":
        pads = []
        for k, d in zip(reversed(module.kernel_size), reversed(module.dilation)):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        mask, padding = F.pad(mask, pads), 0
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    counts = conv(mask, ones, stride=module.stride, padding=padding, dilation=module.dilation, groups=module.groups)
    return int(round(counts.sum().item()))


def _input_kind(module: nn.Module, x: torch.Tensor) -> str:
    forced = getattr(module, "energy_input", None)
    if forced in ("spike", "analog"):
        return forced
    return "spike" if is_spike_tensor(x) else "analog"


def estimate_energy(model: nn.Module, example: torch.Tensor) -> dict[str, Any]:
    """Run ``model`` once on ``example`` (eval mode, no grad) and count its synaptic operations per layer.

    Returns ``{"macs", "acs", "memory_accesses", "neuron_updates", "energy_mj", "energy_mj_by_convention",
    "conventions", "per_layer", "convention", "note"}`` for the whole example (all of its batch and, for
    spiking models, all time steps); ``energy_mj`` is the 45 nm figure. ``per_layer`` lists every synaptic
    layer called: name, type, calls, macs, acs, memory accesses, spike_input, and the input firing rate of
    spike-fed calls. Neuron layers declare themselves with ``energy_neurons = True`` (the snn backbone's LIF).
    """
    layers: dict[str, dict[str, Any]] = {}
    neuron_updates = 0
    handles = []

    def hook(name: str):
        def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0].detach()
            row = layers.setdefault(name, {"name": name, "type": type(module).__name__, "calls": 0, "macs": 0, "acs": 0, "memory_accesses": 0, "spike_input": False, "spikes": 0, "inputs": 0})
            row["calls"] += 1
            if _input_kind(module, x) == "spike":
                acs, events = synaptic_acs(module, x), int((x != 0).sum().item())
                row["acs"] += acs
                row["spike_input"] = True
                row["spikes"] += events
                row["inputs"] += x.numel()
                row["memory_accesses"] += acs + events + output.numel()  # weights fetched, events read, outputs written
            else:
                macs = dense_macs(module, x, output)
                row["macs"] += macs
                row["memory_accesses"] += macs + x.numel() + output.numel()

        return count

    def count_neurons(module: nn.Module, inputs: tuple, output: Any) -> None:
        nonlocal neuron_updates
        neuron_updates += inputs[0].numel()  # one update per neuron per time step

    for name, module in model.named_modules():
        if isinstance(module, SYNAPTIC_LAYERS):
            handles.append(module.register_forward_hook(hook(name or type(module).__name__)))
        elif getattr(module, "energy_neurons", False):
            handles.append(module.register_forward_hook(count_neurons))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.train(training)

    per_layer = []
    for row in layers.values():
        spikes, inputs = row.pop("spikes"), row.pop("inputs")
        row["input_rate"] = spikes / inputs if inputs else None
        row["energy_mj"] = (row["macs"] * PJ_PER_MAC + row["acs"] * PJ_PER_AC) * 1e-9
        per_layer.append(row)
    counts = {key: sum(r[key] for r in per_layer) for key in ("macs", "acs", "memory_accesses")}
    return finish_estimate(counts | {"neuron_updates": neuron_updates}) | {"per_layer": per_layer}


def finish_estimate(counts: dict[str, int]) -> dict[str, Any]:
    """Price operation counts (``macs``, ``acs``, ``memory_accesses``, ``neuron_updates``) under every convention.

    Also used to add up the estimates of several networks (the concept model's per-modality encoders)."""
    macs, acs = counts["macs"], counts["acs"]
    memory = counts["memory_accesses"] + 2 * counts["neuron_updates"]
    by_convention = {
        "45nm": (macs * PJ_PER_MAC + acs * PJ_PER_AC) * 1e-9,
        "darwinwafer": (macs * PJ_PER_MAC + acs * PJ_PER_SOP_DARWINWAFER) * 1e-9,
        "45nm+memory": (macs * PJ_PER_MAC + acs * PJ_PER_AC + memory * PJ_PER_SRAM_ACCESS) * 1e-9,
    }
    return {
        **{key: counts[key] for key in ("macs", "acs", "memory_accesses", "neuron_updates")},
        "energy_mj": by_convention["45nm"],
        "energy_mj_by_convention": by_convention,
        "conventions": CONVENTIONS,
        "convention": CONVENTION,
        "note": NOTE,
    }


def combine_estimates(estimates: list[dict[str, Any]]) -> dict[str, Any]:
    """One estimate for several networks run on one case: counts added, then priced."""
    keys = ("macs", "acs", "memory_accesses", "neuron_updates")
    return finish_estimate({key: sum(e[key] for e in estimates) for key in keys})
