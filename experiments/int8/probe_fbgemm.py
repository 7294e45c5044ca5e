"""Can int8 be fast on a CPU without VNNI? SmoothQuant in front of torch's fbgemm dynamic int8.

torchao's per-token int8 matmul has no fast kernel without int8 dot-product instructions
(int8_matmul.py); fbgemm's dynamic int8 does (AVX2), but quantises activations with one scale per
tensor, which put document vectors at cosine 0.61 unsmoothed (probe.json). This divides each
linear layer's input channels by SmoothQuant factors (calibrated on the shipped texts, as the
product does) and multiplies them into the weights, then runs the weights in fbgemm int8 per
output channel. Encoding one document per call keeps the per-tensor scale per document, so a
vector does not depend on its batch-mates; batches of 8 are measured too.

    python experiments/int8/probe_fbgemm.py --docs 16    # writes experiments/int8/probe_fbgemm.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from torch import nn

from searchr3 import DEFAULT_MODEL, EmbedConfig, SearchR3, read_corpus
from searchr3.data import resolve_dataset
from searchr3.precision import cpu_name, cpu_supports_int8_dot
from searchr3.prompts import document_text
from searchr3.quantization import calibration_texts


class Smoothed(nn.Module):
    """x / s, then the linear layer whose weight columns were multiplied by s (the same product)."""

    def __init__(self, linear: nn.Linear, s: torch.Tensor):
        super().__init__()
        self.register_buffer("inv_s", 1.0 / s)
        self.linear = copy.deepcopy(linear)
        with torch.no_grad():
            self.linear.weight.mul_(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inv_s)


def input_absmax(model: SearchR3, documents: list[str], queries: list[str]) -> dict[str, torch.Tensor]:
    """Per input channel, the largest |activation| each linear layer (but lm_head) sees."""
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name, m in model.model.named_modules():
        if isinstance(m, nn.Linear) and "lm_head" not in name:
            def hook(_m, inputs, _out, name=name):
                x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0)
                seen[name] = torch.maximum(seen[name], x) if name in seen else x
            hooks.append(m.register_forward_hook(hook))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.embed_documents(documents, show_progress=False)
        model.embed_queries(queries, show_progress=False)
    for h in hooks:
        h.remove()
    return seen


def smooth_then_fbgemm(model: SearchR3, absmax: dict[str, torch.Tensor], alpha: float | None) -> SearchR3:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    out = copy.deepcopy(model)
    names = []
    for name, x_max in absmax.items():
        parent_name, _, child = name.rpartition(".")
        parent = out.model.get_submodule(parent_name)
        linear = getattr(parent, child)
        if alpha is None:
            names.append(name)
            continue
        w_max = linear.weight.detach().abs().amax(dim=0)
        s = (x_max.clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
        setattr(parent, child, Smoothed(linear, s))
        names.append(f"{name}.linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out.attach(quantize_dynamic(out.model, {n: per_channel_dynamic_qconfig for n in names}, dtype=torch.qint8))
    return out


def vectors(model: SearchR3, texts: list[str], batch: int) -> tuple[np.ndarray, float]:
    model.config.batch_size = batch
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = model.embed_documents(texts, show_progress=False)
    return v, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.65, 0.8])
    parser.add_argument("--output", default=str(Path(__file__).with_name("probe_fbgemm.json")))
    args = parser.parse_args()
    corpus = read_corpus(resolve_dataset("scifact"))[: args.docs]
    texts = [document_text(d.title, d.text) for d in corpus]
    model = SearchR3.from_pretrained(DEFAULT_MODEL, dtype="fp32", config=EmbedConfig(max_length=256))
    model.model.eval()
    ref, ref_s = vectors(model, texts, 8)
    documents, queries = calibration_texts()
    absmax = input_absmax(model, documents, queries)
    report = {"cpu": cpu_name(), "int8_dot": cpu_supports_int8_dot(), "docs": len(texts), "fp32_seconds_b8": ref_s,
              "rows": []}
    print(f"fp32 batch 8: {ref_s:.1f} s")
    for alpha in [None, *args.alphas]:
        q = smooth_then_fbgemm(model, absmax, alpha)
        for batch in (1, 8):
            v, s = vectors(q, texts, batch)
            cos = (v * ref).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(ref, axis=1)
            row = {"smoothquant_alpha": alpha, "batch": batch, "cos_min": float(cos.min()),
                   "cos_mean": float(cos.mean()), "seconds": s, "x_fp32_b8": ref_s / s}
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
