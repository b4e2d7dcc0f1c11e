"""A run's checkpoint/ folder: the model in the package format, the optimizer's tensors (safetensors),
trainer.json, the recipe, with EMA on its weights, and with a critic on its weights and optimizer; written
whole, read back for resuming.

Format 2 is written. Format 1 (model + optimizer, no EMA) is read too: what it lacks starts fresh.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from ..checkpoint import load, save_pretrained, stored_tensors
from ..nn.networks import ConvNeXtBlock
from ..io.atomic import atomic_path
from .recipe import Recipe
from .trainer import Trainer

EMA_FILE, OPTIMIZER_FILE, TRAINER_FILE, RECIPE_FILE = "ema.safetensors", "optimizer.safetensors", \
    "trainer.json", "recipe.yaml"
CRITIC_FILE, CRITIC_OPTIMIZER_FILE = "discriminator.safetensors", "discriminator_optimizer.safetensors"
METRICS_FILE = "metrics.jsonl"  # in the run folder: one JSON record per logged step


def read_metrics(run: Path) -> list[dict]:
    """The run's metrics.jsonl records, oldest first ([] if none); a torn line (a run killed mid-write) is
    skipped."""
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _opt_tensors(opt: torch.optim.Optimizer, prefix: str = "state") -> tuple[dict, list]:
    tensors = {}
    for idx, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            tensors[f"{prefix}.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    return tensors, opt.state_dict()["param_groups"]


def _load_opt(opt: torch.optim.Optimizer, tensors: dict, groups: list, prefix: str = "state", **hyper) -> None:
    """Restore AdamW moments and groups; `hyper` (betas, weight decay) from the recipe wins over the saved
    values, so editing them in the recipe of a resumed run takes effect (lr is set at every step anyway)."""
    state: dict = {}
    for key, v in tensors.items():
        head, idx, k = key.split(".", 2)
        if head == prefix:
            state.setdefault(int(idx), {})[k] = v
    # The implementation (fused or foreach) is this optimizer's, not the one the state was saved from.
    own = [{k: group[k] for k in ("foreach", "fused") if k in group} for group in opt.param_groups]
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as err:
        raise ValueError(f"optimizer state does not fit the model: {err}") from None
    for group, implementation in zip(opt.param_groups, own):
        group.update(implementation, **hyper)


def save_tensors(path: Path, tensors: dict) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def write_recipe(path: Path, recipe: Recipe) -> None:
    path.write_text(yaml.safe_dump(recipe.to_dict()))


def save_state(trainer: Trainer, ckpt: Path, step: int, recipe: Recipe, extra: dict) -> None:
    """Write the trainer's state at `step` into `ckpt`.

    Written whole into checkpoint.new/ and swapped in by renames: a run killed mid-save leaves the previous
    checkpoint (as checkpoint/ or checkpoint.old/), never new weights beside an old step.
    """
    new, old = ckpt.with_name(ckpt.name + ".new"), ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    save_pretrained(trainer.model, new)
    tensors, groups = _opt_tensors(trainer.opt)
    tensors["torch_rng"] = torch.get_rng_state()  # unused here; format-1 readers expect it
    save_tensors(new / OPTIMIZER_FILE, tensors)
    meta = {"step": step, "param_groups": groups, "format": 2, **extra}
    if trainer.ema is not None:
        save_tensors(new / EMA_FILE, trainer.ema.state_dict())
    if trainer.disc is not None:
        save_tensors(new / CRITIC_FILE, trainer.disc.state_dict())
        tensors, meta["discriminator_param_groups"] = _opt_tensors(trainer.disc_opt)
        save_tensors(new / CRITIC_OPTIMIZER_FILE, tensors)
    write_recipe(new / RECIPE_FILE, recipe)
    (new / TRAINER_FILE).write_text(json.dumps(meta))
    shutil.rmtree(old, ignore_errors=True)
    if ckpt.exists():
        ckpt.rename(old)
    new.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def load_state(trainer: Trainer, ckpt: Path, log=print) -> dict:
    """Restore `trainer` from checkpoint/ (or checkpoint.old/ if a save was cut between its renames);
    returns trainer.json ({} if there is no checkpoint). What a format-1 checkpoint lacks (EMA) starts
    fresh, and `log` says so."""
    old = ckpt.with_name(ckpt.name + ".old")
    if not (ckpt / TRAINER_FILE).is_file():
        if not (old / TRAINER_FILE).is_file():
            return {}
        ckpt = old
    meta = json.loads((ckpt / TRAINER_FILE).read_text())
    saved = load(ckpt)  # checks the SHA-256
    mine, theirs = trainer.model.config.to_dict(), saved.config.to_dict()
    differ = [k for k in mine if k not in ("name", "training") and mine[k] != theirs[k]]
    if differ:
        raise ValueError(f"{ckpt / 'config.json'}: the checkpoint's model differs from the recipe's in "
                         + ", ".join(f"{k} ({theirs[k]} in the checkpoint, {mine[k]} in the recipe)" for k in differ))
    trainer.model.load_state_dict(saved.state_dict())
    t = trainer.t
    tensors = load_file(str(ckpt / OPTIMIZER_FILE))
    tensors.pop("torch_rng", None)  # every step re-seeds from (seed, step, rank) instead
    _load_opt(trainer.opt, tensors, meta["param_groups"], betas=tuple(t.betas), weight_decay=t.weight_decay)
    if trainer.ema is not None:
        if (ckpt / EMA_FILE).is_file():
            trainer.ema.load_state_dict(load_file(str(ckpt / EMA_FILE)))
        else:  # EMA switched on for a run that had it off: the average starts at the current weights
            trainer.ema.load_state_dict(trainer.model.state_dict())
            log(f"resuming {ckpt} at step {meta['step']}; starting fresh: EMA (from the current weights)")
    if trainer.disc is not None:
        if (ckpt / CRITIC_FILE).is_file():
            trainer.disc.load_state_dict(load_file(str(ckpt / CRITIC_FILE)))
            _load_opt(trainer.disc_opt, load_file(str(ckpt / CRITIC_OPTIMIZER_FILE)),
                      meta["discriminator_param_groups"], betas=tuple(t.betas), weight_decay=t.weight_decay)
        else:  # the critic switched on for a run that had none
            log(f"resuming {ckpt} at step {meta['step']}; starting fresh: the discriminator")
    return meta


def start_from(trainer: Trainer, weights: str, reinit: tuple[str, ...] = (), log=print) -> None:
    """A new run's model from `weights` (a packaged name or a checkpoint folder): every tensor whose name
    and shape match is copied, except those under a `reinit` prefix; the others (layers the recipe adds or
    resizes) keep their initialization, ConvNeXt blocks among them starting as identities, and `log` names
    them. The optimizer starts fresh."""
    source = stored_tensors(weights)
    target = trainer.model.state_dict()
    copied = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape
              and not any(k == p or k.startswith(p + ".") for p in reinit)}
    if not copied:
        raise ValueError(f"{weights}: no tensor fits the recipe's model")
    trainer.model.load_state_dict(copied, strict=False)
    grown = [name for name, module in trainer.model.named_modules() if isinstance(module, ConvNeXtBlock)
             and not any(k.startswith(name + ".") for k in copied)]
    for name in grown:
        trainer.model.get_submodule(name).start_as_identity()
    if trainer.ema is not None:
        trainer.ema.load_state_dict(trainer.model.state_dict())
    fresh = sorted({k.rsplit(".", 1)[0] for k in target if k not in copied})
    log(f"starting from {weights}: {len(copied)} of {len(target)} tensors copied"
        + (f"; initialized fresh: {', '.join(fresh)}" if fresh else "")
        + (f"; started as identities: {', '.join(grown)}" if grown else ""))
