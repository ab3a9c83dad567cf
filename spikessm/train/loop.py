"""The training run: data -> model -> AdamW + cosine -> best-on-validation -> test -> summary.json.

Files written to the output directory (by rank 0 alone in a multi-process run):
  config.yaml     the resolved config (``spikessm train --preset DIR/config.yaml`` reruns it)
  metrics.jsonl   one line per epoch: losses, accuracies, lr, seconds, firing rates, skipped batches
  best.pt         the best-on-validation weights, the ModelConfig (``spikessm.load_model`` rebuilds the
                  model from it without data), the training config and the vocabulary
  last.pt         the whole training state (see :func:`save_last`): written at every epoch end,
                  every ``train.checkpoint_every`` optimizer steps and on SIGINT/SIGTERM;
                  ``spikessm train --resume DIR`` continues from it and ends exactly where an
                  uninterrupted run would
  summary.json    task, model, test metric, firing rates, energy, params, time (docs/TRAINING.md)
  tensorboard/    event files, when the ``tensorboard`` package is installed

Read top to bottom: what a run is made of (:class:`Run`, :func:`build_run`) and how far it has got
(:class:`State`, :class:`EpochSums`), checkpoints, one step and one epoch, the end of the run, and
the entry points. Data loading is :mod:`spikessm.data.loading`; evaluation :mod:`spikessm.train.evaluation`.

One optimizer step = ``train.accumulate`` micro-batches of ``train.batch_size`` samples on each of
the torchrun processes (see :mod:`spikessm.train.distributed`); the LR schedule counts optimizer steps.
"""
from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import astuple, dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from spikessm.data.loading import load_data, make_loader, require_samples
from spikessm.errors import UserError
from spikessm.models.config import ModelConfig
from spikessm.models.serialization import load_state_strictly
from spikessm.train import distributed
from spikessm.train.checkpoint import first_nonfinite, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from spikessm.train.config import build_config
from spikessm.train.distributed import Context, EpochSampler
from spikessm.train.evaluation import (autocast, evaluate, evaluate_with_metrics, loss_and_hits, resolve_device,
                                       seed_everything)
from spikessm.train.optim import cosine_with_warmup, make_optimizer
from spikessm.train.rundir import RunLock, claim, replace
from spikessm.train.runlog import RunLog, dumps, json_safe, write_text_atomic
from spikessm.train.stopping import EXIT_CODES, EXIT_DIVERGED, StopOnSignal, TrainingStopped


# ---------------------------------------------------------------- the run and its state

@dataclass
class Run:
    """What a training run is made of; built once by :func:`build_run`."""

    cfg: dict
    out: Path
    ctx: Context
    device: torch.device
    kind: str  # the task kind: classify, retrieval or lm
    seq_len: int  # the task's nominal length, for the energy count
    model_config: ModelConfig  # builds ``model`` without the data; every checkpoint holds it
    model: nn.Module  # what checkpoints hold and evaluation runs
    ddp_model: nn.Module  # what training steps call: ``model``, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: EpochSampler
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader
    log: RunLog
    progress: bool  # show the progress bar
    n_params: int
    started: float  # time.monotonic() when this process began training
    char_level: bool = False  # a character-level LM task: report bits per character
    vocab: list[str] | None = None  # the token of each id, when the task has a vocabulary (saved for export)

    @property
    def batches_per_epoch(self) -> int:
        """Micro-batches per epoch on each process."""
        return math.ceil(self.sampler.num_samples / self.cfg["train"]["batch_size"])


@dataclass
class EpochSums:
    """The running sums of the epoch in progress (this process's part until summed across processes)."""

    loss: float = 0.0
    hits: float = 0.0
    count: float = 0.0  # scored samples (tokens for LM)
    nonfinite: float = 0.0  # batches whose loss was NaN or inf

    def as_list(self) -> list[float]:
        """``[loss, hits, count, nonfinite]``, as checkpoints store them and all-reduces add them."""
        return list(astuple(self))


@dataclass
class State:
    """How far the run has got. A checkpoint holds this beside the weights, optimizer and scheduler."""

    epochs_done: int = 0
    batches_done: int = 0  # micro-batches of epoch ``epochs_done + 1`` done, per process
    best_val: float = -math.inf  # validation accuracy (or -loss for LM) of best.pt
    rows: list[dict] = field(default_factory=list)  # the metrics.jsonl rows so far
    seconds_before: float = 0.0  # training time spent before this process started (a resumed run)
    epoch_sums: EpochSums = field(default_factory=EpochSums)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, ctx: Context) -> "State":
        position = ckpt["position"]
        if position["world_size"] != ctx.world_size:
            raise UserError(f"the run was trained by {position['world_size']} process(es) and this is "
                            f"{ctx.world_size}; resume it with as many (torchrun --nproc_per_node), so that "
                            "its batches and random streams continue as they were")
        # the sums were added up over processes when saved: rank 0 carries them on
        sums = EpochSums(*ckpt["epoch_totals"]) if ctx.is_main else EpochSums()
        return cls(position["epochs_done"], position["batches_done"], ckpt["best_val"], ckpt["metrics"],
                   ckpt["train_seconds"], sums)


def build_run(cfg: dict, out: Path, ctx: Context, device: torch.device, progress: bool,
              rows: list[dict], ckpt: dict | None = None, source: Path | None = None,
              replaced: tuple[str, ...] = ()) -> Run:
    """Seed, load the data, build the model, its optimizer and schedule; load the training state of
    ``ckpt`` (a last.pt read from ``source``), if given; only then write config.yaml and metrics.jsonl,
    so that a checkpoint that does not fit this run leaves the folder as it was. ``replaced``: the
    previous run's files that ``--overwrite`` removes (just before the first write)."""
    tcfg = cfg["train"]
    if tcfg["threads"]:
        torch.set_num_threads(tcfg["threads"])
    seed_everything(cfg["seed"])
    task, splits = load_data(cfg)
    require_samples(cfg["task"], splits)
    model_config = ModelConfig.from_options(cfg["model"], task.kind, splits.n_classes, splits.d_input,
                                            splits.vocab_size)
    model = model_config.build().to(device)
    ddp_model = distributed.wrap(model, ctx, device)
    if ctx.rank:  # each process draws its own dropout masks and spikes; rank 0 goes on as one process would
        seed_everything(cfg["seed"] + ctx.rank)
    sampler = EpochSampler(splits.train, ctx, cfg["seed"])
    workers = tcfg["num_workers"]
    train_loader = make_loader(splits.train, splits, tcfg["batch_size"], workers, sampler)
    val_loader = make_loader(distributed.shard(splits.val, ctx), splits, tcfg["eval_batch_size"], workers)
    test_loader = make_loader(distributed.shard(splits.test, ctx), splits, tcfg["eval_batch_size"], workers)
    optimizer = make_optimizer(model, tcfg["lr"], tcfg["weight_decay"], tcfg["ssm_lr"])
    steps_per_epoch = math.ceil(len(train_loader) / tcfg["accumulate"])  # optimizer steps
    scheduler = cosine_with_warmup(optimizer, round(tcfg["warmup_epochs"] * steps_per_epoch),
                                   tcfg["epochs"] * steps_per_epoch)
    if ckpt is not None:  # after building, which draws from the RNG
        load_training_state(model, optimizer, scheduler, ctx, ckpt, source)
    if ctx.is_main:
        replace(out, list(replaced))
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    log = RunLog(out, rows, enabled=ctx.is_main)
    n_params = sum(p.numel() for p in model.parameters())
    processes = f" x {ctx.world_size} processes" if ctx.enabled else ""
    log.info(f"spikessm: training {cfg['model']['name']} on {cfg['task']} "
             f"({len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test, "
             f"{n_params:,} parameters, {device}{processes}) -> {out}")
    vocab = splits.info.get("vocab")
    return Run(cfg, out, ctx, device, task.kind, task.seq_len, model_config, model, ddp_model, optimizer,
               scheduler, sampler, train_loader, val_loader, test_loader, log, progress, n_params,
               started=time.monotonic(), char_level=task.char_level,
               vocab=list(vocab) if isinstance(vocab, (list, tuple)) and len(vocab) <= MAX_SAVED_VOCAB else None)


MAX_SAVED_VOCAB = 1 << 16  # larger vocabularies (wikitext103's) are not copied into every checkpoint


def model_payload(run: Run) -> dict:
    """What every checkpoint holds about the model: its config (enough to rebuild it without data),
    the training config, the weights and the vocabulary."""
    return {"config": run.cfg, "model_config": run.model_config.to_dict(), "model": run.model.state_dict(),
            "vocab": run.vocab}


def kept_checkpoint(run: Run) -> str:
    """What a diverged run leaves behind, for its message."""
    return (f"the last checkpoint in {run.out} is untouched" if (run.out / "last.pt").is_file()
            else f"no checkpoint was saved in {run.out}")


def check_finite_weights(run: Run, state: State) -> None:
    """Raise :class:`TrainingStopped` (diverged) when a parameter or buffer holds a NaN or infinity:
    such weights are never saved. Every process holds the same weights, so all raise together."""
    name = first_nonfinite(run.model.state_dict())
    if name is not None:
        distributed.barrier(run.ctx)
        raise TrainingStopped(
            f"the weights became non-finite ({name}) by epoch {state.epochs_done + 1}, step "
            f"{state.batches_done}/{run.batches_per_epoch}; not saved ({kept_checkpoint(run)}). Lower train.lr "
            "or set train.grad_clip" if run.ctx.is_main else "", EXIT_DIVERGED)


def train_seconds(run: Run, state: State) -> float:
    return state.seconds_before + time.monotonic() - run.started


def save_last(run: Run, state: State) -> None:
    """Write last.pt: everything needed to carry on exactly from here.

    Besides weights, optimizer and schedule: the position in the data order (epoch, micro-batches
    done in it; the order itself follows from the seed), every process's RNG states (dropout and
    Bernoulli spikes draw from them), the epoch's running sums, best validation score, metrics
    rows and training time. Every process must call it (it gathers); rank 0 writes. Non-finite
    weights are not written: the run stops as diverged instead (:func:`check_finite_weights`).
    """
    check_finite_weights(run, state)
    totals = distributed.sum_across(run.ctx, state.epoch_sums.as_list(), run.device)
    rngs = distributed.gather(run.ctx, rng_state())
    if run.ctx.is_main:
        save_checkpoint(run.out / "last.pt", {
            **model_payload(run), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "position": {"epochs_done": state.epochs_done, "batches_done": state.batches_done,
                         "world_size": run.ctx.world_size},
            "epoch_totals": totals, "rng": rngs, "best_val": state.best_val, "metrics": state.rows,
            "train_seconds": train_seconds(run, state)})


def load_training_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LambdaLR, ctx: Context, ckpt: dict, source: Path) -> None:
    """Weights, optimizer, schedule and this process's RNG states from a last.pt. One that does not
    fit this run (another model's weights, a foreign optimizer, no RNG states) is a one-line
    :class:`UserError` naming ``source``."""
    load_state_strictly(model, ckpt["model"], f"checkpoint {source}")
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:
            for p in group["params"]:
                for name, value in optimizer.state.get(p, {}).items():
                    if isinstance(value, torch.Tensor) and value.dim() and value.shape != p.shape:
                        raise ValueError(f"its {name} has shape {tuple(value.shape)} for a parameter of "
                                         f"{tuple(p.shape)}")
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"][ctx.rank])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"checkpoint {source}: its optimizer, schedule or RNG states do not fit this run "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'malformed'}); "
                        "it cannot be resumed") from None


# ---------------------------------------------------------------- steps and epochs

def forward_backward(run: Run, batch, scale: float, sync: bool) -> tuple[float, int, int]:
    """One micro-batch: forward, then backward of ``scale`` x the mean loss. Returns the summed
    loss, hits and count. Gradients are averaged across processes only when ``sync`` (the last
    micro-batch before an optimizer step)."""
    x, y, lengths = batch
    no_sync = run.ddp_model.no_sync() if run.ctx.enabled and not sync else contextlib.nullcontext()
    with no_sync:
        with autocast(run.device, run.cfg["train"]["bf16"]):
            loss, hits, n = loss_and_hits(run.ddp_model, run.kind, x.to(run.device), y.to(run.device), lengths)
        (loss * (scale / n)).backward()
    return loss.item(), hits.item(), n


def optimizer_step(run: Run, skip: bool) -> None:
    """Clip, step (unless ``skip``: a non-finite batch's gradients are dropped), advance the LR."""
    tcfg = run.cfg["train"]
    if not skip:
        if tcfg["grad_clip"]:
            nn.utils.clip_grad_norm_(run.model.parameters(), tcfg["grad_clip"])
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()  # also on a skipped step, so the schedule stays in step with the data


def stopped(run: Run, stop: StopOnSignal, where: str) -> TrainingStopped:
    """The exception that ends an interrupted run, after every process has reached this point."""
    distributed.barrier(run.ctx)
    sig = stop.signal or signal.SIGTERM  # no signal here: another process got it
    launcher = " (under torchrun, with the same --nproc_per_node)" if run.ctx.enabled else ""
    message = (f"interrupted by {sig.name} {where}; checkpoint saved; resume with: "
               f"spikessm train --resume {run.out}{launcher}")
    return TrainingStopped(message if run.ctx.is_main else "", EXIT_CODES[sig])


def train_epoch(run: Run, state: State, stop: StopOnSignal) -> None:
    """Train from the state's position to the end of the epoch.

    Checkpoints every ``train.checkpoint_every`` optimizer steps; on a signal, saves and raises
    :class:`TrainingStopped` after the current optimizer step. A non-finite loss raises too
    (keeping the last checkpoint as it was), or with ``train.skip_nonfinite`` drops that step.
    """
    tcfg, ctx = run.cfg["train"], run.ctx
    epoch, total, accumulate = state.epochs_done + 1, run.batches_per_epoch, tcfg["accumulate"]
    run.sampler.set_position(epoch, state.batches_done * tcfg["batch_size"])
    run.ddp_model.train()
    unit = "tokens" if run.kind == "lm" else "samples"
    bar = tqdm(total=total, initial=state.batches_done, desc=f"epoch {epoch}/{tcfg['epochs']}", unit="batch",
               leave=False, disable=None if run.log.enabled and run.progress else True)
    clock, scored, nonfinite = time.monotonic(), 0, 0
    for index, batch in enumerate(run.train_loader, start=state.batches_done):
        step_start = index - index % accumulate
        step_end = min(step_start + accumulate, total)  # micro-batches [step_start, step_end) make one step
        loss, hits, n = forward_backward(run, batch, 1 / (step_end - step_start), sync=index + 1 == step_end)
        sums = state.epoch_sums
        if math.isfinite(loss):
            sums.loss, sums.hits, sums.count = sums.loss + loss, sums.hits + hits, sums.count + n
        else:
            nonfinite += 1
        scored += n
        bar.update()
        bar.set_postfix_str(f"loss {sums.loss / max(sums.count, 1):.4f} acc {sums.hits / max(sums.count, 1):.3f} "
                            f"{scored * ctx.world_size / (time.monotonic() - clock):,.0f} {unit}/s", refresh=False)
        if index + 1 < step_end:
            continue
        # One all-reduce per optimizer step, so that every process takes the same branch below.
        nonfinite_everywhere, stopping = distributed.sum_across(ctx, [nonfinite, stop.signal is not None],
                                                                run.device)
        if nonfinite_everywhere and not tcfg["skip_nonfinite"]:
            bar.close()
            distributed.barrier(ctx)
            raise TrainingStopped(
                f"non-finite training loss at epoch {epoch}, step {index + 1}/{total}; stopped without "
                f"saving ({kept_checkpoint(run)}). Lower train.lr, set train.grad_clip, "
                "or skip such batches with --set train.skip_nonfinite=true" if ctx.is_main else "",
                EXIT_DIVERGED)
        optimizer_step(run, skip=nonfinite_everywhere > 0)
        state.epoch_sums.nonfinite += nonfinite  # summed over processes when the epoch ends
        state.batches_done, nonfinite = index + 1, 0
        # every checkpoint_every optimizer steps (counted by the scheduler's last_epoch), but not at
        # the epoch's end, which saves anyway
        every = tcfg["checkpoint_every"]
        periodic = every and run.scheduler.last_epoch % every == 0 and index + 1 < total
        if stopping or periodic:
            save_last(run, state)
        if stopping:
            bar.close()
            raise stopped(run, stop, f"after step {index + 1}/{total} of epoch {epoch}")
    bar.close()


def end_epoch(run: Run, state: State) -> None:
    """Validate, log the epoch's row, save best.pt if validation improved, then last.pt."""
    epoch = state.epochs_done + 1
    loss, hits, n, skipped = distributed.sum_across(run.ctx, state.epoch_sums.as_list(), run.device)
    val = evaluate(run.model, run.val_loader, run.kind, run.device, run.ctx, run.cfg["train"]["bf16"],
                   run.char_level)
    row = {"epoch": epoch, "train_loss": loss / n if n else None, "train_accuracy": hits / n if n else None,
           "val_loss": val["loss"], "val_accuracy": val["accuracy"],
           **({"val_ppl": val["ppl"]} if "ppl" in val else {}),
           **({"val_bpc": val["bpc"]} if "bpc" in val else {}),
           "lr": run.optimizer.param_groups[0]["lr"],
           "seconds": train_seconds(run, state) - sum(r["seconds"] for r in state.rows),
           "firing_rate": val["firing_rate"], "firing_rates": val["firing_rates"],
           "nonfinite_batches": int(skipped)}
    row = json_safe(row)  # a NaN validation loss is logged as null
    state.rows.append(row)
    run.log.epoch(row)
    score = -val["loss"] if run.kind == "lm" else val["accuracy"]
    # a best checkpoint needs a finite validation score and loss (NaN logits still score an accuracy)
    improved = math.isfinite(score) and math.isfinite(val["loss"]) and score > state.best_val
    if improved:
        check_finite_weights(run, state)
    state.epochs_done, state.batches_done, state.epoch_sums = epoch, 0, EpochSums()
    if improved:
        state.best_val = score
        if run.ctx.is_main:  # before last.pt: a crash in between replays this epoch and rewrites it
            save_checkpoint(run.out / "best.pt", {**model_payload(run), "epoch": epoch})
    save_last(run, state)
    fr = f" firing {row['firing_rate']:.3f}" if row["firing_rate"] is not None else ""
    train = f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}" if n else "train: no finite batch"
    skipped_note = f"  {int(skipped)} non-finite batches skipped" if skipped else ""
    run.log.info(f"epoch {epoch:3d}  {train}  val loss {val['loss']:.4f} acc {val['accuracy']:.3f}{fr}"
                 f"  {row['seconds']:.1f}s{'  *best' if improved else ''}{skipped_note}")


def finish(run: Run, state: State) -> dict:
    """Test the best-on-validation weights; write summary.json (rank 0)."""
    if not math.isfinite(state.best_val):  # the same on every process
        raise TrainingStopped("no epoch had a finite validation loss, so there is no best.pt to test; "
                              f"{kept_checkpoint(run)}. Lower train.lr or set train.grad_clip"
                              if run.ctx.is_main else "", EXIT_DIVERGED)
    if run.ctx.is_main:
        run.model.load_state_dict(load_checkpoint(run.out / "best.pt")["model"])
    distributed.broadcast_from_main(run.ctx, run.model.state_dict().values())
    test = evaluate_with_metrics(run.model, run.test_loader, run.kind, run.seq_len, run.device, run.ctx,
                                 run.cfg["train"]["bf16"], run.char_level)
    cfg = run.cfg
    summary = {
        "task": cfg["task"], "model": cfg["model"]["name"],
        **({"test_ppl": test["ppl"]} if run.kind == "lm" else {"test_accuracy": test["accuracy"]}),
        **({"test_bpc": test["bpc"]} if "bpc" in test else {}),
        "test_loss": test["loss"],
        "firing_rate": test["firing_rate"], "firing_rates": test["firing_rates"],
        "energy": test["energy"], "layers": test["layers"],
        "params": run.n_params, "train_seconds": sum(r["seconds"] for r in state.rows),
        "epochs": cfg["train"]["epochs"], "seed": cfg["seed"], "world_size": run.ctx.world_size, "best_checkpoint": str(run.out / "best.pt"),
    }
    if run.ctx.is_main:
        write_text_atomic(run.out / "summary.json", dumps(summary, indent=2) + "\n")
    metric = f"test ppl {test['ppl']:.2f}" if run.kind == "lm" else f"test accuracy {test['accuracy']:.4f}"
    if "bpc" in test:
        metric += f", bpc {test['bpc']:.4f}"
    fr = f", firing rate {test['firing_rate']:.3f}" if test["firing_rate"] is not None else ""
    run.log.info(f"spikessm: {metric}{fr}, {summary['train_seconds']:.0f}s; summary in {run.out / 'summary.json'}")
    return summary


# ---------------------------------------------------------------- entry points

def train(cfg: dict, out_dir: str | Path, progress: bool = True, overwrite: bool = False) -> dict:
    """Run the experiment ``cfg`` into ``out_dir``; returns the summary dict. A folder holding another
    run's files is refused (:class:`UserError`) unless ``overwrite``, which removes them first."""
    return _run(cfg, Path(out_dir), progress, overwrite=overwrite)


# what a last.pt must hold to be resumed, and the type of each entry
RESUMABLE = {"model": dict, "optimizer": dict, "scheduler": dict, "position": dict, "epoch_totals": (list, tuple),
             "rng": (list, tuple), "best_val": (int, float), "metrics": list, "train_seconds": (int, float)}


def check_same_run(config: dict, run_dir: Path, path: Path) -> None:
    """A :class:`UserError` when ``run_dir/config.yaml`` describes another run than the last.pt at
    ``path`` (whose config is ``config``): a last.pt copied in from elsewhere. Where the data lives
    (``data.dir``) may differ: ``--resume --data-dir`` changes it."""
    def comparable(cfg):
        return {**cfg, "data": {k: v for k, v in (cfg.get("data") or {}).items() if k != "dir"}}

    try:
        written = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return  # no config.yaml (or an unreadable one): the checkpoint's own config decides
    if isinstance(written, dict) and isinstance(written.get("data", {}), dict) \
            and comparable(written) != comparable(config):
        raise UserError(f"{path} belongs to another run: its config differs from {run_dir / 'config.yaml'}; "
                        "nothing was changed. Resume the run it came from, or remove the stray file")


def check_resumable(ckpt: dict, path: Path) -> None:
    """A one-line :class:`UserError` unless ``ckpt`` holds every part of a training state."""
    for key, kind in RESUMABLE.items():
        if not isinstance(ckpt.get(key), kind):
            raise UserError(f"{path} has no valid {key!r} entry (a damaged checkpoint, or not a last.pt); "
                            "it cannot be resumed")
    position = ckpt["position"]
    if not all(isinstance(position.get(k), int) and position[k] >= 0
               for k in ("epochs_done", "batches_done", "world_size")):
        raise UserError(f"{path}: its training position {position!r} is malformed; it cannot be resumed")
    if len(ckpt["epoch_totals"]) != len(EpochSums().as_list()) or len(ckpt["rng"]) != position["world_size"] \
            or not all(isinstance(row, dict) for row in ckpt["metrics"]):
        raise UserError(f"{path}: its running sums, RNG states or metrics are malformed; it cannot be resumed")


def resume(run_dir: str | Path, data_dir: str | None = None, progress: bool = True) -> dict:
    """Continue the run saved in ``run_dir`` (its last.pt, config included) to its end.

    Only where the data lives may change (``data_dir``). A run that already finished is tested
    again and its summary rewritten.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--resume takes the output directory of a run; {run_dir} is not a directory")
    path = run_dir / "last.pt"
    if not path.is_file():
        raise UserError(f"{run_dir} holds no last.pt to resume from (the run stopped before its first "
                        f"checkpoint); start it again with: spikessm train --preset {run_dir / 'config.yaml'} "
                        f"--out {run_dir}")
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt.get("config"), dict) or "position" not in ckpt:
        raise UserError(f"{path} holds no training position (an older or a best-weights checkpoint); "
                        "it cannot be resumed")
    check_resumable(ckpt, path)
    check_same_run(ckpt["config"], run_dir, path)
    cfg = build_config(flags=ckpt["config"])  # validated again; keys added since get their defaults
    if data_dir:
        cfg["data"]["dir"] = data_dir
    return _run(cfg, run_dir, progress, ckpt)


def _run(cfg: dict, out: Path, progress: bool, ckpt: dict | None = None, overwrite: bool = False) -> dict:
    """Train from scratch, or on from the state in ``ckpt`` (a last.pt), then test and summarise.

    Rank 0 holds the run directory's lock (:mod:`spikessm.train.rundir`) from before the first file
    is written until the end, however the run ends."""
    ctx = distributed.context_from_env()
    device = resolve_device(cfg["train"]["device"], ctx)
    state = State.from_checkpoint(ckpt, ctx) if ckpt else State()
    with contextlib.ExitStack() as cleanup:
        replaced = []
        if ctx.is_main:
            cleanup.enter_context(RunLock(out))
            if ckpt is None:
                replaced = claim(out, overwrite)
        distributed.init(ctx, device)
        cleanup.callback(distributed.shutdown, ctx)
        run = build_run(cfg, out, ctx, device, progress, state.rows, ckpt, out / "last.pt", tuple(replaced))
        cleanup.callback(run.log.close)
        if ckpt:
            run.log.info(f"spikessm: resuming at epoch {state.epochs_done + 1}, after step {state.batches_done}/"
                         f"{run.batches_per_epoch}" if state.epochs_done < cfg["train"]["epochs"] else
                         "spikessm: every epoch is done already; testing best.pt again")
        with StopOnSignal() as stop:
            while state.epochs_done < cfg["train"]["epochs"]:
                train_epoch(run, state, stop)
                end_epoch(run, state)
                if distributed.sum_across(ctx, [stop.signal is not None], device)[0]:
                    raise stopped(run, stop, f"after epoch {state.epochs_done}")
        summary = finish(run, state)
        distributed.barrier(ctx)
        return summary
