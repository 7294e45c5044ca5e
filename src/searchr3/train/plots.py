"""Training plots: Stage 1's loss terms and Stage 2's rewards, each with the pooled dev nDCG@10, against step."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._extras import pyplot
from .loop import read_metrics


def plot_losses(metrics: Path, path: Path) -> None:
    """Loss terms (and dev nDCG@10) against step, as a PNG."""
    plt = pyplot("train")

    every = read_metrics(metrics)
    records = [r for r in every if "total" in r]
    if not records:
        return
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    window = max(1, min(10, len(records) // 10))  # per-step losses are noisy: draw a running mean over them
    for name in ("total", "sft", "kl", "infonce", "triplet", "token"):
        steps = [r["step"] for r in records if name in r]  # token warm-up steps log only total and token
        if len(steps) < window:
            continue
        values = np.array([r[name] for r in records if name in r], dtype=float)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        (line,) = ax.plot(steps[window - 1:], smooth, label=name if window == 1 else f"{name} (mean of {window})", lw=1.5)
        if window > 1:
            ax.plot(steps, values, color=line.get_color(), lw=0.5, alpha=0.3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("symlog", linthresh=1e-4)  # KL and triplet reach exactly 0
    ax.legend()
    dev = [r for r in every if "dev_ndcg@10" in r]
    if dev:
        ax2.plot([r["step"] for r in dev], [r["dev_ndcg@10"] for r in dev], marker="o")
        ax2.set_xlabel("step")
        ax2.set_ylabel("pooled dev nDCG@10")
    else:
        ax2.axis("off")
        ax2.text(0.5, 0.5, "no dev evaluation (eval_every: 0)", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rewards(metrics: Path, path: Path) -> None:
    """Reward (mean ± std over rollouts), KL and dev nDCG@10 against step, as a PNG."""
    plt = pyplot("train")

    every = read_metrics(metrics)
    records = [r for r in every if "reward_mean" in r]
    if not records:
        return
    steps = np.array([r["step"] for r in records])
    mean = np.array([r["reward_mean"] for r in records])
    std = np.array([r["reward_std"] for r in records])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax.plot(steps, mean, label="reward (mean over rollouts)")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.plot(steps, [r["ndcg_mean"] for r in records], label="nDCG@k", lw=1)
    window = min(8, len(records))  # each step sees other queries: the running mean shows the trend
    if window > 1:
        running = np.convolve(mean, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], running, color="k", lw=2, label=f"reward, running mean of {window} steps")
    forced = [r["forced_rate"] for r in records if "forced_rate" in r]
    if len(forced) == len(records):
        ax.plot(steps, forced, color="C2", lw=1, ls="--", label="share of rollouts with the token forced")
    ax.set_xlabel("step")
    ax.legend()
    dev = [r for r in every if "dev_ndcg@10" in r]
    ax2.plot(steps, [r["kl"] for r in records], color="grey", lw=1, label="KL to reference")
    ax2.set_xlabel("step")
    ax2.set_ylabel("KL")
    if dev:
        right = ax2.twinx()
        right.plot([r["step"] for r in dev], [r["dev_ndcg@10"] for r in dev], marker="o", color="C3")
        right.set_ylabel("pooled dev nDCG@10 (reasoning)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
