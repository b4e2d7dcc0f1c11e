"""Token layouts for speech language models: codec codes <-> backbone token ids, and back.

Codes are `(B, n, F)` ints in `[0, K)` (n codebooks, F frames, K entries per codebook). A backbone sees
token ids from a `Vocabulary`:

    id = q * K + code       code `code` of codebook q (offsets=True: one table for all codebooks)
    id = code               (offsets=False: each codebook has its own table of K + 3 ids)
    PAD, BOS, EOS           the three ids after the codes: n*K, n*K + 1, n*K + 2 (or K, K + 1, K + 2)

Three layouts, each with an exact inverse:

    flatten  (B, n, F) -> (B, F * n)          frame after frame, codebooks 0..n-1 inside a frame
    delay    (B, n, F) -> (B, n, F + n - 1)   codebook q shifted right by q steps (MusicGen), PAD in gaps
    frames   (B, n, F) -> (B, F, n)           one frame per backbone step (for depth or flow heads)

`bos=True` / `eos=True` add one BOS / EOS token (flatten) or one step of n BOS / EOS tokens (delay,
frames). `to_codes` reads what a backbone emitted (padding, BOS, EOS, a shallower depth, a cut-off last
frame) and returns the codes to decode; an id that is no valid code gets an error naming its position.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

LAYOUTS = ("flatten", "delay", "frames")
N_SPECIALS = 3  # PAD, BOS, EOS


@dataclass(frozen=True)
class Vocabulary:
    """The id map of `n_codebooks` codebooks of `codebook_size` entries plus PAD, BOS and EOS."""

    n_codebooks: int = 37
    codebook_size: int = 1024
    offsets: bool = True  # codebook q's codes at q * K + code (one shared table), else at code

    def __post_init__(self):
        if self.n_codebooks < 1 or self.codebook_size < 2:
            raise ValueError(f"need n_codebooks >= 1 and codebook_size >= 2, got {self.n_codebooks}, "
                             f"{self.codebook_size}")

    @classmethod
    def for_model(cls, model, n_codebooks: int | None = None, offsets: bool = True) -> "Vocabulary":
        """The vocabulary of `model`'s first `n_codebooks` codebooks (all by default)."""
        n = model.n_codebooks if n_codebooks is None else int(n_codebooks)
        if not 1 <= n <= model.n_codebooks:
            raise ValueError(f"n_codebooks must be in [1, {model.n_codebooks}], got {n}")
        return cls(n, model.config.codebook_size, offsets)

    @property
    def n_codes(self) -> int:
        """Ids that are codes: n * K with offsets, K without."""
        return self.n_codebooks * self.codebook_size if self.offsets else self.codebook_size

    @property
    def pad(self) -> int:
        return self.n_codes

    @property
    def bos(self) -> int:
        return self.n_codes + 1

    @property
    def eos(self) -> int:
        return self.n_codes + 2

    @property
    def size(self) -> int:
        """Rows of the backbone's embedding table (and columns of its output head)."""
        return self.n_codes + N_SPECIALS

    def offset(self, codebook: int) -> int:
        return codebook * self.codebook_size if self.offsets else 0

    def describe(self) -> str:
        """The id map as a small table (what docs/tts_integration.md shows)."""
        K = self.codebook_size
        rows = [f"codebook {q}: ids {self.offset(q)} .. {self.offset(q) + K - 1}" for q in range(self.n_codebooks)]
        if self.n_codebooks > 4:
            rows = rows[:2] + ["..."] + rows[-1:]
        rows += [f"PAD: {self.pad}", f"BOS: {self.bos}", f"EOS: {self.eos}", f"vocabulary size: {self.size}"]
        return "\n".join(rows)

    # ------------------------------------------------------------------------------ codes <-> ids
    def _offsets(self, n: int, device) -> torch.Tensor:
        return torch.arange(n, device=device) * (self.codebook_size if self.offsets else 0)

    def encode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, n, F) in [0, K) -> ids (B, n, F); n must equal n_codebooks."""
        codes = self._check_codes(codes)
        return codes + self._offsets(codes.shape[1], codes.device)[:, None]

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, n, F), all codes of their codebook -> codes (B, n, F). Any other id is an error."""
        ids = _as_ids(ids, 3, "(B, n_codebooks, frames)")
        codes = ids - self._offsets(ids.shape[1], ids.device)[:, None]
        bad = (codes < 0) | (codes >= self.codebook_size)
        if bad.any():
            b, q, f = (int(i) for i in bad.nonzero()[0])
            token = int(ids[b, q, f])
            raise ValueError(f"token {token} at (batch {b}, codebook {q}, frame {f}) {self.explain(token, q)}")
        return codes

    def explain(self, token: int, codebook: int) -> str:
        """Why `token` is not a code of `codebook` (for error messages)."""
        lo = self.offset(codebook)
        names = {self.pad: "PAD", self.bos: "BOS", self.eos: "EOS"}
        what = f"is {names[token]}" if token in names else (
            "is outside the vocabulary" if not 0 <= token < self.size else "belongs to another codebook")
        return f"{what}; codebook {codebook} takes ids [{lo}, {lo + self.codebook_size}) (vocabulary size {self.size})"

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _as_ids(codes, 3, "(B, n_codebooks, frames)")
        if codes.shape[1] != self.n_codebooks:
            raise ValueError(f"codes have {codes.shape[1]} codebooks; this vocabulary has {self.n_codebooks}")
        bad = (codes < 0) | (codes >= self.codebook_size)
        if bad.any():
            b, q, f = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"code {int(codes[b, q, f])} at (batch {b}, codebook {q}, frame {f}) is outside "
                             f"[0, {self.codebook_size})")
        return codes


def _as_ids(x, dims: int, shape: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() != dims:
        raise ValueError(f"expected {shape}, got shape {tuple(x.shape)}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"token ids must be integers, got {x.dtype}")
    return x.long()


def _full(like: torch.Tensor, shape, value: int) -> torch.Tensor:
    return torch.full(shape, value, dtype=torch.long, device=like.device)


# ------------------------------------------------------------------------------------------ flatten
def flatten(codes: torch.Tensor, vocab: Vocabulary, bos: bool = False, eos: bool = False) -> torch.Tensor:
    """codes (B, n, F) -> ids (B, bos + F * n + eos): frame 0's codebooks 0..n-1, then frame 1's, ..."""
    ids = vocab.encode(codes).transpose(1, 2).reshape(codes.shape[0], -1)
    return _wrap(ids, vocab, bos, eos, dim=1)


def unflatten(ids: torch.Tensor, vocab: Vocabulary, bos: bool = False, eos: bool = False) -> torch.Tensor:
    """Exact inverse of `flatten` with the same flags: ids (B, L) -> codes (B, n, F)."""
    ids = _unwrap(_as_ids(ids, 2, "(B, tokens)"), vocab, bos, eos, dim=1)
    n = vocab.n_codebooks
    if ids.shape[1] % n:
        raise ValueError(f"{ids.shape[1]} code tokens are not whole frames of {n} codebooks")
    return vocab.decode(ids.reshape(ids.shape[0], -1, n).transpose(1, 2))


# -------------------------------------------------------------------------------------------- delay
def delay(codes: torch.Tensor, vocab: Vocabulary, bos: bool = False, eos: bool = False) -> torch.Tensor:
    """codes (B, n, F) -> ids (B, n, bos + F + n - 1 + eos): codebook q delayed by q steps, PAD in gaps.

    At step t the backbone emits codebook q of frame t - q, so frame f's deeper codebooks are predicted
    after its shallower ones were seen (MusicGen's delay pattern).
    """
    ids = vocab.encode(codes)
    batch, n, frames = ids.shape
    out = _full(ids, (batch, n, frames + n - 1), vocab.pad)
    for q in range(n):
        out[:, q, q: q + frames] = ids[:, q]
    return _wrap(out, vocab, bos, eos, dim=2)


def undelay(ids: torch.Tensor, vocab: Vocabulary, bos: bool = False, eos: bool = False) -> torch.Tensor:
    """Exact inverse of `delay` with the same flags: ids (B, n, S) -> codes (B, n, S - n + 1).

    The gap positions are not read (a backbone may emit anything there)."""
    ids = _unwrap(_as_ids(ids, 3, "(B, n_codebooks, steps)"), vocab, bos, eos, dim=2)
    n = vocab.n_codebooks
    if ids.shape[1] != n:
        raise ValueError(f"delayed ids have {ids.shape[1]} codebook rows; this vocabulary has {n}")
    frames = ids.shape[2] - (n - 1)
    if frames < 0:
        raise ValueError(f"{ids.shape[2]} steps hold no frame: the delay pattern of {n} codebooks needs >= {n - 1}")
    return vocab.decode(_undelay_grid(ids, frames))


def _undelay_grid(ids: torch.Tensor, frames: int) -> torch.Tensor:
    return torch.stack([ids[:, q, q: q + frames] for q in range(ids.shape[1])], dim=1)


# ------------------------------------------------------------------------------------------- frames
def frames(codes: torch.Tensor, vocab: Vocabulary, bos: bool = False, eos: bool = False) -> torch.Tensor:
    """codes (B, n, F) -> ids (B, bos + F + eos, n): one frame of n ids per backbone step."""
    return _wrap(vocab.encode(codes).transpose(1, 2), vocab, bos, eos, dim=1)


def unframes(ids: torch.Tensor, vocab: Vocabulary, bos: bool = False, eos: bool = False) -> torch.Tensor:
    """Exact inverse of `frames` with the same flags: ids (B, S, n) -> codes (B, n, S)."""
    ids = _unwrap(_as_ids(ids, 3, "(B, steps, n_codebooks)"), vocab, bos, eos, dim=1)
    if ids.shape[2] != vocab.n_codebooks:
        raise ValueError(f"steps hold {ids.shape[2]} ids; this vocabulary has {vocab.n_codebooks} codebooks")
    return vocab.decode(ids.transpose(1, 2))


# -------------------------------------------------------------------------------- BOS / EOS framing
def _wrap(ids: torch.Tensor, vocab: Vocabulary, bos: bool, eos: bool, dim: int) -> torch.Tensor:
    """Add one BOS (EOS) slice before (after) `ids` along `dim`: a token (2-D) or a whole step (3-D)."""
    shape = list(ids.shape)
    shape[dim] = 1
    parts = ([_full(ids, shape, vocab.bos)] if bos else []) + [ids] + ([_full(ids, shape, vocab.eos)] if eos else [])
    return torch.cat(parts, dim=dim)


def _unwrap(ids: torch.Tensor, vocab: Vocabulary, bos: bool, eos: bool, dim: int) -> torch.Tensor:
    length = ids.shape[dim]
    if length < bos + eos:
        raise ValueError(f"{length} steps cannot hold the BOS/EOS the layout promises")
    for flag, index, token, name in ((bos, 0, vocab.bos, "BOS"), (eos, length - 1, vocab.eos, "EOS")):
        if flag:
            edge = ids.select(dim, index)
            if not (edge == token).all():
                found = edge.flatten()[(edge != token).flatten()][0].item()
                raise ValueError(f"expected {name} ({token}) at step {index}, found {found}")
    return ids.narrow(dim, int(bos), length - bos - eos)


# --------------------------------------------------------------------- what a backbone emitted
def to_codes(ids: torch.Tensor, vocab: Vocabulary, layout: str = "flatten",
             n_codebooks: int | None = None) -> list[torch.Tensor]:
    """Read a batch of backbone output -> one codes tensor (depth, frames) per item, ready to decode.

    ids: (B, L) for "flatten", (B, n, S) for "delay", (B, S, n) for "frames". Per item:
      - steps (or tokens) that are PAD or BOS are skipped wherever they are (left or right padding);
      - the first EOS ends the item (for delay/frames: EOS as codebook 0 of a frame);
      - a frame cut off by the end of the sequence or by EOS is dropped (it cannot be decoded);
      - depth: the first `n_codebooks` codebooks (default all), fewer where a frame's codebooks stop
        early (a special id at codebook d keeps d codebooks for the whole item: decoding needs one depth);
      - any other id that is not a code of its codebook raises ValueError naming (item, step, codebook).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    depth = vocab.n_codebooks if n_codebooks is None else int(n_codebooks)
    if not 1 <= depth <= vocab.n_codebooks:
        raise ValueError(f"n_codebooks must be in [1, {vocab.n_codebooks}], got {depth}")
    if layout == "flatten":
        grids = _flat_grids(_as_ids(ids, 2, "(B, tokens)"), vocab)
    elif layout == "frames":
        ids = _as_ids(ids, 3, "(B, steps, n_codebooks)")
        _check_rows(ids.shape[2], vocab)
        steps = torch.arange(ids.shape[1])[:, None].expand(-1, ids.shape[2])
        grids = [(item, steps) for item in ids]
    else:
        ids = _as_ids(ids, 3, "(B, n_codebooks, steps)")
        _check_rows(ids.shape[1], vocab)
        n, frames_ = ids.shape[1], max(0, ids.shape[2] - ids.shape[1] + 1)
        # Frame f's codebook q sits at step f + q: undelay ids and step numbers alike.
        steps = torch.arange(frames_)[:, None] + torch.arange(n)[None, :]
        grids = [(_undelay_grid(item[None], frames_)[0].T, steps) for item in ids]
    return [_read_item(b, grid, steps, vocab, depth) for b, (grid, steps) in enumerate(grids)]


def _check_rows(n: int, vocab: Vocabulary) -> None:
    if n != vocab.n_codebooks:
        raise ValueError(f"backbone output has {n} codebooks per step; this vocabulary has {vocab.n_codebooks}")


def _flat_grids(ids: torch.Tensor, vocab: Vocabulary) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Flat ids (B, L) -> per item (frames (F, n), their positions (F, n)) after PAD/BOS/EOS handling."""
    n, out = vocab.n_codebooks, []
    for item in ids:
        pos = torch.arange(len(item))
        eos = (item == vocab.eos).nonzero()
        if len(eos):
            item, pos = item[: eos[0, 0]], pos[: eos[0, 0]]
        keep = (item != vocab.pad) & (item != vocab.bos)
        item, pos = item[keep], pos[keep]
        whole = len(item) - len(item) % n  # a cut-off last frame cannot be decoded: dropped
        out.append((item[:whole].reshape(-1, n), pos[:whole].reshape(-1, n)))
    return out


def _read_item(b: int, grid: torch.Tensor, where: torch.Tensor, vocab: Vocabulary, depth: int) -> torch.Tensor:
    """grid (F, n) ids of one item, where (F, n) their step numbers -> codes (depth', F')."""
    specials = (vocab.pad, vocab.bos, vocab.eos)
    first = grid[:, 0] if len(grid) else grid.new_zeros(0)
    eos = (first == vocab.eos).nonzero()
    stop = int(eos[0, 0]) if len(eos) else len(grid)
    rows = (first[:stop] != vocab.pad) & (first[:stop] != vocab.bos)
    grid, where = grid[:stop][rows], where[:stop][rows]
    grid, where = grid[:, :depth], where[:, :depth]
    is_special = torch.zeros_like(grid, dtype=torch.bool)
    for s in specials:
        is_special |= grid == s
    if is_special.any():
        # A frame whose codebooks stop early caps the item's depth at its number of leading codes.
        depth = int(is_special.long().argmax(dim=1)[is_special.any(dim=1)].min())
        grid, where = grid[:, :depth], where[:, :depth]
    if depth == 0:
        step = int(where.flatten()[0]) if where.numel() else 0
        raise ValueError(f"item {b}: a frame at step {step} has no codebook-0 code")
    codes = grid - vocab._offsets(grid.shape[1], grid.device)[None]
    bad = (codes < 0) | (codes >= vocab.codebook_size)
    if bad.any():
        f, q = (int(i) for i in bad.nonzero()[0])
        token = int(grid[f, q])
        raise ValueError(f"token {token} at (item {b}, step {int(where[f, q])}, codebook {q}) "
                         f"{vocab.explain(token, q)}")
    return codes.T.contiguous()


def decode_tokens(model, ids: torch.Tensor, vocab: Vocabulary | None = None, layout: str = "flatten",
                  n_codebooks: int | None = None, bf16: bool = False) -> list[torch.Tensor]:
    """Backbone output -> one waveform (1, frames * frame_size) per item, decoded by `model`; see `to_codes`
    for how PAD, BOS, EOS, partial depth and cut-off frames are read. vocab: default, all of the model's
    codebooks, with offsets."""
    vocab = vocab or Vocabulary.for_model(model)
    if vocab.codebook_size != model.config.codebook_size or vocab.n_codebooks > model.n_codebooks:
        raise ValueError(f"vocabulary of {vocab.n_codebooks} x {vocab.codebook_size} does not fit this model "
                         f"({model.n_codebooks} x {model.config.codebook_size})")
    out = []
    for codes in to_codes(ids, vocab, layout, n_codebooks):
        if codes.shape[-1] == 0:
            out.append(torch.zeros(1, 0, device=model.device))
        else:
            out.append(model.decode(codes[None], bf16=bf16)[0])
    return out
