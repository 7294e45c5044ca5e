"""The training loop both stages share: resume, time limit, evaluation, metrics.jsonl, checkpoints, final save.

`Trainer.train` is the loop; SFTTrainer (Stage 1) and GRPOTrainer (Stage 2) subclass it and bring
what differs between them: one optimiser step (`train_step`), the settings they record, the facts of
the run for the model card (`summary`), their progress line and their plot. A stage with more state
than model + optimiser + RNG (Stage 2's environment) saves and restores it with `save_extra` and
`restore_extra`, inside the same atomic checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..model_card import SUMMARY_FILE, write_model_card
from ..modeling import SearchR3
from . import checkpoint, distributed
from .examples import PooledDev

METRICS = "metrics.jsonl"  # one JSON record per logged step; step 0 is the dev score before training
# settings a run may change when it continues from its saved folder (when and how often, not what it trains)
CONTINUABLE_CHANGES = frozenset({"time_limit_minutes", "eval_every", "save_every", "log_every"})


@dataclass
class Schedule:
    """When the loop evaluates, logs, checkpoints and stops (read from a stage's config)."""

    steps: int
    eval_every: int = 0  # pooled dev nDCG@10 every N steps, at step 0 and at the last step (0: never)
    save_every: int = 0  # checkpoint every N steps (0: only at the time limit)
    log_every: int = 1  # write every Nth step's record (and every evaluated and the last one)
    time_limit_minutes: float | None = None  # stop, checkpoint and save once training has run this long


def changed_settings(saved: dict, now: dict, allowed: frozenset[str] = frozenset()) -> list[str]:
    """Keys whose value differs between a folder's saved settings and this run's (except `allowed`).

    Sections (a dict of dicts, as Stage 2's `rl` and `env`) are compared key by key, so `allowed`
    names a setting wherever it sits. A setting added to the code after the folder was saved counts
    as unchanged while it is off (0, False, None, empty): the saved run trained without it.
    """
    changed = []
    for k, v in now.items():
        if k in allowed:
            continue
        if k not in saved:
            if v:
                changed.append(k)
        elif isinstance(v, dict) and isinstance(saved[k], dict):
            changed += [f"{k}.{sub}" for sub in changed_settings(saved[k], v, allowed)]
        elif saved[k] != v:
            changed.append(k)
    return sorted(changed)


def read_metrics(path: Path) -> list[dict]:
    """The records of a JSON-lines log (metrics.jsonl, a round's candidates); a torn last line (the
    process died mid-write) is dropped."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:  # only the last write can have been cut short
                raise
    return records


def hardware_description(device: torch.device) -> str:
    """A short human description of where training ran, for the model card."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} × {distributed.world()}"
    name = "CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                     if line.startswith("model name")), name)
    return f"{name}, {torch.get_num_threads()} threads × {distributed.world()} process(es)"


class Trainer:
    """The loop of both stages. A subclass sets the attributes below and implements the hooks."""

    name = "train"  # progress-bar label
    config_file = "config.json"  # where `settings()` is written in the output folder
    plot_file = "metrics.png"
    output: Path
    model: SearchR3
    optimizer: torch.optim.Optimizer
    dev: PooledDev
    step: int  # optimiser steps taken
    # whether `--resume` may continue from the saved folder alone when there is no checkpoint
    continues_saved: bool = False
    keep_files: tuple[str, ...] = ()  # the subclass's own files in the output folder that the final save keeps

    # ------------------------------------------------------------------ hooks
    @property
    def schedule(self) -> Schedule:
        raise NotImplementedError

    def train_step(self) -> dict[str, float]:
        """One optimiser step; advances `self.step` and returns its metrics."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The run's configuration, as written to `config_file` and into each checkpoint."""
        raise NotImplementedError

    def summary(self) -> dict:
        """Facts of the run for the model card, beside the wall time and steps the loop records."""
        return {}

    def progress(self, record: dict) -> dict[str, str]:
        """The progress bar's postfix for a step's record."""
        return {}

    def plot(self, metrics: Path, path: Path) -> None:
        """Draw the run's curves from `metrics` into `path` (a PNG)."""

    def evaluate_dev(self) -> dict[str, float]:
        """Pooled dev nDCG@10, the number tracked during training."""
        return self.dev(self.model)

    def save_extra(self, folder: Path) -> None:
        """Write state beyond model, optimiser and RNG into a checkpoint folder being made."""

    def restore_extra(self, folder: Path) -> None:
        """Read back what `save_extra` wrote."""

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Model + optimiser + RNG + step (+ `save_extra`) to checkpoints/step-N atomically; keep the latest two."""
        return checkpoint.save(self.output, self.step, self.model, self.optimizer, self.settings(), self.save_extra)

    def resume(self) -> bool:
        """Load the latest checkpoint, if any; returns whether one was found."""
        found = checkpoint.load_latest(self.output, self.model, self.optimizer)
        if found is None:
            return self.continue_saved() if self.continues_saved else False
        self.step, folder = found
        self.restore_extra(folder)
        return True

    def continue_saved(self) -> bool:
        """Continue from the saved model and its log when the folder has no checkpoint.

        A run that spans sessions commits each chunk's folder without its checkpoints (the
        optimiser's moments are twice the adapter): the next chunk takes the weights from the
        saved model and the step from the log's last record, keeps the data order and learning-rate
        schedule, and starts the optimiser afresh. Settings that change what is trained must match.
        """
        records = read_metrics(self.output / METRICS)
        last = records[-1]["step"] if records else 0
        saved_settings = self.output / self.config_file
        if not last or not saved_settings.is_file():
            return False
        saved = json.loads(saved_settings.read_text())
        changed = changed_settings(saved, self.settings(), CONTINUABLE_CHANGES)
        if changed:
            raise ValueError(f"{self.output} was trained with other settings ({', '.join(changed)}): "
                             "continue it with its own config, or train into another --output")
        self.model.load_trainable(self.output)
        self.step = last
        return True

    def write_summary(self, wall_seconds: float) -> None:
        summary = {"wall_seconds": wall_seconds, "steps": self.step, **self.summary()}
        (self.output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")

    def out_of_time(self, start: float) -> bool:
        """Whether the time limit has passed, agreed by all ranks (else one would wait for the others forever)."""
        limit = self.schedule.time_limit_minutes
        if not limit:
            return False
        return distributed.mean(float(time.perf_counter() - start > 60 * limit)) > 0

    # ------------------------------------------------------------------ the loop
    def train(self, resume: bool = False) -> Path:
        """Train to `schedule.steps`, logging, evaluating and checkpointing; returns the output folder
        (a loadable model). With `resume`, continue from the latest checkpoint: the log loses what came
        after it (those steps are redone) and the wall time adds to the earlier sessions'."""
        s, out, main = self.schedule, self.output, distributed.is_main()
        out.mkdir(parents=True, exist_ok=True)
        resumed = resume and self.resume()  # before the settings are written: continuing compares them
        if main:
            (out / self.config_file).write_text(json.dumps(self.settings(), indent=2) + "\n")
        if resumed:
            print(f"resumed from step {self.step}")
        wall_before = 0.0
        if resumed and (out / SUMMARY_FILE).is_file():
            wall_before = json.loads((out / SUMMARY_FILE).read_text())["wall_seconds"]
        log = None
        if main:  # a fresh run starts a fresh log; a resumed one keeps the records up to its checkpoint
            kept = [r for r in read_metrics(out / METRICS) if r["step"] <= self.step] if resumed else []
            log = open(out / METRICS, "w", encoding="utf-8")
            log.writelines(json.dumps(r) + "\n" for r in kept)
        if s.eval_every and self.step == 0:  # the starting point, so the curve shows what training changed
            if main:
                scores = self.evaluate_dev()
                log.write(json.dumps({"step": 0, **scores}) + "\n")
                print(f"pooled dev nDCG@10 before training: {scores['dev_ndcg@10']:.3f}")
            distributed.barrier()

        bar = tqdm(total=s.steps, initial=self.step, desc=self.name, unit="step", disable=not main)
        start = time.perf_counter()
        while self.step < s.steps:
            t0 = time.perf_counter()
            metrics = self.train_step()
            record = {"step": self.step, **metrics, "seconds": time.perf_counter() - t0}
            if "tokens" in metrics:
                record["tokens_per_s"] = metrics["tokens"] / record["seconds"]
            out_of_time = self.out_of_time(start)
            last = self.step == s.steps or out_of_time
            if s.eval_every and (self.step % s.eval_every == 0 or last):
                if main:
                    record.update(self.evaluate_dev())
                distributed.barrier()
            if main and (self.step % s.log_every == 0 or last or "dev_ndcg@10" in record):
                log.write(json.dumps(record) + "\n")
                log.flush()
            bar.set_postfix(self.progress(record)
                            | ({"dev": f"{record['dev_ndcg@10']:.3f}"} if "dev_ndcg@10" in record else {}))
            bar.update(1)
            if self.step < s.steps and (out_of_time or (s.save_every and self.step % s.save_every == 0)):
                if main:  # at the time limit too, so `--resume` continues from here
                    self.save_checkpoint()
                    self.write_summary(wall_before + time.perf_counter() - start)
                distributed.barrier()
            if out_of_time:
                print(f"time limit of {s.time_limit_minutes} min reached at step {self.step}")
                break
        bar.close()
        if log is not None:
            log.close()

        self.model.model.eval()
        if main:
            self.model.save_pretrained(out, keep=("checkpoints", METRICS, self.config_file, self.plot_file,
                                                  SUMMARY_FILE, *self.keep_files))
            self.plot(out / METRICS, out / self.plot_file)
            self.write_summary(wall_before + time.perf_counter() - start)
            write_model_card(out)
        distributed.barrier()
        print(f"trained to step {self.step} in {time.perf_counter() - start:.0f} s -> {out}")
        return out
