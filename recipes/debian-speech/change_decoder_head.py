"""Change the decoder head of a run's checkpoint in place, as the shipped run did twice (docs/model_card.md);
rerunning `codec train` on the run with a recipe that names the same `model` fields then resumes.

    python recipes/debian-speech/change_decoder_head.py RUN [--head-phase accumulate] [--harmonics 40]

--head-phase accumulate: the ISTFT head's phase outputs come to mean per-hop phase moves, so the phase
half of its output layer is zeroed (every bin starts as a steady tone at its centre); magnitudes are kept.
--harmonics N: adds the harmonic oscillator bank (codec.modules.HarmonicHead), freshly initialized (quiet),
whose parameters come last, so the AdamW moments of every other parameter are kept and it starts fresh.
The config, the weights' SHA-256 and trainer.json's parameter groups are rewritten to match.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from codec.audio import atomic_path
from codec.config import CodecConfig
from codec.model import Codec
from codec.weights import CHECKSUM_FILE, CONFIG_FILE, WEIGHTS_FILE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--head-phase", choices=["accumulate"], default=None)
    ap.add_argument("--harmonics", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0, help="for the new parameters")
    args = ap.parse_args()
    ckpt = Path(args.run) / "checkpoint"
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    state = load_file(str(ckpt / WEIGHTS_FILE))
    if args.head_phase:
        if config.get("head_phase", "free") == args.head_phase:
            raise SystemExit(f"{ckpt / CONFIG_FILE}: head_phase is already {args.head_phase!r}")
        for name in ("decoder.head.proj.weight", "decoder.head.proj.bias"):
            state[name][state[name].shape[0] // 2:] = 0  # rows: log magnitudes, then phases
        config["head_phase"] = args.head_phase
    if args.harmonics:
        if config.get("harmonics", 0):
            raise SystemExit(f"{ckpt / CONFIG_FILE}: the checkpoint has a harmonic head already")
        config["harmonics"] = args.harmonics
    torch.manual_seed(args.seed)
    model = Codec(CodecConfig.from_dict(config))  # the changed architecture; its new parameters fresh
    fresh = model.state_dict()
    added = [k for k in fresh if k not in state]
    state.update({k: fresh[k] for k in added})
    if added:
        meta = json.loads((ckpt / "trainer.json").read_text())
        # the new parameters are the last ones and have no moments yet
        meta["param_groups"][0]["params"] = list(range(sum(1 for _ in model.parameters())))
        with atomic_path(ckpt / "trainer.json") as tmp:
            tmp.write_text(json.dumps(meta))
        print(f"added {', '.join(added)}")
    model.load_state_dict(state, strict=True)  # the result must be a whole, consistent model
    with atomic_path(ckpt / WEIGHTS_FILE) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    (ckpt / CHECKSUM_FILE).write_text(hashlib.sha256((ckpt / WEIGHTS_FILE).read_bytes()).hexdigest() + "\n")
    (ckpt / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    print(f"{ckpt}: head_phase {config.get('head_phase', 'free')}, harmonics {config.get('harmonics', 0)}")


if __name__ == "__main__":
    main()
