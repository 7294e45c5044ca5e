"""int8 inference on CPU: SmoothQuant, then int8 weights and per-token int8 activations (torchao).

Why this recipe (experiments/int8/): int8 *weights* alone keep document vectors at cosine 0.998
to fp32; the loss is in the activations. A few input channels of the MLP's down projection carry
values hundreds of times the median, so torch's per-tensor dynamic int8 flattens everything else
(cosine 0.61-0.75). Per-token scales recover most of it (0.988); SmoothQuant at alpha 0.5 first
moves half of each channel's range into the weights, which int8 per output channel holds well
(0.996). The smoothing factors are calibrated when the model is loaded, on texts the base model
wrote itself (resources/int8_calibration.json), never on an evaluation corpus. lm_head stays in
fp32: it is tied to the input embeddings and only reasoning's decoding reads it.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ._extras import require
from .precision import cpu_supports_int8_dot

if TYPE_CHECKING:
    from .modeling import SearchR3

log = logging.getLogger(__name__)


class _ImportNoise(logging.Filter):
    """Drops two warnings torchao's import prints on every CPU-only machine, whoever imports it (peft
    does, for any adapter): its CUDA kernel libraries fail to load, and it registers an Enum with
    torch's pytree the deprecated way. Neither says anything a searchr3 user can act on."""

    NOISE = ("Failed to load", "is an Enum subclass and is now natively supported")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in str(record.msg) for n in self.NOISE)


for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).addFilter(_ImportNoise())

ALPHA = 0.5  # share of each channel's activation range moved into the weights (0.8 measured worse)
CALIBRATION_FILE = Path(__file__).with_name("resources") / "int8_calibration.json"
SKIP = ("lm_head",)  # layers left in fp32


def calibration_texts() -> tuple[list[str], list[str]]:
    """The shipped calibration documents and queries (written by the base model; see the file's "source")."""
    data = json.loads(CALIBRATION_FILE.read_text())
    return list(data["documents"]), list(data["queries"])


def is_quantized(module: torch.nn.Module) -> bool:
    """True when any parameter is a tensor subclass (torchao's int8 weights), not a plain tensor."""
    return any(type(p.data) is not torch.Tensor for p in module.parameters())


def quantize_int8(model: "SearchR3", documents: Sequence[str] | None = None, queries: Sequence[str] | None = None,
                  alpha: float = ALPHA, keep: Sequence[str] = ()) -> None:
    """Quantise `model`'s linear layers (all but lm_head and `keep`) to int8 in place, SmoothQuant-calibrated.

    Args:
        model: an fp32 model on the CPU (torchao's int8 kernels here are CPU ones).
        documents, queries: calibration texts; default: the shipped ones (`calibration_texts`).
        alpha: SmoothQuant's migration strength.
        keep: name suffixes of further linear layers left in full precision (e.g. ``("down_proj",)``,
            the layer whose inputs carry the largest outlier channels), trading speed for fidelity.
    """
    require("int8", "torchao")
    from torchao.prototype.smoothquant import SmoothQuantConfig
    from torchao.prototype.smoothquant.core import SmoothQuantObservedLinear
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    if is_quantized(model.model):
        raise ValueError("the model is already quantised")
    if next(model.model.parameters()).dtype != torch.float32 or model.device.type != "cpu":
        raise ValueError("int8 quantisation starts from an fp32 model on the CPU")
    if not cpu_supports_int8_dot():
        log.warning("this CPU has no int8 dot-product instructions (VNNI or AMX): int8 runs much slower than fp32 "
                    "here (20-40x per matmul on a 2-core AVX2 EPYC, experiments/int8/); keep the fp32 model on it")
    if documents is None or queries is None:
        shipped_docs, shipped_queries = calibration_texts()
        documents = shipped_docs if documents is None else documents
        queries = shipped_queries if queries is None else queries
    if not documents:
        raise ValueError("int8 calibration needs at least one document text")

    skip = (*SKIP, *keep)
    base = Int8DynamicActivationInt8WeightConfig()

    def config(step: str) -> SmoothQuantConfig:
        return SmoothQuantConfig(base, step=step, alpha=alpha, use_running_absmax=True)

    quantize_(model.model, config("prepare"),
              filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and not fqn.endswith(skip))
    log.info("calibrating int8 (SmoothQuant alpha %s) on %d documents and %d queries", alpha, len(documents),
             len(queries))
    with warnings.catch_warnings():  # calibration texts longer than the model's length are cut, as intended
        warnings.filterwarnings("ignore", message=".*exceed max_length", category=UserWarning)
        model.embed_documents(list(documents), show_progress=False)
        if queries:
            model.embed_queries(list(queries), show_progress=False)
    quantize_(model.model, config("convert"), filter_fn=lambda m, fqn: isinstance(m, SmoothQuantObservedLinear))
    model.outputs_changed()  # cached outputs of the fp32 weights are not int8's
