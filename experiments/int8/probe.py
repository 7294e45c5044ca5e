"""Where does int8 lose the vectors? Quantise groups of linear layers and compare document vectors
with fp32 (cosine) on SciFact abstracts.

Two kinds of int8, so weight error and activation error can be told apart:
- `weights`: each linear layer's weight rounded to int8 per output channel and back (activations
  stay fp32): the error int8 *weights* alone cause;
- `dynamic`: torch's dynamic int8 (fbgemm: int8 weights per channel, activations quantised per
  tensor at run time, int8 matmul; deprecated in torch);
- `torchao-w8a8`: torchao's dynamic int8 (weights per channel, activations per token).

    python experiments/int8/probe.py --docs 64     # writes experiments/int8/probe.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from torch import nn

from searchr3 import DEFAULT_MODEL, SearchR3, read_corpus
from searchr3.data import resolve_dataset
from searchr3.prompts import document_text

GROUPS = {
    "all but lm_head": lambda name: "lm_head" not in name,
    "attention": lambda name: any(p in name for p in ("q_proj", "k_proj", "v_proj", "o_proj")),
    "mlp": lambda name: any(p in name for p in ("gate_proj", "up_proj", "down_proj")),
    "down_proj": lambda name: "down_proj" in name,
    "all but down_proj and lm_head": lambda name: "down_proj" not in name and "lm_head" not in name,
}


def linear_names(model: nn.Module, keep) -> set[str]:
    return {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and keep(n)}


def round_weights(model: nn.Module, names: set[str]) -> None:
    """int8 per-output-channel symmetric rounding of the weights, in place (dequantised back)."""
    with torch.no_grad():
        for n, m in model.named_modules():
            if n in names:
                w = m.weight
                scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
                w.copy_((w / scale).round().clamp(-127, 127) * scale)


def dynamic(model: nn.Module, names: set[str]) -> nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(model, {n: per_channel_dynamic_qconfig for n in names}, dtype=torch.qint8)


def torchao_w8a8(model: nn.Module, names: set[str]) -> nn.Module:
    """torchao's int8 dynamic quantisation: activations per token, weights per channel."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=lambda m, fqn: fqn in names)
    return model


def torchao_smoothquant(model: nn.Module, names: set[str], calibrate, alpha: float = 0.5) -> nn.Module:
    """SmoothQuant (torchao): per-channel factors move activation outliers into the weights,
    calibrated on texts other than the evaluated ones, then torchao's int8 dynamic quantisation."""
    from torchao.prototype.smoothquant import SmoothQuantConfig
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    keep = lambda m, fqn: fqn in names  # noqa: E731
    base = Int8DynamicActivationInt8WeightConfig()
    quantize_(model, SmoothQuantConfig(base, step="prepare", alpha=alpha, use_running_absmax=True), filter_fn=keep)
    calibrate(model)
    quantize_(model, SmoothQuantConfig(base, step="convert", alpha=alpha, use_running_absmax=True), filter_fn=None)
    return model


def activation_outliers(model: SearchR3, texts: list[str]) -> dict:
    """Largest |input| to each kind of linear layer over the texts, against its median: per-tensor
    activation scales are set by the largest value, so a few huge channels flatten the rest."""
    stats: dict[str, list[float]] = {}
    hooks = []
    for n, m in model.model.named_modules():
        if isinstance(m, nn.Linear):
            kind = n.rsplit(".", 1)[-1]

            def hook(_m, inputs, _out, kind=kind):
                x = inputs[0].detach().abs().float()
                stats.setdefault(kind, []).append(float(x.max() / x.median().clamp(min=1e-12)))
            hooks.append(m.register_forward_hook(hook))
    model.embed_documents(texts[:8], batch_size=8, show_progress=False)
    for h in hooks:
        h.remove()
    return {k: {"max_over_median_p50": float(np.median(v)), "max_over_median_max": float(max(v))}
            for k, v in stats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--output", default=str(Path(__file__).with_name("probe.json")))
    parser.add_argument("--kinds", nargs="+", default=["weights", "dynamic", "torchao-w8a8"],
                        help="also smoothquant-ALPHA (torchao SmoothQuant at that alpha)")
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    args = parser.parse_args()
    docs = read_corpus(resolve_dataset("scifact"))[: args.docs]
    texts = [document_text(d.title, d.text) for d in docs]
    base = SearchR3.from_pretrained(args.model, dtype="fp32")
    reference = base.embed_documents(texts, batch_size=8, show_progress=False)
    report = {"model": base.name, "docs": len(texts), "max_length": base.config.max_length,
              "outliers": activation_outliers(base, texts), "groups": {}}
    print(json.dumps(report["outliers"], indent=1), flush=True)
    fp32_model = base.model
    calibration = [document_text(d.title, d.text) for d in read_corpus(resolve_dataset("scifact"))[1000:1032]]

    def calibrate(module: nn.Module) -> None:
        base.attach(module)
        base.prefix_cache.enabled = False
        base.embed_documents(calibration, batch_size=8, show_progress=False)

    for group in args.groups:
        keep = GROUPS[group]
        names = linear_names(fp32_model, keep)
        row = {"layers": len(names)}
        for how in args.kinds:
            quantised = copy.deepcopy(fp32_model)
            if how == "weights":
                round_weights(quantised, names)
            elif how == "dynamic":
                quantised = dynamic(quantised, names)
            elif how == "torchao-w8a8":
                quantised = torchao_w8a8(quantised, names)
            else:
                alpha = float(how.rsplit("-", 1)[1])
                quantised = torchao_smoothquant(quantised, names, calibrate, alpha)
            base.attach(quantised)
            base.prefix_cache.enabled = False  # the cache is keyed by parameters a quantised module no longer has
            start = time.perf_counter()
            vectors = base.embed_documents(texts, batch_size=8, show_progress=False)
            cos = np.sum(vectors * reference, axis=1)
            row[how] = {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                        "seconds": time.perf_counter() - start}
        report["groups"][group] = row
        print(group, json.dumps(row), flush=True)
        base.attach(fp32_model)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
