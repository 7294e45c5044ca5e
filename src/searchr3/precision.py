"""Which dtype to run in: bf16 only where the hardware makes it fast, else fp32."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU's model name (benchmarks state what they ran on: these machines vary)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in info.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmul (avx512_bf16 or AMX); without it bf16 is far slower."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_supports_int8_dot() -> bool:
    """True when the CPU has int8 dot-product instructions (VNNI or AMX). Without them torch's int8
    matmul, which int8 inference runs on, falls back to a kernel many times slower than fp32."""
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


INT8_NOT_OFFERED = (
    "dtype='int8' is not offered: on the bundled test sets int8 moved nDCG@10 by up to 0.011 against fp32 "
    "(significantly, p 0.03; the bar is 0.005) and its vectors fell to cosine 0.989 (the bar is 0.99; "
    "docs/performance.md). To use it anyway, quantise an fp32 model on the CPU: "
    "model = SearchR3.from_pretrained(name, dtype='fp32', device='cpu'); searchr3.quantize_int8(model)")


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """Map "auto" / "bf16" / "fp32" (or a torch dtype) to the dtype to load the weights in.

    "int8" is refused with the way to opt in: it missed the quality bar a dtype must meet.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "int8":
        raise ValueError(INT8_NOT_OFFERED)
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype == "auto":
        fast_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16())
        return torch.bfloat16 if fast_bf16 else torch.float32
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bf16 or fp32")
    return table[dtype]
