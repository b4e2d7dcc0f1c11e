"""Training: recipes (`recipe`), corpus preparation (`prepare`), batches (`batches`), losses (`losses`), the
training step (`trainer`), run checkpoints (`state`), validation (`validation`), the loop (`loop`) and export
to an inference checkpoint (`export`)."""
from .loop import train
from .recipe import Recipe, load_recipe
from .trainer import Trainer
from .validation import evaluate

__all__ = ["Recipe", "Trainer", "evaluate", "load_recipe", "train"]
