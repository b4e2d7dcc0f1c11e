"""Codes for speech language models: the token vocabulary and layouts (`codec.tts.vocabulary`), and
Parquet datasets of a corpus's codes (`codec.tts.dataset`, written by `codec tokenize`)."""
from .vocabulary import (LAYOUTS, Vocabulary, decode_tokens, delay, flatten, frames, to_codes, undelay, unflatten,
                         unframes)

__all__ = ["LAYOUTS", "Vocabulary", "decode_tokens", "delay", "flatten", "frames", "to_codes", "undelay",
           "unflatten", "unframes"]
