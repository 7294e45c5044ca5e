"""`searchr3 train sft | rl | rft`: the training commands (each loads its config sections, applies
--set overrides, and runs its trainer into --output)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ._extras import require


def cmd_train_sft(args: argparse.Namespace) -> int:
    from .config import override
    from .train.sft import train_sft
    from .train.sft_config import load_sft_config

    require("train", "matplotlib")  # the loss plot at the end: fail now, not after training

    config = override(load_sft_config(args.config), args.set, f"{args.config} [sft] --set")
    output = args.output or f"runs/sft-{Path(args.config).stem}"
    train_sft(config, output, resume=args.resume)
    return 0


def cmd_train_rl(args: argparse.Namespace) -> int:
    from .config import override
    from .train.grpo import load_rl_config, train_rl

    require("train", "matplotlib")  # the reward plot at the end: fail now, not after training
    require("train", "scipy")  # reward fidelity

    config, env_config = load_rl_config(args.config)
    config = override(config, args.set, f"{args.config} [rl] --set")
    env_config = override(env_config, args.set_env, f"{args.config} [env] --set-env")
    if args.init:
        config = dataclasses.replace(config, init=args.init)
    output = args.output or f"runs/rl-{Path(args.config).stem}"
    train_rl(config, env_config, output, resume=args.resume)
    return 0


def cmd_train_rft(args: argparse.Namespace) -> int:
    from .config import override
    from .train.rft import load_rft_config, train_rft

    require("train", "matplotlib")  # the fine-tune's loss plot at the end

    config, sft = load_rft_config(args.config)
    config = override(config, args.set, f"{args.config} [rft] --set")
    sft = override(sft, args.set_sft, f"{args.config} [sft] --set-sft")
    if args.init:
        config = dataclasses.replace(config, init=args.init)
    output = args.output or f"runs/rft-{Path(args.config).stem}"
    train_rft(config, sft, output, resume=args.resume)
    return 0


def add_train_commands(sub) -> None:
    """Register `train` and its sub-commands on the top-level sub-parsers."""
    p = sub.add_parser("train", help="train a model")
    tsub = p.add_subparsers(dest="train_command", required=True)
    t = tsub.add_parser("sft", help="Stage 1: representation SFT (SFT + KL + InfoNCE + triplet)")
    t.add_argument("--config", required=True, help="YAML file with an `sft:` section (see configs/sft.yaml)")
    t.add_argument("--output", help="output folder; becomes a loadable model (default runs/sft-<config>)")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one `sft:` setting, e.g. --set w_kl=0 --set lora_r=64 (repeatable)")
    t.set_defaults(func=cmd_train_sft)
    for name, help_, sections, start, resume, extra in (
            ("rl", "Stage 2: GRPO on reasoning + embedding, with the local-refresh environment", ("rl", "env"),
             "the released SFT adapter", "continue from the latest checkpoint in --output", "env"),
            ("rft", "a round of retrieval-filtered reasoning (rejection-sampling fine-tuning)", ("rft", "sft"),
             "a previous round's folder", "continue a stopped round in --output", "sft")):
        t = tsub.add_parser(name, help=help_)
        t.add_argument("--config", required=True, help=f"YAML file with `{sections[0]}:` and `{sections[1]}:` "
                       f"sections (see configs/{name}.yaml)")
        t.add_argument("--init", help=f"model to start from (default: the config's init; e.g. {start})")
        t.add_argument("--output", help=f"output folder; becomes a loadable model (default runs/{name}-<config>)")
        t.add_argument("--resume", action="store_true", help=resume)
        t.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help=f"override one `{name}:` setting (repeatable)")
        t.add_argument(f"--set-{extra}", action="append", metavar="KEY=VALUE",
                       help=f"override one `{extra}:` setting (repeatable)")
        t.set_defaults(func=cmd_train_rl if name == "rl" else cmd_train_rft)
