"""Training: Stage 1 (representation SFT) in `sft`, its examples in `examples`."""
