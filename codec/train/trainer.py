"""One training step of the codec: decoded log magnitudes against the input's, plus the VQ losses; the
learning-rate schedule, the per-step seed, and the weights' moving average."""
from __future__ import annotations

import copy
import math

import numpy as np
import torch

from ..config import CodecConfig
from ..model import Codec
from ..nn.networks import linear_magnitudes
from .discriminator import SpectrogramDiscriminator, discriminator_loss, generator_losses
from .losses import MagnitudeLoss, MultiScaleMelLoss
from .recipe import Recipe, TrainRecipe

# The terms MagnitudeLoss returns, each weighted by the recipe's `NAME_weight`.
MAGNITUDE_TERMS = ("mel", "log", "convergence", "envelope", "loudness", "low")


def lr_at(step: int, t: TrainRecipe, lr: float | None = None) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr at the last step."""
    lr = t.lr if lr is None else lr
    if step < t.warmup:
        return lr * (step + 1) / t.warmup
    progress = min(1.0, (step - t.warmup) / max(1, t.steps - t.warmup))
    return lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one step on one rank: dropout and re-seeding draws depend on nothing else."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


class Trainer:
    """One training step of the codec: decoded log magnitudes against the input's, plus the VQ losses.

    `step(wav, step)` takes this process's batch wav (B, 1, T), T a multiple of the frame size, and returns
    float metrics. No waveform is made: the phase is computed at decoding time (codec.nn.phase), so the
    magnitudes are the whole target. Under DDP the net is wrapped; `model` is always the bare module.
    """

    def __init__(self, recipe: Recipe, device: torch.device, ddp: bool = False):
        t = recipe.train
        self.t, self.device = t, device
        cfg = CodecConfig.from_dict({**CodecConfig().to_dict(), **recipe.model})
        self.model = Codec(cfg).to(device).train()
        vq = self.model.quantizer  # plain attributes, not weights: the state_dict keys stay as shipped
        vq.dropout_prob, vq.reseed_every, vq.reseed_threshold, vq.codebook_rate = \
            float(t.quantizer_dropout), int(t.reseed_every), float(t.reseed_threshold), float(t.codebook_rate)
        vq.decoder_grad = bool(t.quantizer_decoder_grad)
        # fused: one pass over each tensor instead of a dozen (the step took 2x as long on the CPU)
        fused = device.type in ("cpu", "cuda")
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=t.lr, betas=tuple(t.betas),
                                     weight_decay=t.weight_decay, fused=fused)
        self.mel = MultiScaleMelLoss(cfg.sample_rate).to(device)  # validation, on decoded audio
        self.magnitude = MagnitudeLoss(cfg.synthesis_fft, cfg.sample_rate).to(device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False) if t.ema_decay else None
        self.disc = self.disc_opt = None
        if t.adversarial_weight or t.feature_weight:
            self.disc = SpectrogramDiscriminator(cfg.synthesis_fft, cfg.sample_rate).to(device)
            self.disc_opt = torch.optim.AdamW(self.disc.parameters(), lr=t.lr, betas=tuple(t.betas),
                                              weight_decay=t.weight_decay, fused=fused)
        self.world = torch.distributed.get_world_size() if ddp else 1
        self.net = self.model
        if ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.model, device_ids=[device.index] if device.type == "cuda" else None)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bool(self.t.bf16))

    def step(self, wav: torch.Tensor, step: int) -> dict:
        t = self.t
        for group in self.opt.param_groups:
            group["lr"] = lr_at(step, t)
        with self.autocast():
            log_mag, q = self.net(wav, quantize=step >= t.quantize_from)
        # The entries this forward re-seeded, if it re-seeded: on rank 0, whose codebooks the other ranks adopt.
        reseeded = self.model.quantizer.reseeded
        with torch.no_grad():
            target = self.model.target_magnitudes(wav)
        terms = self.magnitude(log_mag.float(), target)  # float32: log spectra of bf16 lose the quiet bins
        critic = self._critic(log_mag.float(), target, step) if self.disc is not None else {}
        if "adversarial" in critic:
            terms = {**terms, "adversarial": critic["adversarial"], "features": critic["features"]}
        synthesized = self._synthesized(log_mag.float(), target) if t.synthesis_weight else None
        weighted = [(t.adversarial_weight, terms.get("adversarial")), (t.feature_weight, terms.get("features")),
                    *self._magnitude_weighted(terms, 1.0),
                    *(self._magnitude_weighted(synthesized, t.synthesis_weight) if synthesized is not None else []),
                    (t.commitment_weight, q.commitment_loss), (t.codebook_weight, q.codebook_loss),
                    (t.residual_weight, q.residual_loss)]
        # A term at weight 0 is logged but left out of the sum, so the backward pass does not run through it.
        loss = sum(weight * term for weight, term in weighted if weight and term is not None)
        if synthesized is not None:
            terms = {**terms, **{f"synthesis_{name}": term for name, term in synthesized.items()}}
        out = dict(terms)
        if reseeded is not None:
            out["reseeded"] = reseeded
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.disc is not None:  # after the generator's backward, which also reached the critic's weights
            out["discriminator"] = self._critic_step(critic["loss"], step)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.opt.step()
        self._sync_reseeded_codes()
        if self.ema is not None:
            self._update_ema()
        out.update(loss=loss, commit=q.commitment_loss, codebook=q.codebook_loss, residual=q.residual_loss,
                   grad_norm=grad_norm, perplexity_mean=q.perplexity.mean(), perplexity_min=q.perplexity.min())
        return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()}

    def _magnitude_weighted(self, terms: dict, scale: float) -> list:
        """(weight, term) pairs of the magnitude terms, each recipe weight (`train.NAME_weight`) times `scale`."""
        return [(scale * getattr(self.t, f"{name}_weight"), terms[name]) for name in MAGNITUDE_TERMS]

    def _synthesized(self, log_mag: torch.Tensor, target: torch.Tensor) -> dict:
        """The magnitude terms of the audio decoding makes of `log_mag`: the phases it computes for them
        (held fixed: they are not differentiable), the inverse FFT and overlap-add, and the analysis again.
        An STFT with 83 % overlap is redundant, so the audio's magnitudes are not the predicted ones; this
        trains the ones that are heard. The gradient reaches the magnitudes through linear maps and |.|."""
        synthesis = self.model.synthesis
        wav = synthesis.from_spectra(linear_magnitudes(log_mag) * synthesis.phasors(log_mag.detach()))
        heard = self.model.analysis(wav[:, None]).abs()
        return self.magnitude(torch.log(heard.clamp_min(1e-8)), target)

    def _critic(self, log_mag: torch.Tensor, target: torch.Tensor, step: int) -> dict:
        """The critic's loss on real and (detached) decoded magnitudes, and from `adversarial_from` on the
        generator's terms through it, all with the critic's weights as they are before this step."""
        real_log = torch.log(target + 1e-5)
        with self.autocast():
            real = self.disc(real_log)
            out = {"loss": discriminator_loss(real, self.disc(log_mag.detach()))}
            if step >= self.t.adversarial_from:
                out["adversarial"], out["features"] = generator_losses(real, self.disc(log_mag))
        return out

    def _critic_step(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        for group in self.disc_opt.param_groups:
            group["lr"] = lr_at(step, self.t)
        self.disc_opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:  # the critic is not DDP-wrapped (it runs three times a step): average by hand
            for p in self.disc.parameters():
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world
        torch.nn.utils.clip_grad_norm_(self.disc.parameters(), self.t.grad_clip)
        self.disc_opt.step()
        return loss

    def _sync_reseeded_codes(self) -> None:
        """Dead codes are re-seeded from each rank's own batch: take rank 0's so the replicas stay equal."""
        vq = self.model.quantizer
        if self.net is not self.model and vq.reseeded is not None:
            torch.distributed.broadcast(vq.codebooks.data, 0)
            torch.distributed.broadcast(vq.usage, 0)

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = float(self.t.ema_decay)
        # The quantizer's entries move by k-means steps and unused ones are re-seeded: an average of them
        # fits neither the old entries nor the new, so the EMA keeps the model's quantizer as it is.
        for (name, e), p in zip(self.ema.named_parameters(), self.model.parameters()):
            if name.startswith("quantizer."):
                e.copy_(p)
            else:
                e.lerp_(p, 1 - d)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)  # usage statistics and counters are not averaged
        self.ema._weights_changed()

    @property
    def eval_model(self) -> Codec:
        return self.ema if self.ema is not None else self.model
