"""Run by test_grpo.py under `torchrun --nproc_per_node 2`: one GRPO step on the tiny model."""

import json
import sys

import torch

from test_grpo import ENV, config, toy_dataset

from searchr3.train import distributed
from searchr3.train.grpo import GRPOTrainer

folder, out = sys.argv[1], sys.argv[2]
trainer = GRPOTrainer(config(folder, batch_queries=4), ENV, out + "/run", toy_dataset())
metrics = trainer.train_step()
grads = torch.cat([p.grad.flatten() for p in trainer.model.model.parameters() if p.requires_grad])  # averaged, clipped
if distributed.is_main():
    json.dump({"metrics": metrics, "world": distributed.world(), "wrapped": type(trainer.forward).__name__},
              open(out + "/result.json", "w"))
    torch.save(grads, out + "/grads.pt")
torch.distributed.destroy_process_group()
