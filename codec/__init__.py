"""codec: a causal neural speech codec, 24 kHz, 12.5 frames/s, up to 37 codebooks (4.6 kbit/s)."""
from .config import CodecConfig
from .errors import CodecError, CodesFileError, InputError, OutputError, UsageError, WeightsError
from .model import Codec, CodecStream
from .checkpoint import available, load, save_pretrained

__version__ = "0.1.0"

__all__ = ["Codec", "CodecConfig", "CodecStream", "CodecError", "CodesFileError", "InputError", "OutputError",
           "UsageError", "WeightsError", "available", "load", "save_pretrained", "__version__"]
