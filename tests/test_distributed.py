"""Two CPU processes (gloo) give the same loss and the same update as one process on the global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_sft import _config, _examples

from searchr3.train.sft import SFTTrainer


def test_two_processes_match_one(tiny_folder, tmp_path):
    single = SFTTrainer(_config(tiny_folder, batch_size=8, lr=1e-2), tmp_path / "single", _examples())
    totals = single.train_step()
    checksum = sum(float(p.detach().double().sum()) for p in single.model.model.parameters() if p.requires_grad)

    here = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(here / "dist_worker.py"), str(tiny_folder), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world"] == 2
    for name in ("total", "sft", "kl", "infonce", "triplet"):
        assert result["totals"][name] == pytest.approx(totals[name], rel=1e-4, abs=1e-6), name
    assert result["totals"]["grad_norm"] == pytest.approx(totals["grad_norm"], rel=1e-4)
    assert result["checksum"] == pytest.approx(checksum, abs=1e-5)  # the same AdamW update
