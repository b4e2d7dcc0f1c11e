"""The codec: pitch (2 code slots) + causal encoder -> 35-stage residual VQ -> causal decoder of source-filter
magnitudes -> computed phases and overlap-add synthesis."""
from __future__ import annotations

import contextlib
import hashlib
import math
import operator

import torch
from torch import nn
import torch.nn.functional as F
from safetensors.torch import save as safetensors_bytes

from .config import PITCH_CODEBOOKS, CodecConfig
from .nn.networks import Decoder, Encoder, PhaseSynthesis, harmonic_contrast
from .nn.pitch import PitchCoder, causal_yin
from .nn.quantizer import QuantizerOutput, ResidualVQ
from .nn.stream_state import active
from .signal import as_batch, resample


def _autocast(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class Codec(nn.Module):
    """24 kHz speech codec: 12.5 frames/s, up to 37 codebooks of 1024 entries per frame.

    `encode` and `decode` are the inference API (no gradients); `forward` is the training path.
    """

    def __init__(self, config: CodecConfig | None = None):
        super().__init__()
        self.config = config or CodecConfig()
        cfg = self.config
        self.encoder = Encoder(cfg)
        self.quantizer = ResidualVQ(cfg.latent_dim, cfg.n_codebooks - PITCH_CODEBOOKS, cfg.codebook_size,
                                    cfg.codebook_dim)
        self.pitch = PitchCoder(cfg.hop_length, cfg.frame_size, sample_rate=cfg.sample_rate)
        self.decoder = Decoder(cfg)
        self.synthesis = PhaseSynthesis(cfg.synthesis_fft, cfg.synthesis_hop, cfg.frame_size // cfg.synthesis_hop,
                                        cfg.sample_rate, cfg.phase_iterations, cfg.harmonic_locking)
        # Frame offsets of the synthesis windows' centres: where the decoder reads the coded pitch contour.
        hops = torch.arange(cfg.frame_size // cfg.synthesis_hop)
        self.register_buffer("synthesis_centres", (hops + 1) * cfg.synthesis_hop - cfg.synthesis_fft // 2,
                             persistent=False)
        self._checksum: str | None = None
        self._float32_checked = False  # _check_dtype has passed since the last cast (_apply)
        self._loaded_as = None  # (checksum, name, training) of the checkpoint loaded into it: codec.checkpoint

    # ----------------------------------------------------------------------------------------- shape
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_size(self) -> int:
        return self.config.frame_size

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def n_codebooks(self) -> int:
        return self.config.n_codebooks

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def n_frames(self, n_samples: int) -> int:
        """Frames that `n_samples` at the model's rate give: ceil(n / frame_size)."""
        return math.ceil(n_samples / self.frame_size)

    @property
    def checksum(self) -> str:
        """SHA-256 of the weights as safetensors bytes: identifies the model in codes files."""
        if self._checksum is None:
            self._checksum = hashlib.sha256(self.weights_bytes()).hexdigest()
        return self._checksum

    def weights_bytes(self) -> bytes:
        """The weights as safetensors, floating-point tensors in config.weights_dtype: float16 halves the
        file, and weights read from one come back to the same bytes, so the checksum holds."""
        store = getattr(torch, self.config.weights_dtype)
        state = {k: (v.to(store) if v.is_floating_point() else v).detach().cpu().contiguous()
                 for k, v in self.state_dict().items()}
        return safetensors_bytes(state)

    def _weights_changed(self) -> None:
        self._checksum = None

    # ----------------------------------------------------------------------------------------- input
    def prepare(self, wav, sample_rate: int, mono: bool = True) -> torch.Tensor:
        """Any [T], [C, T] or [B, C, T] at any rate -> [B', 1, T'] at the model rate on the model device.

        mono=True averages channels; mono=False codes each channel as its own item (B' = B * C).
        """
        wav = as_batch(wav)
        if wav.numel() == 0:
            raise ValueError(f"audio is empty (shape {tuple(wav.shape)}): nothing to code")
        if not torch.isfinite(wav).all():
            raise ValueError("audio holds NaN or infinite samples")
        wav = resample(wav, _whole_rate(sample_rate), self.sample_rate)
        wav = wav.mean(dim=1, keepdim=True) if mono else wav.reshape(-1, 1, wav.shape[-1])
        return wav.to(self.device)

    def _apply(self, fn, *args, **kwargs):
        self._float32_checked = False  # .half(), .to(...) and the like cast through here: check again
        return super()._apply(fn, *args, **kwargs)

    def _check_dtype(self) -> None:
        # The pitch estimate, the quantizer and the phase synthesis compute in float32 whatever the weights
        # are, so weights of another type fail deep inside with a dtype mismatch: refuse them here instead.
        # Once per cast, not per call: walking every tensor cost a streamed frame ~0.5 ms.
        if self._float32_checked:
            return
        other = {t.dtype for t in (*self.parameters(), *self.buffers()) if t.is_floating_point()} - {torch.float32}
        self._float32_checked = not other
        if other:
            raise TypeError(f"this model's weights are {', '.join(sorted(map(str, other)))}; the codec runs in "
                            "float32: call model.float() (bf16=True runs the convolutions under bfloat16 autocast)")

    def _pad_to_frames(self, wav: torch.Tensor) -> torch.Tensor:
        extra = -wav.shape[-1] % self.frame_size
        return F.pad(wav, (0, extra))  # zeros after the end: causal layers never look at them early

    # ------------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def encode(self, wav, sample_rate: int, n_codebooks: int | None = None, mono: bool = True,
               bf16: bool = False, backend: str | None = None) -> torch.Tensor:
        """Audio -> codes (B, n_codebooks, ceil(T' / frame_size)), int64 in [0, codebook_size).

        wav: [T], [C, T] or [B, C, T] float audio at `sample_rate`. n_codebooks: a prefix depth, 1 to 37
        (8 = 1 kbit/s, 17 = 2.1 kbit/s, 37 = 4.6 kbit/s). bf16: run the convolutions under bfloat16
        autocast (faster on CPUs with AVX-512 bf16; over a quarter of the codes differ from float32's,
        mostly in the deeper stages: README). Empty audio is refused.
        """
        wav = self.prepare(wav, sample_rate, mono=mono)
        return self.encode_prepared(wav, n_codebooks, bf16=bf16, backend=backend)

    @torch.no_grad()
    def encode_prepared(self, wav: torch.Tensor, n_codebooks: int | None = None, bf16: bool = False,
                        backend: str | None = None, past: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 1, T] at the model rate -> codes; T need not be a multiple of frame_size. past: the frame of
        audio before `wav` (B, 1, frame_size), for a stream (the pitch estimate looks back); zeros if None."""
        n = self.n_codebooks if n_codebooks is None else int(n_codebooks)
        if not 1 <= n <= self.n_codebooks:
            raise ValueError(f"n_codebooks must be in [1, {self.n_codebooks}], got {n}")
        self._check_dtype()
        wav = self._pad_to_frames(wav)
        codes = self.pitch_codes(wav, past)[:, :n]
        if n <= PITCH_CODEBOOKS:
            return codes
        with _autocast(wav.device, bf16):
            latent = self.encoder(wav)
        return torch.cat([codes, self.quantizer.encode(latent.float(), n - PITCH_CODEBOOKS, backend=backend)], dim=1)

    def pitch_estimate(self, wav: torch.Tensor, past: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """wav (B, 1, T), T a multiple of frame_size -> causal YIN's (f0, voiced) per analysis hop (B, T // hop).
        past: one frame of audio before wav (the estimator looks back less than a frame), zeros if None."""
        cfg = self.config
        if past is None:
            past = wav.new_zeros(wav.shape[0], 1, cfg.frame_size)
        f0, voiced = causal_yin(torch.cat([past, wav], dim=-1), cfg.hop_length, cfg.frame_size, cfg.sample_rate)
        return f0[:, cfg.hops_per_frame:], voiced[:, cfg.hops_per_frame:]

    def pitch_codes(self, wav: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        """wav (B, 1, T), T a multiple of frame_size -> the pitch slots (B, 2, F); past as for pitch_estimate."""
        return self.pitch.encode(*self.pitch_estimate(wav, past))

    def decode_pitch(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, n, F) -> the decoded f0 (Hz, 0 unvoiced) at every synthesis hop (B, F * hops)."""
        return self.pitch.decode(codes[:, :PITCH_CODEBOOKS], self.synthesis_centres)

    def latent(self, codes: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """codes (B, n, F) -> the decoder's latent (B, D, F); zeros where no latent stage is given."""
        if codes.shape[1] <= PITCH_CODEBOOKS:
            return torch.zeros(codes.shape[0], self.config.latent_dim, codes.shape[-1], device=codes.device)
        return self.quantizer.decode(codes[:, PITCH_CODEBOOKS:], backend=backend)

    @torch.no_grad()
    def magnitudes(self, codes: torch.Tensor, bf16: bool = False, backend: str | None = None) -> torch.Tensor:
        """codes (B, n, F) -> the decoded log STFT magnitudes (B, F * hops, synthesis_fft // 2 + 1)."""
        return self._synthesis_inputs(codes, bf16, backend)[0]

    @torch.no_grad()
    def _synthesis_inputs(self, codes: torch.Tensor, bf16: bool = False, backend: str | None = None,
                          f0: torch.Tensor | None = None) -> tuple:
        """codes (B, n, F) -> (log magnitudes, (f0 (B, F * hops), harmonic share (B, F * hops, bins))).
        f0: the pitch to decode with instead of the coded one (diagnostics)."""
        self._check_dtype()
        codes = codes.to(self.device)
        latent = self.latent(codes, backend=backend)
        f0 = self.decode_pitch(codes) if f0 is None else f0
        with _autocast(latent.device, bf16):
            log_mag, share = self.decoder.head.render(*self.decoder.parameters_of(latent, f0), f0)
        log_mag = harmonic_contrast(log_mag.float(), f0, self.config.harmonic_contrast,
                                    self.config.sample_rate / self.config.synthesis_fft)
        return log_mag, (f0, share.float())

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, length: int | None = None, bf16: bool = False,
               backend: str | None = None) -> torch.Tensor:
        """codes (B, n, F) with any n in [1, 37] -> audio (B, 1, F * frame_size), or `length` samples.
        0 frames give empty audio (B, 1, 0)."""
        codes = self.check_codes(codes)
        if codes.shape[-1] == 0:  # nothing to synthesize (a backbone that ended at once): no samples
            self._check_dtype()
            wav = torch.zeros(codes.shape[0], 1, 0, device=self.device)
        else:
            log_mag, voicing = self._synthesis_inputs(codes, bf16, backend)
            wav = self.synthesis(log_mag, backend=backend, voicing=voicing)[:, None]
        if length is not None:
            if not 0 <= length <= wav.shape[-1]:
                raise ValueError(f"length {length} does not fit {codes.shape[-1]} frames ({wav.shape[-1]} samples)")
            wav = wav[..., :length]
        return wav

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Validate a codes tensor or array (B, n, F) of any integer type -> int64; name the first bad position."""
        codes = torch.as_tensor(codes)
        if codes.dim() == 2:
            codes = codes[None]
        if codes.dim() != 3:
            raise ValueError(f"codes must be (B, n_codebooks, frames), got shape {tuple(codes.shape)}")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise TypeError(f"codes must be integers, got {codes.dtype}")
        codes = codes.long()  # codes files hold uint8/uint16, which torch cannot compare
        if not 1 <= codes.shape[1] <= self.n_codebooks:
            raise ValueError(f"codes have {codes.shape[1]} codebooks; this model decodes 1 to {self.n_codebooks}")
        bad = (codes < 0) | (codes >= self.config.codebook_size)
        if bad.any():
            b, q, f = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"code {int(codes[b, q, f])} at (batch {b}, codebook {q}, frame {f}) is outside "
                             f"[0, {self.config.codebook_size})")
        return codes

    @torch.no_grad()
    def codebook_embeddings(self, n_codebooks: int | None = None) -> torch.Tensor:
        """The codebook vectors as a backbone sees them: (n_codebooks, codebook_size, latent_dim) float32.

        Slots 0 and 1 (the pitch) hold the values they code, as sinusoidal features (PitchCoder.features)
        at the RMS of the latent rows: nearby pitches get nearby rows. For a latent slot q >= 2, row [q, c]
        is entry c of stage q - 2 out-projected to the decoder's latent (bias included), so summing the
        latent rows a frame's codes pick gives exactly the decoder's input latent for that frame. Reshaped
        to (n * codebook_size, latent_dim) it initializes an embedding table indexed by
        `codec.tts.Vocabulary` ids (offsets=True), followed by its special tokens.
        """
        n = self.n_codebooks if n_codebooks is None else int(n_codebooks)
        latent = self.quantizer.entry_vectors(self.quantizer.n_codebooks).detach().float()
        pitch = self.pitch.features(self.config.codebook_size, self.config.latent_dim)
        pitch = pitch * latent.pow(2).mean().sqrt() / pitch.pow(2).mean().sqrt().clamp_min(1e-12)
        return torch.cat([pitch.to(latent.device), latent])[:n].clone()

    def streaming(self, batch_size: int = 1, n_codebooks: int | None = None, bf16: bool = False,
                  backend: str | None = None) -> "CodecStream":
        """Context manager for frame-by-frame coding with its own state (see CodecStream). backend: the
        kernels' (codec.kernels), for every call of the stream."""
        return CodecStream(self, batch_size, n_codebooks, bf16, backend)

    # -------------------------------------------------------------------------------------- training
    def forward(self, wav: torch.Tensor, n_codebooks: int | None = None, quantize: bool = True
                ) -> tuple[torch.Tensor, QuantizerOutput]:
        """Training path: wav (B, 1, T), T a multiple of frame_size -> (log magnitudes (B, H, bins), VQ output).

        n_codebooks counts the latent stages (35 at most). quantize=False feeds the decoder the encoder's
        unquantized latent (the VQ losses are still computed, so the codebooks follow it)."""
        self._weights_changed()
        latent = self.encoder(wav)
        q = self.quantizer(latent, n_codebooks)
        with torch.no_grad():
            f0 = self.decode_pitch(self.pitch_codes(wav))
        return self.decoder(q.quantized if quantize else latent, f0), q

    def analysis(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, 1, T) -> complex STFT (B, T // hop, bins) in the synthesis framing: hop h's window ends with it."""
        return self.synthesis.analysis(wav)

    def target_magnitudes(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, 1, T) -> |STFT| (B, T // hop, bins): what the decoder's magnitudes are trained towards."""
        return self.analysis(wav).abs()


def _whole_rate(sample_rate) -> int:
    """A sample rate as a positive int; 22050.5 or "16k" is an error, not silently truncated."""
    try:
        rate = operator.index(sample_rate)
    except TypeError:
        if not (isinstance(sample_rate, float) and sample_rate.is_integer()):
            raise ValueError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}") from None
        rate = int(sample_rate)
    if rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {rate}")
    return rate


class CodecStream:
    """Streaming encode and decode with its own state; outputs equal the offline ones.

    encode(chunk) takes audio at the model rate, [T] / [C, T] / [B, C, T] of any length, and returns the
    codes of the frames completed so far (B, n, f). flush() codes the last partial frame, zero padded as
    offline encoding pads it. decode(codes) takes any number of frames and returns the samples that are
    final: f * frame_size of them, less the synthesis delay on the first call; flush_decode() returns the
    last `synthesis_delay` samples. Together they equal an offline decode of all the codes.

    The state lives in this object: streams and offline calls on one model never see each other's past.
    """

    def __init__(self, model: Codec, batch_size: int, n_codebooks: int | None, bf16: bool, backend: str | None = None):
        self.model, self.batch_size, self.n_codebooks, self.bf16 = model, batch_size, n_codebooks, bf16
        self.backend = backend
        self._buffer: torch.Tensor | None = None
        self._states: dict | None = None
        self._past: torch.Tensor | None = None  # the last frame coded: the pitch estimate's context

    def __enter__(self) -> "CodecStream":
        self._states = {}
        self._buffer = torch.zeros(self.batch_size, 1, 0, device=self.model.device)
        self._past = torch.zeros(self.batch_size, 1, self.model.frame_size, device=self.model.device)
        return self

    def __exit__(self, *exc) -> None:
        self._states = self._buffer = self._past = None

    def _open(self):
        if self._states is None:
            raise RuntimeError("this stream is closed: use it inside its `with model.streaming(...)` block")
        return active(self._states)

    @property
    def pending(self) -> int:
        """Samples received but not yet coded (less than one frame)."""
        with self._open():
            return self._buffer.shape[-1]

    @torch.no_grad()
    def encode(self, chunk) -> torch.Tensor:
        with self._open():
            chunk = as_batch(chunk).mean(dim=1, keepdim=True).to(self.model.device)
            if chunk.shape[0] != self.batch_size:
                raise ValueError(f"stream opened for batch {self.batch_size}, got a chunk of batch {chunk.shape[0]}")
            buf = torch.cat([self._buffer, chunk], dim=-1)
            whole = buf.shape[-1] - buf.shape[-1] % self.model.frame_size
            self._buffer = buf[..., whole:]
            return self._encode_frames(buf[..., :whole])

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """Code the pending partial frame (zero padded); returns (B, n, 0 or 1)."""
        with self._open():
            buf, self._buffer = self._buffer, self._buffer[..., :0]
            return self._encode_frames(self.model._pad_to_frames(buf))

    def _encode_frames(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.shape[-1] == 0:
            n = self.n_codebooks or self.model.n_codebooks
            return torch.zeros(self.batch_size, n, 0, dtype=torch.long, device=self.model.device)
        codes = self.model.encode_prepared(wav, self.n_codebooks, bf16=self.bf16, backend=self.backend, past=self._past)
        self._past = wav[..., -self.model.frame_size:]
        return codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        with self._open():
            codes = self.model.check_codes(codes)
            if codes.shape[-1] == 0:
                return torch.zeros(codes.shape[0], 1, 0, device=self.model.device)
            return self.model.decode(codes, bf16=self.bf16, backend=self.backend)

    @torch.no_grad()
    def flush_decode(self) -> torch.Tensor:
        """The last synthesis_delay samples of everything decoded: (B, 1, delay), or (B, 1, 0) if nothing was."""
        with self._open():
            return self.model.synthesis.flush(self.batch_size, backend=self.backend)[:, None]
