"""A training recipe: every hyper-parameter of a run, with typed defaults, read from YAML.

A recipe file names only what differs from these defaults; an unknown key is an error naming it. The run
copies the whole recipe beside each checkpoint (`Recipe.to_dict`), so what trained a model is on record.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import RecipeError


@dataclass
class Augment:
    """Random changes to each training crop; input and target alike (`codec.train.batches.augment_crop`)."""

    gain_db: float = 7.0  # loudness drawn uniformly in loudness_db +- gain_db: the model meets every level
    noise_prob: float = 0.0  # share of crops given white noise at a random SNR
    noise_snr_db: list[float] = field(default_factory=lambda: [30.0, 50.0])  # mild: audible only in pauses
    bandlimit_prob: float = 0.0  # share of crops low-passed at a random cutoff
    bandlimit_hz: list[float] = field(default_factory=lambda: [4000.0, 11000.0])
    # Share of crops played faster or slower (pitch and formants move together, like another speaker),
    # by a factor drawn log-uniformly in speed_range: voices the corpus lacks (`change_speed`).
    speed_prob: float = 0.0
    speed_range: list[float] = field(default_factory=lambda: [0.85, 1.15])

    def __post_init__(self):
        low, high = self.speed_range
        if not 0 < low <= high:
            raise RecipeError(f"data.augment.speed_range is {self.speed_range}; it must be 0 < low <= high")


@dataclass
class DataRecipe:
    corpus: str | None = None  # a folder written by `codec data prepare`
    crop_frames: int = 16  # codec frames per training crop
    valid_clips: int = 32  # held-out clips validated at every validation
    workers: int = 0  # data-loading processes (0: in the training process)
    loudness_db: float = -23.0  # the level crops are normalized to (before the random gain)
    # Sampling weight per source (absent: 1): clips are drawn in proportion to their audio times this.
    source_weights: dict[str, float] = field(default_factory=dict)
    augment: Augment = field(default_factory=Augment)


@dataclass
class TrainRecipe:
    steps: int = 20000
    # Weights a new run starts from (a packaged name or a checkpoint folder): tensors whose name and shape
    # match are copied, the rest keep their initialization. None = from scratch. A resumed run ignores it.
    init: str | None = None
    # Layers of `init` to start fresh instead (name prefixes, e.g. "decoder.hop_blocks.4"): a ConvNeXt block
    # started fresh, or added by the recipe, starts as an identity whose residual branch still learns.
    reinit: list[str] = field(default_factory=list)
    batch_size: int = 16  # the global batch: split evenly over the processes
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    weight_decay: float = 0.0
    warmup: int = 500
    min_lr_ratio: float = 0.1  # cosine decay ends at this share of lr
    grad_clip: float = 1.0
    bf16: bool = True
    seed: int = 0
    threads: int = 2
    device: str = "cpu"  # cpu, cuda or auto (cuda when available)
    # Losses on the decoded log magnitudes against the input's STFT in the same framing (codec.train.losses).
    mel_weight: float = 15.0
    log_weight: float = 5.0
    convergence_weight: float = 5.0
    envelope_weight: float = 0.0  # band energies the harmonics' places cannot move (losses.envelope_bands)
    loudness_weight: float = 0.0  # band power^0.23: the loud hops and bands, as perception weighs them
    low_weight: float = 0.0  # log magnitudes below 1 kHz: the first harmonics and formant
    # The same weighted terms, times this, on the audio decoding makes of the decoded magnitudes (their
    # computed phases held fixed, overlap-added, analysed again): what is heard, not what was predicted.
    synthesis_weight: float = 0.0
    # An adversarial critic of the decoded magnitudes (codec.train.discriminator); both 0 = no critic.
    adversarial_weight: float = 0.0  # least-squares GAN term
    feature_weight: float = 0.0  # L1 between the critic's feature maps of decoded and real magnitudes
    adversarial_from: int = 0  # before this step the critic trains alone: a fresh critic's verdicts are noise
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    residual_weight: float = 1.0  # each RVQ stage fits its residual (codec.nn.quantizer)
    quantize_from: int = 0  # before this step the decoder gets the unquantized latent (the codebooks still learn)
    ema_decay: float | None = None  # e.g. 0.999: validate, keep best and export the EMA weights; None = off
    quantizer_dropout: float = 0.5  # share of each batch coded with a random prefix of the stages (DAC)
    reseed_every: int = 100  # dead-code re-seeding period, in steps
    reseed_threshold: float = 0.05  # entries used below this share of a uniform use are re-seeded
    codebook_rate: float = 0.1  # picked entries move this far towards their batch centroid per step (k-means)
    quantizer_decoder_grad: bool = True  # false: the decoder's gradient stops at the quantizer
    log_every: int = 25
    valid_every: int = 500
    save_every: int = 250
    valid_pesq_clips: int = 4  # PESQ / STOI on this many valid clips per validation (0 = off)
    tensorboard: bool = True
    progress: bool = True


@dataclass
class Recipe:
    model: dict = field(default_factory=dict)  # `codec.config.CodecConfig` fields that differ from its defaults
    data: DataRecipe = field(default_factory=DataRecipe)
    train: TrainRecipe = field(default_factory=TrainRecipe)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Recipe":
        """A recipe from nested dicts; absent keys keep their defaults, unknown keys are a ValueError."""
        return _build(cls, data or {})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **sections: dict) -> "Recipe":
        """A copy with some keys of some sections changed: `recipe.replace(train={"steps": 8})`."""
        merged = self.to_dict()
        for name, values in sections.items():
            merged[name] = {**merged[name], **values} if name != "model" else values
        return Recipe.from_dict(merged)


def _build(cls, data: dict):
    if not isinstance(data, dict):
        raise RecipeError(f"expected a mapping of {cls.__name__} keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(f"unknown recipe key {unknown[0]!r}; known: {', '.join(fields)}")
    values = {}
    for name, value in data.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING \
            else fields[name].default
        values[name] = _build(type(default), value) if dataclasses.is_dataclass(default) else value
    return cls(**values)


def recipe_name(path: str | Path) -> str:
    """`folder/file` of a recipe file (`debian-speech/default`): what names it wherever a run is read, unlike
    its path, which means something on one machine only."""
    path = Path(path).resolve()
    return f"{path.parent.name}/{path.stem}"


def load_recipe(path: str | Path) -> Recipe:
    """A recipe file: YAML with the sections model, data and train, and optionally `base`, the path of a
    recipe file (relative to this one) whose keys it starts from: its own keys replace the base's one by
    one, mappings merged at every depth, lists and other values replaced whole."""
    path = Path(path)
    data = _recipe_data(path, ())
    try:
        return Recipe.from_dict(data)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{path}: {err}") from None


def _recipe_data(path: Path, chain: tuple) -> dict:
    """The mapping `path` holds, over the mapping of its base; chain: the files that named it as theirs."""
    if path.resolve() in chain:
        raise RecipeError(f"{path}: its base leads back to it")
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise RecipeError(f"{path}: cannot read it ({err.strerror or err})") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise RecipeError(f"{path}: not YAML: {err.problem}{where}") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: {err}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping of recipe sections, got {data!r}")
    base = data.pop("base", None)
    try:  # each file's own keys alone, so that a wrong key is named with the file that has it
        Recipe.from_dict(data)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{path}: {err}") from None
    if base is None:
        return data
    if not isinstance(base, str):
        raise RecipeError(f"{path}: base must be the path of a recipe file, got {base!r}")
    return _merged(_recipe_data(path.parent / base, chain + (path.resolve(),)), data)


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
