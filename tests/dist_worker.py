"""Run by test_distributed.py under `torchrun --nproc_per_node 2`: one SFT step on the tiny model (two
micro-batches, so DDP skips the first one's all-reduce; the teacher arm on), then one more through the
training loop, stopped by its time limit."""

import json
import sys

import torch

from test_sft import _config, _examples

from searchr3.train import distributed
from searchr3.train.sft import SFTTrainer

CONFIG = dict(batch_size=8, grad_accum=2, lr=1e-2, w_distill=0.5)  # the test's one process uses the same

if __name__ == "__main__":
    folder, out = sys.argv[1], sys.argv[2]
    trainer = SFTTrainer(_config(folder, **CONFIG), out + "/run", _examples())
    totals = trainer.train_step()
    params = [p for p in trainer.model.model.parameters() if p.requires_grad]
    grads = torch.cat([p.grad.flatten() for p in params])  # averaged over ranks, clipped
    if distributed.is_main():
        json.dump({"totals": totals, "world": distributed.world(), "wrapped": type(trainer.forward).__name__},
                  open(out + "/result.json", "w"))
        torch.save(grads, out + "/grads.pt")
    trainer.config.time_limit_minutes = 1e-9  # the shared loop: both ranks must stop, checkpoint and save together
    trainer.train()
    torch.distributed.destroy_process_group()
