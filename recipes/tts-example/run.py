"""End to end on a CPU in a few minutes: audio -> codes -> tiny next-frame transformer -> sampled codes -> wav.

    python recipes/tts-example/run.py [--out runs/tts-example] [--steps 100] [--model default]

What a backbone author needs, with every shape printed as it goes (see docs/tts_integration.md):
  1. tokenize clips to Parquet with `codec.tts.tokenize` (what `codec tokenize DIR -o OUT` runs);
  2. lay the codes out one frame per backbone step: ids (B, S, 37) from `codec.tts.frames`;
  3. embed a step as the sum of its 37 token embeddings, the table initialized from
     `model.codebook_embeddings()` (so step embedding = the decoder's latent for that frame);
  4. train a tiny causal transformer whose head predicts the next frame's 37 tokens (+ EOS);
  5. sample frame by frame until EOS, decode with `codec.tts.decode_tokens(model, ids, vocab, "frames")`, write a wav.
The model learns little in 100 steps: the point is the shapes and the calls, not the audio.
"""
from __future__ import annotations

import argparse
import sys
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import codec
from codec import tts as T
from codec.io.audio import write_audio
from codec.tts import tokenize as tk

ROOT = Path(__file__).resolve().parents[2]


def voiced(seconds: float, f0: float, seed: int, rate: int = 24000) -> np.ndarray:
    """A speech-like test clip: harmonics of a gliding f0 under two formants, syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))) / rate
    x = sum((np.exp(-((k * f0 - 700) / 300) ** 2) + 0.5 * np.exp(-((k * f0 - 1800) / 400) ** 2) + 0.02)
            * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, int(4000 / f0)))
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2)
    return (0.1 * x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


class NextFrameLM(nn.Module):
    """Causal transformer over frames: ids (B, S, n) -> logits (B, S, n, K + 1) for the next frame.

    Input: a step's n token embeddings are summed (B, S, n, latent) -> (B, S, latent), then projected to
    d_model. Output: per codebook q, K code classes plus one EOS class.
    """

    def __init__(self, vocab: T.Vocabulary, table: torch.Tensor, d_model: int = 128, layers: int = 2,
                 max_steps: int = 512):
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding.from_pretrained(table, freeze=False)  # (vocab.size, latent)
        self.proj = nn.Linear(table.shape[1], d_model)
        self.pos = nn.Parameter(torch.zeros(max_steps, d_model))
        block = nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab.n_codebooks * (vocab.codebook_size + 1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, s, n = ids.shape
        h = self.proj(self.embed(ids).sum(dim=2)) + self.pos[:s]  # (B, S, d_model)
        mask = nn.Transformer.generate_square_subsequent_mask(s)  # causal: step t sees steps <= t
        h = self.body(h, mask=mask, is_causal=True)
        return self.head(h).view(b, s, n, self.vocab.codebook_size + 1)


def ids_to_classes(ids: torch.Tensor, vocab: T.Vocabulary) -> torch.Tensor:
    """Target ids (B, S, n) -> classes: code c of codebook q -> c; EOS -> K; PAD -> -100 (ignored by the loss)."""
    classes = ids - vocab._offsets(ids.shape[-1], ids.device)
    classes = torch.where(ids == vocab.eos, vocab.codebook_size, classes)
    return torch.where(ids == vocab.pad, -100, classes)


def classes_to_ids(classes: torch.Tensor, vocab: T.Vocabulary) -> torch.Tensor:
    ids = classes + vocab._offsets(classes.shape[-1], classes.device)
    return torch.where(classes == vocab.codebook_size, vocab.eos, ids)


def tokenize_clips(model, out: Path) -> list[dict]:
    """Step 1: the real speech in tests/data plus generated voices at other rates -> the dataset's rows."""
    clips = Path(tempfile.mkdtemp(prefix="tts-example-"))
    shutil.copy(ROOT / "tests/data/speech.flac", clips / "speech.flac")
    for i, (f0, rate) in enumerate([(110, 16000), (140, 24000), (210, 22050)]):
        write_audio(clips / f"voice{i}.wav", voiced(3.0, f0, seed=i, rate=rate), rate)
    tk.tokenize([str(clips)], out / "tokens", model, shard_size=2)  # = `codec tokenize CLIPS -o OUT/tokens`
    tk.write_index(out / "tokens", model)  # torchrun runs: rank 0 does this once every rank is done
    rows = list(tk.read_dataset(out / "tokens"))
    for r in rows:
        print(f"tokenized {Path(r['source']).name}: codes {r['codes'].shape} (codebooks, frames), "
              f"{r['duration']:.2f} s -> {r['samples']} samples at {model.sample_rate} Hz")
    return rows


def frames_batch(rows: list[dict], vocab: T.Vocabulary) -> torch.Tensor:
    """Step 2: one frame per step, BOS step first, EOS step last, PAD steps to batch -> ids (B, S, n)."""
    seqs = [T.frames(torch.from_numpy(r["codes"])[None], vocab, bos=True, eos=True)[0] for r in rows]
    batch = torch.full((len(seqs), max(len(s) for s in seqs), vocab.n_codebooks), vocab.pad)
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = s
    first = torch.from_numpy(rows[0]["codes"])[None]
    print(f"training batch: ids {tuple(batch.shape)} (B, steps, codebooks); "
          f"flatten would be {tuple(T.flatten(first, vocab).shape)}, delay {tuple(T.delay(first, vocab).shape)} "
          "for item 0")
    return batch


def teacher_forcing(lm: NextFrameLM, batch: torch.Tensor, vocab: T.Vocabulary, steps: int) -> None:
    """Step 4: steps 0..S-2 predict steps 1..S-1 (all the tokens of the next frame at once)."""
    inputs, targets = batch[:, :-1], ids_to_classes(batch[:, 1:], vocab)
    inputs = torch.where(inputs == vocab.eos, vocab.pad, inputs)  # an EOS step is never an input
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-3)
    for step in range(steps):
        logits = lm(inputs)  # (B, S - 1, 37, 1025)
        loss = nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  (uniform would be {np.log(vocab.codebook_size + 1):.3f})")


def sample(lm: NextFrameLM, vocab: T.Vocabulary, frames: int) -> torch.Tensor:
    """Step 5: frame by frame (all the codebooks of a frame in parallel) until EOS -> ids (1, S, n)."""
    lm.eval()
    ids = torch.full((1, 1, vocab.n_codebooks), vocab.bos)
    with torch.no_grad():
        for _ in range(frames):
            logits = lm(ids)[:, -1] / 0.8  # (1, 37, 1025)
            classes = torch.distributions.Categorical(logits=logits).sample()  # (1, 37)
            ids = torch.cat([ids, classes_to_ids(classes, vocab)[:, None]], dim=1)
            if classes[0, 0] == vocab.codebook_size:  # EOS at codebook 0 ends the item
                break
    print(f"sampled ids {tuple(ids.shape)} (B, steps, codebooks), {ids.shape[1] - 1} steps after BOS")
    return ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", default="runs/tts-example")
    p.add_argument("--model", default=None, help="codec checkpoint (default: the shipped model)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--frames", type=int, default=50, help="frames to sample (4 s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    tic = time.perf_counter()
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = codec.load(args.model)
    rows = tokenize_clips(model, out)
    vocab = T.Vocabulary.for_model(model)  # 37 x 1024 ids with offsets, then PAD, BOS, EOS
    print(vocab.describe())
    batch = frames_batch(rows, vocab)

    # 3. Embedding table: codebook vectors (37 * 1024, latent), then 3 special rows.
    emb = model.codebook_embeddings()  # (37, 1024, latent): summing a frame's rows = decoder latent
    table = torch.cat([emb.reshape(-1, emb.shape[-1]), 0.02 * torch.randn(3, emb.shape[-1])])
    assert table.shape[0] == vocab.size
    lm = NextFrameLM(vocab, table, max_steps=max(batch.shape[1], args.frames + 2))
    print(f"backbone: {sum(p.numel() for p in lm.parameters()) / 1e6:.1f} M parameters, embedding {tuple(table.shape)}")
    teacher_forcing(lm, batch, vocab, args.steps)
    ids = sample(lm, vocab, args.frames)
    (wav,) = T.decode_tokens(model, ids, vocab, layout="frames")  # BOS skipped, EOS / cut-off frames dropped
    (wav8,) = T.decode_tokens(model, ids, vocab, layout="frames", n_codebooks=8)  # 1 kbit/s depth
    write_audio(out / "sample.wav", wav.numpy(), model.sample_rate)
    write_audio(out / "sample_8cb.wav", wav8.numpy(), model.sample_rate)
    print(f"decoded {tuple(wav.shape)} -> {out / 'sample.wav'} ({wav.shape[-1] / model.sample_rate:.2f} s); "
          f"8 codebooks -> {out / 'sample_8cb.wav'}")
    print(f"done in {time.perf_counter() - tic:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
