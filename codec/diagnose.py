"""`codec diagnose phase|head|pitch|rvq|envelope|fit|stream CORPUS`: measurements of the model's parts on a corpus
split, each printed as a Markdown table.

    phase   is it the magnitudes or the phase? In the decoder's STFT framing: the decoded audio, the same with
            the other harmonic-locking setting (RTPGHI's phases in every bin, or the voiced bins' phases
            taken from their harmonics: model.harmonic_locking), the same without the Griffin-Lim
            passes and with twice as many, the same with RTPGHI's heap over the bins within 100 dB of their
            hop's loudest (nearly all; the decoder's heap is narrower, and faster), the reference's magnitudes
            with the computed phase (the phase's ceiling), the same with a 1.5x longer synthesis window
            (whether the window's length limits it), the decoded magnitudes with the reference's phase, and
            the decoder given the encoder's pitch estimate itself instead of its two code slots (the pitch
            coding's cost); each audio's log-magnitude L1 to the reference, PESQ-WB and STOI, averaged over
            the clips. A phase moves the magnitudes that overlap-add leaves: the reference's phase carries
            some of the reference's magnitudes into the decoded ones, so its row is no ceiling of the decoded
            magnitudes alone.
    head    is it the network or the head's form? The decoder's source-filter head (an envelope and a
            harmonic share per hop) fitted directly to each clip's magnitudes, beside the network's
            output from the quantized and the unquantized latent, from a latent fitted to the clip
            through the decoder (the best input for these decoder weights), and from a copy of the decoder
            whose weights are trained on the clip (what the decoder's form can render), the two halves
            swapped between fit and network, and the fitted envelope put in only the loud hops, only the
            quiet hops, or only below 1 kHz (where its error is heard); log-magnitude L1, PESQ-WB and STOI.
    pitch   how well the pitch is coded and heard: the coded contour against the encoder's estimate, and the
            estimate on the decoded audio against the input's, in cents on hops both call voiced (median,
            95th percentile, share within 50 cents) and the share of hops whose voicing disagrees.
    rvq     how much of the latent the residual VQ keeps at each depth: ||latent - quantized|| / ||latent||
            for 1 to 35 latent stages (code slots 2 to 36). A healthy RVQ falls with every stage.
    envelope  is it the networks or the latent's size? Each frame's envelopes (log energies of 64 mel bands
            in each of its synthesis hops) coded linearly: kept to the first 32 ... 256 principal components
            fitted on training clips, and coded at the rate-distortion bound of a Gaussian source with those
            components' variances at the latent's bits at 8, 17 and 37 codebooks (what the best code of
            the envelope alone could reach at that rate, were it Gaussian), against the decoded audio's at
            8, 17 and 37 codebooks, as mean absolute error in dB over the voiced and unvoiced frames of
            held-out clips. The latent has 256 values a frame.
    fit     does it underfit or overfit? The decoded audio's PESQ-WB and STOI per source of every split
            (--split is not read): a model that scores as well on the clips it trained on as on held-out
            ones of the same recording style underfits, so more steps or capacity, not more data, is the lever.
    stream  how far frame-by-frame decoding drifts from offline decoding: the clips concatenated up to
            --seconds, the largest difference relative to the peak and the SNR, over the first 10 s, all of
            it, and the median and the worst of its seconds (a local event, or a difference that grows).
"""
from __future__ import annotations

import copy

import librosa
import numpy as np
import torch

from .config import PITCH_CODEBOOKS
from .eval.metrics import NotComputable, pesq, stoi
from .io.corpus import Corpus, select_split
from .nn.networks import PhaseSynthesis
from .nn.pitch import analysis_centres
from .train.losses import LOW_BAND_HZ

RVQ_DEPTHS = (1, 2, 4, 6, 15, 35)  # latent stages: with the pitch slots, 3, 4, 6, 8, 17 and 37 codebooks
# what each measurement reads by default: clips spread over the split, seconds of each (stream: in all)
DEFAULTS = {"phase": (8, 6.0), "head": (6, 6.0), "pitch": (16, 6.0), "rvq": (16, None), "envelope": (40, 6.0),
            "fit": (6, 6.0), "stream": (None, 60.0)}  # fit: clips of each source
SPLITS = ("train", "valid", "test")
ENVELOPE_BANDS = 64
PCA_SIZES = (32, 64, 128, 256)
ENVELOPE_DEPTHS = (8, 17, 37)  # codebooks the envelope measurement decodes at
PCA_CLIPS = 300  # training clips the principal components are fitted on (about 7,000 frames)
SILENT = -7.0  # mean log band energy under which a frame is silence and left out
HEAD_FIT_STEPS = 300  # Adam steps fitting the head's parameters to a clip: the fit's L1 has levelled off
LATENT_FIT_STEP = 0.01  # the latent fit's Adam step, relative to the latent's RMS
WIDE_HEAP_DB = 100.0  # phase: a heap over nearly every bin, against the decoder's narrower one
WIDER_WINDOW = 1.5  # phase: the computed phase's ceiling with a synthesis window this much longer (same hop)
LOUD_DB = 40.0  # hops within this of a clip's loudest are its loud hops (the rest: pauses, silence)


def _clips(corpus: Corpus, n: int) -> list[int]:
    """`n` clip indices spread evenly over the split."""
    return [int(i) for i in np.linspace(0, len(corpus) - 1, min(n, len(corpus))).astype(int)]


def _crop(model, corpus: Corpus, i: int, seconds: float | None) -> torch.Tensor:
    x = corpus.audio(i)
    x = x if seconds is None else x[: int(seconds * model.sample_rate)]
    return model._pad_to_frames(model.prepare(torch.from_numpy(x), corpus.sample_rate))


def _with_phase(model, magnitude: torch.Tensor, phase_of: torch.Tensor) -> torch.Tensor:
    """|S| (B, H, K) with the phase of phase_of's STFT in the same framing -> audio (B, H * hop)."""
    return model.synthesis.from_spectra(torch.polar(magnitude, torch.angle(model.analysis(phase_of))))


def _synthesis_with(model, log_mag: torch.Tensor, voicing: tuple, **settings) -> torch.Tensor:
    """The decoder's synthesis with some of its settings (iterations, floor_db, locking) changed for one call."""
    saved = {name: getattr(model.synthesis, name) for name in settings}
    for name, value in settings.items():
        setattr(model.synthesis, name, value)
    try:
        return model.synthesis(log_mag, voicing=voicing)
    finally:
        for name, value in saved.items():
            setattr(model.synthesis, name, value)


def _wider_window_ceiling(model, ref: torch.Tensor) -> torch.Tensor:
    """ref (1, 1, T) rebuilt from its own STFT magnitudes with a synthesis window WIDER_WINDOW times the
    decoder's (same hop, same phase method): whether the window's length limits the computed phase."""
    cfg = model.config
    n_fft = int(round(WIDER_WINDOW * cfg.synthesis_fft / cfg.synthesis_hop)) * cfg.synthesis_hop
    synthesis = PhaseSynthesis(n_fft, cfg.synthesis_hop, model.synthesis.block, cfg.sample_rate, cfg.phase_iterations)
    return synthesis(torch.log(synthesis.analysis(ref).abs() + 1e-5))


def _phase_outputs(model, ref: torch.Tensor) -> list[torch.Tensor]:
    """The rebuilt versions of `ref` (1, 1, T) that `phase` scores, each (1, T)."""
    codes = model.encode_prepared(ref)
    log_mag, voicing = model._synthesis_inputs(codes)
    decoded = model.synthesis(log_mag, voicing=voicing)
    toggled = _synthesis_with(model, log_mag, voicing, locking=not model.synthesis.locking)
    plain = _synthesis_with(model, log_mag, voicing, iterations=0)
    doubled = _synthesis_with(model, log_mag, voicing, iterations=2 * model.synthesis.iterations)
    wide_heap = _synthesis_with(model, log_mag, voicing, floor_db=WIDE_HEAP_DB)
    computed = model.synthesis(torch.log(model.target_magnitudes(ref) + 1e-5))
    computed_wider = _wider_window_ceiling(model, ref)
    swapped = _with_phase(model, torch.exp(log_mag), ref)
    f0 = model.pitch.uncoded(*model.pitch_estimate(ref), model.synthesis_centres)
    log_mag, voicing = model._synthesis_inputs(codes, f0=f0)
    uncoded = model.synthesis(log_mag, voicing=voicing)
    return [decoded, toggled, plain, doubled, wide_heap, computed, computed_wider, swapped, uncoded]


def phase(model, corpus: Corpus, clips: int, seconds: float) -> str:
    toggled = ("decoded, phases not locked to the harmonics" if model.synthesis.locking else
               "decoded, voiced bins' phases locked to their harmonics")
    names = ("decoded", toggled, "decoded, no Griffin-Lim passes",
             f"decoded, twice the Griffin-Lim passes ({2 * model.synthesis.iterations}, not "
             f"{model.synthesis.iterations})",
             f"decoded, RTPGHI's heap over the bins within {WIDE_HEAP_DB:.0f} dB of their hop's loudest "
             f"(not {model.synthesis.floor_db:.0f})",
             "reference magnitude, computed phase",
             f"reference magnitude, computed phase, a {WIDER_WINDOW:g}x longer synthesis window",
             "decoded magnitude, reference phase", "decoded with the encoder's pitch estimate, uncoded")
    return _scored(model, corpus, clips, seconds, "audio", names,
                   lambda m, ref: [(out, (_magnitude_error(m, out, ref),)) for out in _phase_outputs(m, ref)],
                   extra=("its log-magnitude L1 to the reference",))


def _magnitude_error(model, out: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean |log|STFT(out)| - log|STFT(ref)||, out (1, T), ref (1, 1, T), in the decoder's framing: what the
    audio's magnitudes are after overlap-add, which a phase can move (the STFT of a signal is redundant)."""
    a, b = (torch.log(model.target_magnitudes(x) + 1e-5) for x in (out[:, None], ref))
    hops = min(a.shape[1], b.shape[1])
    return float((a[:, :hops] - b[:, :hops]).abs().mean())


def _scored(model, corpus: Corpus, clips: int, seconds: float, header: str, names: tuple, versions,
            extra: tuple = ()) -> str:
    """A table of the rebuilt versions of each clip: `versions(model, ref)` -> [(audio (1, T), values of
    the `extra` columns)] in the order of `names`; PESQ-WB and STOI after them; means over the clips."""
    scores = {name: [] for name in names}
    rate = model.sample_rate
    for i in _clips(corpus, clips):
        ref = _crop(model, corpus, i, seconds)
        with torch.no_grad():
            outputs = versions(model, ref)
        r = ref[0, 0].numpy()
        for name, (out, values) in zip(names, outputs):
            deg = out[0].numpy()
            scores[name].append((*values, _score(pesq, r, deg, rate), _score(stoi, r, deg, rate)))
    lines = [f"| {header} | " + " | ".join([*extra, "PESQ-WB", "STOI"]) + " |", "|---|" + "---:|" * (len(extra) + 2)]
    for name, values in scores.items():
        means = np.nanmean(np.array(values, dtype=float), axis=0)
        cells = [f"{m:.3f}" for m in means[: len(extra)]] + [f"{means[-2]:.2f}", f"{means[-1]:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _adam_fit(params: list[torch.Tensor], render, target: torch.Tensor, lr: float) -> None:
    """HEAD_FIT_STEPS Adam steps on `params` (in place) lowering the L1 between `render()`'s log magnitudes
    and `target`'s."""
    opt = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        for _ in range(HEAD_FIT_STEPS):
            loss = (render() - target).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()


def _fit_head(model, envelope: torch.Tensor, share_logits: torch.Tensor, f0: torch.Tensor, target: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's parameters fitted to one clip's log magnitudes, from the network's."""
    envelope, share_logits = envelope.clone().requires_grad_(), share_logits.clone().requires_grad_()
    _adam_fit([envelope, share_logits], lambda: model.decoder.head.render(envelope, share_logits, f0)[0], target,
              lr=0.05)
    return envelope.detach(), share_logits.detach()


def _fit_latent(model, latent: torch.Tensor, f0: torch.Tensor, target: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's input fitted to one clip's log magnitudes, from the encoder's: what the decoder renders
    when its latent is the best one for the clip -> the head's parameters."""
    decoder, latent = model.decoder, latent.clone().requires_grad_()
    # Adam moves each value by about lr a step: a step in proportion to the latent's size (its entries are
    # ~100 in trained weights) lets the fit move it by about half its RMS in all.
    lr = LATENT_FIT_STEP * float(latent.detach().pow(2).mean().sqrt().clamp_min(1e-3))
    _adam_fit([latent], lambda: decoder.head.render(*decoder.parameters_of(latent, f0), f0)[0], target, lr=lr)
    return decoder.parameters_of(latent.detach(), f0)


def _fit_decoder(model, latent: torch.Tensor, f0: torch.Tensor, target: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy of the decoder trained on one clip (its weights, the latent fixed): what the decoder's form can
    render for that clip, against what its trained weights do -> the head's parameters."""
    decoder = copy.deepcopy(model.decoder).train()
    _adam_fit(list(decoder.parameters()), lambda: decoder.head.render(*decoder.parameters_of(latent, f0), f0)[0],
              target, lr=5e-4)
    with torch.no_grad():
        return decoder.parameters_of(latent, f0)


def _head_outputs(model, ref: torch.Tensor) -> list[tuple[torch.Tensor, tuple]]:
    """(audio (1, T), (log-magnitude L1,)) of each version of `ref` that `head` scores."""
    codes = model.encode_prepared(ref)
    f0 = model.decode_pitch(codes)
    target = torch.log(model.target_magnitudes(ref) + 1e-5)
    head = model.decoder.head
    latent, encoded = model.latent(codes), model.encoder(ref)
    net = model.decoder.parameters_of(latent, f0)
    fit = _fit_head(model, *net, f0, target)
    unquantized = model.decoder.parameters_of(encoded, f0)
    fitted_latent = _fit_latent(model, encoded, f0, target)
    fitted_decoder = _fit_decoder(model, latent, f0, target)
    # Where the envelope's error is heard: the fitted envelope in some hops or bands, the network's elsewhere.
    level = 10 * torch.log10(torch.exp(2 * target).mean(dim=-1, keepdim=True))  # (1, H, 1) dB
    loud = level > level.max() - LOUD_DB
    low = head.envelope_points_hz < LOW_BAND_HZ
    versions = [head.render(*net, f0), head.render(*unquantized, f0), head.render(*fitted_latent, f0),
                head.render(*fitted_decoder, f0),
                head.render(*fit, f0),
                head.render(fit[0], net[1], f0), head.render(net[0], fit[1], f0),
                head.render(torch.where(loud, fit[0], net[0]), net[1], f0),
                head.render(torch.where(loud, net[0], fit[0]), net[1], f0),
                head.render(torch.where(low, fit[0], net[0]), net[1], f0)]
    return [(model.synthesis(log_mag, voicing=(f0, share)), (float((log_mag - target).abs().mean()),))
            for log_mag, share in versions]


def head(model, corpus: Corpus, clips: int, seconds: float) -> str:
    names = ("decoded", "decoded from the unquantized latent", "decoded from a latent fitted to the clip",
             "decoded by the decoder trained on the clip",
             "head fitted to the clip (no network)",
             "fitted envelope, the network's harmonic share", "the network's envelope, fitted harmonic share",
             f"fitted envelope in the loud hops (within {LOUD_DB:.0f} dB of the loudest), the network's elsewhere",
             "fitted envelope in the quiet hops, the network's elsewhere",
             f"fitted envelope below {LOW_BAND_HZ:.0f} Hz, the network's above")
    return _scored(model, corpus, clips, seconds, "magnitudes", names, _head_outputs, extra=("log-magnitude L1",))


def _score(metric, ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    try:
        return metric(ref, deg, rate)
    except NotComputable:
        return float("nan")


def _pitch_row(name: str, a: torch.Tensor, va: torch.Tensor, b: torch.Tensor, vb: torch.Tensor) -> str:
    both = va & vb
    disagree = f"{float((va != vb).float().mean()):.1%}"
    if not both.any():  # no hop voiced in both: no pitch to compare
        return f"| {name} | 0 | - | - | - | {disagree} |"
    cents = (1200 * torch.log2(a[both] / b[both])).abs()
    return (f"| {name} | {int(both.sum())} | {float(cents.median()):.1f} | {float(torch.quantile(cents, 0.95)):.1f} | "
            f"{float((cents < 50).float().mean()):.1%} | {disagree} |")


def pitch(model, corpus: Corpus, clips: int, seconds: float) -> str:
    cfg = model.config
    offsets = analysis_centres(cfg.hop_length, cfg.frame_size, 960)
    found, coded, heard = [], [], []
    for i in _clips(corpus, clips):
        wav = _crop(model, corpus, i, seconds)
        with torch.no_grad():
            codes = model.encode_prepared(wav)
            decoded = model.decode(codes)
        found.append(model.pitch_estimate(wav))
        f0 = model.pitch.decode(codes[:, :PITCH_CODEBOOKS], offsets)
        coded.append((f0, f0 > 0))
        heard.append(model.pitch_estimate(decoded))

    def cat(pairs, j):
        return torch.cat([p[j].flatten() for p in pairs])

    return "\n".join([
        "| comparison | voiced hops (both) | median error, cents | 95th percentile, cents | within 50 cents "
        "| voicing disagreement |", "|---|---:|---:|---:|---:|---:|",
        _pitch_row("coded contour vs the input's estimate", cat(coded, 0), cat(coded, 1), cat(found, 0), cat(found, 1)),
        _pitch_row("decoded audio vs the input", cat(heard, 0), cat(heard, 1), cat(found, 0), cat(found, 1))])


def rvq(model, corpus: Corpus, clips: int, seconds: float | None) -> str:
    depths = [n for n in RVQ_DEPTHS if n <= model.quantizer.n_codebooks]
    errors, power = torch.zeros(len(depths)), 0.0
    with torch.no_grad():
        for i in range(min(clips, len(corpus))):
            latent = model.encoder(_crop(model, corpus, i, seconds))
            power += float(latent.pow(2).sum())
            for j, n in enumerate(depths):
                quantized = model.quantizer.decode(model.quantizer.encode(latent, n))
                errors[j] += float((latent - quantized).pow(2).sum())
    return "\n".join(["| latent stages | " + " | ".join(str(n) for n in depths) + " |",
                      "|---" * (len(depths) + 1) + "|",
                      "| relative latent error | " + " | ".join(f"{(e / power) ** 0.5:.3f}" for e in errors) + " |"])


def _frame_envelopes(model, corpus: Corpus, clips, seconds: float, depths: tuple[int, ...] = ()
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(frames, hops * bands): each non-silent frame's log mel-band energies, hop by hop, of the clips; and at
    each of `depths` (codebooks), the decoded audio's minus them."""
    fb = torch.from_numpy(librosa.filters.mel(sr=model.sample_rate, n_fft=model.config.synthesis_fft,
                                              n_mels=ENVELOPE_BANDS, norm=None)).float().T
    fb = fb / fb.sum(0, keepdim=True)  # each band's mean magnitude
    width = model.synthesis.block * ENVELOPE_BANDS  # a frame's synthesis hops side by side
    targets, errors = [], [[] for _ in depths]
    for i in clips:
        ref = _crop(model, corpus, i, seconds)
        target = torch.log(model.target_magnitudes(ref)[0] @ fb + 1e-5).reshape(-1, width)
        keep = target.mean(1) > SILENT
        targets.append(target[keep])
        codes = model.encode_prepared(ref, max(depths)) if depths else None
        for j, n in enumerate(depths):  # a depth's codes are the deepest codes' prefix
            mag = torch.exp(model.magnitudes(codes[:, :n])[0])
            errors[j].append(torch.log(mag @ fb + 1e-5).reshape(-1, width)[keep] - target[keep])
    return torch.cat(targets), [torch.cat(e) for e in errors]


def water_level(variances: torch.Tensor, bits: float) -> float:
    """Reverse water-filling: the distortion level theta at which independent Gaussian components of these
    variances cost `bits` in all, sum of max(0, log2(variance / theta) / 2). Each component's error is then
    min(variance, theta): the least mean squared error any code of that many bits reaches (Cover and Thomas,
    ch. 10)."""
    positive = variances[variances > 0].double()
    # theta at most the largest variance (0 bits) and at least the smallest one shrunk as if all bits went to it
    lo, hi = float(positive.min()) * 2.0 ** (-2 * bits / len(positive)), float(positive.max())
    for _ in range(200):  # bisection in log theta: the rate falls as theta rises
        theta = (lo * hi) ** 0.5
        rate = float((0.5 * torch.log2(positive / theta)).clamp_min(0).sum())
        lo, hi = (theta, hi) if rate > bits else (lo, theta)
    return (lo * hi) ** 0.5


def through_bound_channel(frames: torch.Tensor, mean: torch.Tensor, components: torch.Tensor,
                          variances: torch.Tensor, bits: float) -> torch.Tensor:
    """The frames through the rate-distortion bound's test channel at `bits`, in the principal components'
    coordinates: each coefficient c becomes g c + noise of variance g D, g = 1 - D / variance, D its share of
    the error (water_level); seeded, so the measurement repeats."""
    theta = water_level(variances, bits)
    error = variances.clamp(max=theta)
    gain = torch.where(variances > 0, 1 - error / variances.clamp_min(1e-30), torch.zeros_like(variances))
    coefficients = (frames - mean) @ components.T
    noise = torch.randn(coefficients.shape, generator=torch.Generator().manual_seed(0))
    return (gain * coefficients + noise * (gain * error).sqrt()) @ components + mean


def envelope(model, corpus: Corpus, clips: int, seconds: float) -> str:
    train = Corpus(corpus.root, "train")
    picks = np.random.default_rng(0).choice(len(train), min(PCA_CLIPS, len(train)), replace=False)
    with torch.no_grad():
        fit, _ = _frame_envelopes(model, train, picks, seconds)
        held_out, decoded = _frame_envelopes(model, corpus, _clips(corpus, clips), seconds, ENVELOPE_DEPTHS)
    mean = fit.mean(0)
    _, singular, components = torch.linalg.svd(fit - mean, full_matrices=False)
    variances = singular.square() / max(1, len(fit) - 1)
    db = 20 / np.log(10)
    lines = ["| the frame's envelopes, coded by | mean abs error, dB |", "|---|---:|"]
    for k in PCA_SIZES:
        basis = components[:k].T
        error = ((held_out - mean) @ basis @ basis.T + mean - held_out).abs().mean()
        lines.append(f"| their first {k} principal components | {float(error) * db:.2f} |")
    for n in ENVELOPE_DEPTHS:
        bits = (n - PITCH_CODEBOOKS) * model.config.bits_per_code
        error = (through_bound_channel(held_out, mean, components, variances, bits) - held_out).abs().mean()
        lines.append(f"| their principal components at the rate-distortion bound, {bits} bits (the latent's at "
                     f"{n} codebooks) | {float(error) * db:.2f} |")
    for n, errors in zip(ENVELOPE_DEPTHS, decoded):
        lines.append(f"| the model, {n} codebooks | {float(errors.abs().mean()) * db:.2f} |")
    return "\n".join(lines)


def fit(model, corpus: Corpus, clips: int, seconds: float) -> str:
    rate = model.sample_rate
    lines = ["| split | source | clips | PESQ-WB | STOI |", "|---|---|---:|---:|---:|"]
    for split in SPLITS:
        part = Corpus(corpus.root, split)
        records = part.clips
        for source in sorted({r["source"] for r in records}):
            part.clips = [r for r in records if r["source"] == source]
            scores = []
            for i in _clips(part, clips):
                ref = _crop(model, part, i, seconds)
                with torch.no_grad():
                    deg = model.decode(model.encode_prepared(ref))[0, 0].numpy()
                r = ref[0, 0].numpy()
                scores.append((_score(pesq, r, deg, rate), _score(stoi, r, deg, rate)))
            means = np.nanmean(np.array(scores, dtype=float), axis=0)
            lines.append(f"| {split} | {source} | {len(scores)} | {means[0]:.2f} | {means[1]:.3f} |")
    return "\n".join(lines)


def stream(model, corpus: Corpus, clips: int | None, seconds: float) -> str:
    rate = model.sample_rate
    parts, total, i = [], 0, 0
    while total < seconds * rate and i < len(corpus):
        parts.append(corpus.audio(i))
        total += len(parts[-1])
        i += 1
    wav = torch.from_numpy(np.concatenate(parts)[: int(seconds * rate)])
    codes = model.encode(wav, corpus.sample_rate)
    offline = model.decode(codes)[0, 0]
    with model.streaming(batch_size=1) as s:
        streamed = torch.cat([s.decode(codes[..., f: f + 1]) for f in range(codes.shape[-1])]
                             + [s.flush_decode()], -1)[0, 0]
    diff, ref = (streamed - offline).double(), offline.double()
    peak = float(ref.abs().max())

    def row(name: str, span: slice) -> str:
        snr = 10 * np.log10(float(ref[span].square().sum()) / max(float(diff[span].square().sum()), 1e-30))
        return f"| {name} | {float(diff[span].abs().max()) / peak:.1e} | {snr:.1f} |"

    # Each second apart, so one local event (a bin that rounds across a decision of the phase work) reads
    # differently from a difference that grows.
    seconds_max = [float(diff[s: s + rate].abs().max()) for s in range(0, len(diff), rate)]
    worst = int(np.argmax(seconds_max))
    median = int(np.argsort(seconds_max)[len(seconds_max) // 2])
    lines = ["| span | max difference / peak | SNR of streamed vs offline, dB |", "|---|---:|---:|",
             row("first 10 s", slice(0, 10 * rate)), row(f"all {len(offline) / rate:.0f} s", slice(None)),
             row(f"the median second ({median}-{median + 1} s)", slice(median * rate, (median + 1) * rate)),
             row(f"the worst second ({worst}-{worst + 1} s)", slice(worst * rate, (worst + 1) * rate))]
    return "\n".join(lines)


MEASUREMENTS = {"phase": phase, "head": head, "pitch": pitch, "rvq": rvq, "envelope": envelope, "fit": fit,
                "stream": stream}


def add_arguments(p) -> None:
    p.add_argument("what", choices=list(MEASUREMENTS))
    p.add_argument("corpus", help="a folder written by `codec data prepare`")
    p.add_argument("--model", default=None, help="shipped model name or checkpoint folder (default: the shipped model)")
    p.add_argument("--split", default="test",
                   help="the corpus split to read (default test); SPLIT:SRC[,SRC] keeps only those sources of it")
    p.add_argument("--clips", type=int, default=None,
                   help="clips spread over the split (default: phase 8, head 6, pitch and rvq 16, envelope 40; "
                        "fit: 6 of each source; stream: all it needs)")
    p.add_argument("--seconds", type=float, default=None,
                   help="audio read from each clip (default 6; rvq: whole clips), or in all for stream (default 60)")


def run(args) -> int:
    from .checkpoint import load

    clips, seconds = DEFAULTS[args.what]
    clips = args.clips if args.clips is not None else clips
    seconds = args.seconds if args.seconds is not None else seconds
    corpus = Corpus(args.corpus)
    _, numbered = select_split(args.corpus, corpus.clips, args.split)
    corpus.clips = [r for _, r in numbered]
    model = load(args.model).eval()
    print(MEASUREMENTS[args.what](model, corpus, clips, seconds))
    return 0
