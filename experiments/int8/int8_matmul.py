"""Which int8 matmul is fast on this CPU: fp32 against torchao's per-token w8a8 and torch's fbgemm dynamic int8.

`searchr3.quantize_int8` (until 2026-12-05 also `dtype="int8"`) runs torchao's `Int8DynamicActivationInt8WeightConfig`, whose matmul is
`torch._int_mm`. On a CPU without int8 dot-product instructions (VNNI or AMX) that kernel is a slow
fallback; torch's older fbgemm dynamic int8 (`quantize_dynamic`, activations per tensor) has AVX2
kernels. This times one linear layer of each shape SmolLM2-135M has, at a batch of 8 documents of
256 tokens, in each kind, in one run.

    python experiments/int8/int8_matmul.py --threads 2     # writes experiments/int8/int8_matmul.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import torch

from searchr3.precision import _cpu_flags, cpu_name, cpu_supports_bf16, cpu_supports_int8_dot

SHAPES = {"q_proj / o_proj": (576, 576), "k_proj / v_proj": (576, 192), "gate_proj / up_proj": (576, 1536),
          "down_proj": (1536, 576)}


def seconds(layer: torch.nn.Module, x: torch.Tensor, repeat: int) -> float:
    with torch.inference_mode():
        layer(x)
        start = time.perf_counter()
        for _ in range(repeat):
            layer(x)
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8 * 256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default=str(Path(__file__).with_name("int8_matmul.json")))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    torch.manual_seed(0)
    flags = sorted(f for f in _cpu_flags() if "avx" in f or "amx" in f or "vnni" in f)
    report = {"cpu": cpu_name(), "flags": flags, "int8_dot": cpu_supports_int8_dot(),
              "native_bf16": cpu_supports_bf16(), "threads": torch.get_num_threads(), "tokens": args.tokens,
              "torch": torch.__version__, "rows": []}
    for name, (k, n) in SHAPES.items():
        fp32 = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False))
        x = torch.randn(args.tokens, k)
        torchao = copy.deepcopy(fp32)
        quantize_(torchao, Int8DynamicActivationInt8WeightConfig())
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated; it is the fbgemm path here
            warnings.simplefilter("ignore")
            fbgemm = torch.ao.quantization.quantize_dynamic(copy.deepcopy(fp32), {torch.nn.Linear}, dtype=torch.qint8)
        t = {kind: seconds(layer, x, args.repeat) for kind, layer in
             (("fp32", fp32), ("torchao_w8a8", torchao), ("fbgemm_dynamic", fbgemm))}
        row = {"layer": name, "shape": f"{args.tokens}x{k}x{n}", **{f"{kind}_ms": 1e3 * s for kind, s in t.items()},
               "torchao_speedup": t["fp32"] / t["torchao_w8a8"], "fbgemm_speedup": t["fp32"] / t["fbgemm_dynamic"]}
        report["rows"].append(row)
        print(json.dumps(row))
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
