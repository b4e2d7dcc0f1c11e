"""codec.eval: bitrate and perceptual-quality measurement for any codec (docs/metrics.md, docs/eval.md)."""
from .align import align, find_delay
from .bitrate import codebook_stats, entropy_bits, nominal_bitrate
from .codecs import OurCodec, make_codec, register
from .protocol import CodecUnavailable, SpeechCodec
from .metrics import METRICS, NotComputable, all_metrics

__all__ = ["align", "find_delay", "codebook_stats", "entropy_bits", "nominal_bitrate",
           "CodecUnavailable", "OurCodec", "SpeechCodec", "make_codec", "register", "METRICS",
           "NotComputable", "all_metrics"]
