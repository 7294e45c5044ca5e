"""Training: Stage 1 (representation SFT) in `sft`, Stage 2 (GRPO) in `grpo` with its environment in `env`;
the loop both share in `loop`."""
