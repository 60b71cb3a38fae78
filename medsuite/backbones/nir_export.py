"""NIR export of a spiking model, for neuromorphic hardware and simulators (Neuromorphic Intermediate Representation).

What is exported is the spiking encoder (kind ``snn``, 2D): per stage conv -> folded batch norm -> LIF, the
residual conv -> folded batch norm, and the membrane shortcut as a second edge into the stage's second LIF
(NIR sums the currents of all edges into a node, so ``norm2(conv2(s1)) + s1`` needs no extra node). Each
stage's spikes leave the graph through its own output node, ``stage{i}``, which is what the U-Net decoder reads.
For the spiking neU-Net (``model.decoder: spiking``) each strided stage also gets its wavelet input: the Haar
bands through the 1x1 ``proj`` are one linear map of the image, exported as a conv ``stage{i}.bands`` (kernel
and stride the stage's cumulative downsampling) from the input into ``stage{i}.lif1``.

The spike-driven decoder stays on the host: it upsamples spikes by nearest neighbour, and NIR 1.0 has no
upsampling or transposed-convolution primitive to express that with (only dense ``Affine`` maps, whose weight
matrix would hold every pixel pair). :func:`round_trip` runs the re-imported graph and feeds its spikes to the
native decoder, so the check covers the whole network's output.

Conventions (snntorch's own NIR export and import use them): a discrete LIF ``v <- beta * v + I`` is the NIR
``LIF`` with ``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``, ``dt = 1e-4`` s, one time step per
graph call, the image presented unchanged at every step (direct encoding). NIR's LIF resets to ``v_reset``
(here 0): a model trained with ``reset: zero`` round-trips exactly; one trained with ``reset: subtract`` is
exported with a reset to zero, which changes its spikes, and :func:`round_trip` measures by how much.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medsuite.errors import MedsuiteError

DT = 1e-4  # seconds per time step: the value snntorch's NIR importer assumes


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _folded_conv(conv: nn.Conv2d, norm: nn.Module, input_hw: tuple[int, int], name: str) -> Any:
    """The conv with an inference batch norm folded into its weights and bias (exact in eval mode)."""
    import nir

    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    if isinstance(norm, nn.BatchNorm2d):
        scale = norm.weight.detach().double() / torch.sqrt(norm.running_var.double() + norm.eps)
        weight = weight * scale[:, None, None, None]
        bias = (bias - norm.running_mean.double()) * scale + norm.bias.detach().double()
    elif not isinstance(norm, nn.Identity):
        raise MedsuiteError(name, f"{type(norm).__name__} has no NIR form (it depends on each sample's statistics)", "train the spiking model with backbone norm: batch")
    return nir.Conv2d(
        input_shape=input_hw,
        weight=weight.float().numpy(),
        stride=_pair(conv.stride),
        padding=_pair(conv.padding),
        dilation=_pair(conv.dilation),
        groups=conv.groups,
        bias=bias.float().numpy(),
    )


def _conv_output_hw(conv: nn.Conv2d, hw: tuple[int, int]) -> tuple[int, int]:
    k, s, p, d = (_pair(v) for v in (conv.kernel_size, conv.stride, conv.padding, conv.dilation))
    return tuple((hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))  # type: ignore[return-value]


def _lif_node(lif: nn.Module, shape: tuple[int, int, int]) -> Any:
    import nir

    cell = lif.cell
    beta = float(cell.beta)
    tau = DT / (1.0 - beta)
    full = lambda value: np.full(shape, value, dtype=np.float32)  # noqa: E731 - NIR wants one value per neuron
    return nir.LIF(tau=full(tau), r=full(tau / DT), v_leak=full(0.0), v_threshold=full(float(cell.threshold)), v_reset=full(0.0))


def encoder_to_nir(encoder: nn.Module, input_hw: tuple[int, int], inputs: dict[int, nn.Conv2d] | None = None) -> Any:
    """A NIR graph of a 2D ``snn`` encoder for images of ``input_hw`` pixels (one channel per ``in_channels``).

    ``inputs``: per stage index a conv of the image whose output is an extra input current into that stage's
    first LIF (the spiking neU-Net's wavelet bands, ``NeUNet.band_convs``): node ``stage{i}.bands``, an edge from
    the input and one into ``stage{i}.lif1`` (NIR sums the currents of all edges into a node)."""
    import nir

    spec = encoder.spec
    if spec.kind != "snn" or spec.spatial_dims != 2:
        raise MedsuiteError("model", f"NIR export takes a 2D spiking encoder, not kind {spec.kind!r} in {spec.spatial_dims}D", "export a model trained with backbone kind: snn, spatial_dims: 2")
    if getattr(encoder, "readout", "rate") != "rate":
        raise MedsuiteError("model", "the encoder hands membrane potentials to the decoder; NIR nodes output spikes", "export a model trained with readout: rate")
    if len(set(encoder.stage_steps)) != 1:
        raise MedsuiteError("model", f"stages run different numbers of time steps {encoder.stage_steps}", "set one time_steps for every stage before export")
    hw = tuple(input_hw)
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([spec.in_channels, *hw])})}
    edges: list[tuple[str, str]] = []
    previous = "input"
    for i, stage in enumerate(encoder.stages):
        out_hw = _conv_output_hw(stage.conv1, hw)
        shape = (stage.conv1.out_channels, *out_hw)
        names = {part: f"stage{i}.{part}" for part in ("conv1", "lif1", "conv2", "lif2")}
        nodes[names["conv1"]] = _folded_conv(stage.conv1, stage.norm1, hw, names["conv1"])
        nodes[names["lif1"]] = _lif_node(stage.lif1, shape)
        nodes[names["conv2"]] = _folded_conv(stage.conv2, stage.norm2, out_hw, names["conv2"])
        nodes[names["lif2"]] = _lif_node(stage.lif2, shape)
        nodes[f"stage{i}"] = nir.Output(output_type={"output": np.array(shape)})
        if i in (inputs or {}):
            bands = f"stage{i}.bands"
            if _conv_output_hw(inputs[i], tuple(input_hw)) != out_hw:
                raise MedsuiteError("model", f"the wavelet bands of stage {i} do not tile a {input_hw[0]}x{input_hw[1]} image", "export for an image size that the product of the strides divides")
            nodes[bands] = _folded_conv(inputs[i], nn.Identity(), tuple(input_hw), bands)
            edges += [("input", bands), (bands, names["lif1"])]
        edges += [
            (previous, names["conv1"]), (names["conv1"], names["lif1"]), (names["lif1"], names["conv2"]),
            (names["conv2"], names["lif2"]), (names["lif1"], names["lif2"]),  # the membrane shortcut
            (names["lif2"], f"stage{i}"),
        ]
        previous, hw = names["lif2"], out_hw
    reset = encoder.stages[0].lif1.cell.reset_mechanism
    metadata = {"producer": "medsuite", "time_steps": int(encoder.stage_steps[0]), "dt": DT, "encoding": "direct", "trained_reset": reset}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(graph: Any, target: str | Path) -> Path:
    """Write the graph as NIR's HDF5 file, atomically."""
    import nir

    from medsuite.io import atomic_path

    target = Path(target)
    with atomic_path(target) as tmp:
        nir.write(str(tmp), graph)
    return target


class _ZeroResetLIF(nn.Module):
    """NIR's LIF as nirtorch runs it: ``forward(current, state) -> (spikes, membrane)``, resetting to zero."""

    def __init__(self, beta: float, threshold: float):
        super().__init__()
        import snntorch

        self.cell = snntorch.Leaky(beta=beta, threshold=threshold, reset_mechanism="zero", reset_delay=False)

    def forward(self, current: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cell(current, torch.zeros_like(current) if state is None else state)


def _torch_node_map() -> dict:
    """NIR node -> torch module, by NIR's semantics: a conv, and a LIF resetting to zero (snntorch ``Leaky``)."""
    import nir

    def conv(node: Any) -> nn.Module:
        weight = torch.from_numpy(np.asarray(node.weight))
        module = nn.Conv2d(weight.shape[1] * node.groups, weight.shape[0], tuple(weight.shape[2:]), stride=tuple(node.stride), padding=tuple(node.padding), dilation=tuple(node.dilation), groups=node.groups)
        module.weight.data, module.bias.data = weight.clone(), torch.from_numpy(np.asarray(node.bias)).clone()
        return module

    def lif(node: Any) -> nn.Module:
        tau, threshold = (np.unique(np.asarray(v)) for v in (node.tau, node.v_threshold))
        if tau.size != 1 or threshold.size != 1 or not np.allclose(node.r, tau[0] / DT) or not np.allclose(node.v_leak, 0.0):
            raise MedsuiteError("NIR graph", "a LIF node has per-neuron or leaky-to-nonzero parameters medsuite does not import", "import it with a NIR tool for that hardware")
        return _ZeroResetLIF(beta=float(1.0 - DT / tau[0]), threshold=float(threshold[0]))

    return {nir.Conv2d: conv, nir.LIF: lif}


def _single_output_graph(graph: Any, output: str) -> Any:
    """The part of ``graph`` that feeds ``output``, with that one output node (nirtorch 2.6 does not return
    when asked to build a graph with several output nodes, so each stage's spikes are read from its own part)."""
    import nir

    keep, frontier = {output}, [output]
    while frontier:
        node = frontier.pop()
        for source, target in graph.edges:
            if target == node and source not in keep:
                keep.add(source)
                frontier.append(source)
    nodes = {name: node for name, node in graph.nodes.items() if name in keep}
    edges = [(s, t) for s, t in graph.edges if s in keep and t in keep]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata)


def run_nir_encoder(graph: Any, image: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """Re-import ``graph`` (NIR semantics, through nirtorch's graph interpreter) and run it for ``steps`` time
    steps on ``image`` (B, C, H, W). Returns each stage's spikes ``(T, B, C, h, w)``, as the native decoder reads them."""
    import nirtorch

    outputs = sorted((name for name in graph.nodes if name.startswith("stage") and "." not in name), key=lambda n: int(n[5:]))
    stages = []
    for output in outputs:
        module = nirtorch.nir_to_torch(_single_output_graph(graph, output), _torch_node_map())
        spikes, state = [], None
        with torch.no_grad():
            for _ in range(steps):
                result, state = module(image, state)
                spikes.append(result)
        stages.append(torch.stack(spikes))
    return stages


def _spiking_neunet(model: nn.Module) -> bool:
    """A neU-Net with the spiking decoder: its wavelet bands are input currents of the encoder's stages."""
    return bool(getattr(model, "spiking", False)) and hasattr(model, "band_convs")


def host_layers(model: nn.Module) -> tuple[list[str], str]:
    """The model's parts outside the exported graph (they run on the host), and why NIR cannot take them."""
    if _spiking_neunet(model) or hasattr(getattr(model, "decoder", None), "forward_steps"):
        return ["decoder.blocks", "decoder.head"], "NIR 1.0 has no upsampling node for the nearest-neighbour upsampling of spikes and the head's pixel shuffle"
    parts = [name for name, _ in model.named_children() if name != "encoder"]
    return parts, "an analog decoder is not a spiking network"


def spiking_encoder_of(model: nn.Module) -> nn.Module:
    """The spiking encoder inside a model (a SpikingUNet or a neU-Net with an snn backbone), or a usage error."""
    encoder = getattr(model, "encoder", model)
    if getattr(getattr(encoder, "spec", None), "kind", None) != "snn":
        raise MedsuiteError("model", "has no spiking encoder to export", "export a model trained with backbone kind: snn")
    return encoder


def round_trip(model: nn.Module, image: torch.Tensor, graph: Any) -> dict[str, Any]:
    """Re-import ``graph`` and compare it with the native ``model`` on ``image`` (B, C, H, W): spike counts per
    stage and, when the model has the spike-driven decoder, the largest difference of its output logits."""
    encoder = spiking_encoder_of(model)
    steps = int(graph.metadata["time_steps"])
    model.eval()
    with torch.no_grad():
        native = model.encode_steps(image) if _spiking_neunet(model) else encoder.forward_steps(image)
        imported = run_nir_encoder(graph, image, steps)
        report: dict[str, Any] = {
            "time_steps": steps,
            "spikes_native": [int(s.sum().item()) for s in native],
            "spikes_nir": [int(s.sum().item()) for s in imported],
            "spikes_differing": [int((a != b).sum().item()) for a, b in zip(native, imported)],
        }
        decoder = getattr(model, "decoder", None)
        if hasattr(decoder, "forward_steps"):
            difference = decoder.forward_steps(native).mean(0) - decoder.forward_steps(imported).mean(0)
            report["max_abs_logit_difference"] = float(difference.abs().max().item())
    report["exact"] = not any(report["spikes_differing"]) and report.get("max_abs_logit_difference", 0.0) == 0.0
    return report


def export_nir(model: nn.Module, example: torch.Tensor, target: str | Path) -> dict[str, Any]:
    """Write ``model``'s spiking encoder as a NIR file for images shaped like ``example`` (1, C, H, W), read the
    file back and check it against the native model on ``example``; returns the round-trip report."""
    inputs = model.band_convs() if _spiking_neunet(model) else None
    graph = encoder_to_nir(spiking_encoder_of(model), tuple(example.shape[-2:]), inputs)
    host, why = host_layers(model)
    graph.metadata |= {"wavelet_inputs": sorted(inputs or {}), "host_layers": host}
    target = write_nir(graph, target)
    import nir

    report = round_trip(model, example, nir.read(str(target)))
    return {"file": str(target), "nodes": len(graph.nodes), "edges": len(graph.edges), "dt_s": DT, "trained_reset": graph.metadata["trained_reset"], "host_layers": host, "host_layers_why": why, **report}


def export_checkpoint_nir(checkpoint: str | Path, out_dir: str | Path, *, version: str | None = None, changelog: str | None = None, allow_host_layers: bool = False) -> Path:
    """``medsuite models export CKPT --format nir``: a segmentation checkpoint with a spiking encoder ->
    ``OUT/encoder.nir`` and ``OUT/nir_report.json`` (the round trip on a generated short-axis slice of the
    model's patch size). ``version``/``changelog`` are recorded in the report.

    NIR cannot express the decoder (``host_layers``): unless ``allow_host_layers``, a usage error (exit 2)
    names the layers left to the host before anything is written, so a script does not take the graph for the
    whole network."""
    import numpy as np

    from medsuite.checkpoints import load_model
    from medsuite.data.transforms import resize
    from medsuite.io import write_json
    from medsuite.segmentation.synthetic import synthetic_short_axis

    loaded = load_model(checkpoint, "segmentation")
    spiking_encoder_of(loaded.model)  # a model without one is refused first
    host, why = host_layers(loaded.model)
    if host and not allow_host_layers:
        graph = "the spiking encoder and its wavelet inputs" if _spiking_neunet(loaded.model) else "the spiking encoder"
        raise MedsuiteError(checkpoint, f"NIR can hold only {graph}: {why} ({', '.join(host)} would run on the host)", "add --allow-host-layers to export that partial graph (encoder.nir, with its round trip in nir_report.json)")
    size = tuple(loaded.config.data.image_size)
    volume, _ = synthetic_short_axis()
    middle = volume.array[..., volume.array.shape[-1] // 2].astype(np.float32)
    middle = (middle - middle.min()) / max(float(np.ptp(middle)), 1e-6)  # the [0, 1] range the model trained on
    example = torch.as_tensor(resize(middle, size))[None, None]
    out_dir = Path(out_dir)
    report = export_nir(loaded.model, example, out_dir / "encoder.nir")
    report |= {"checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": loaded.payload["sha256"], "version": version, "changelog": changelog, "example": f"generated short-axis slice, {size[0]}x{size[1]}"}
    write_json(out_dir / "nir_report.json", report)
    return out_dir
