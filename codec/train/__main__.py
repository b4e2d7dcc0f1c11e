"""`python -m codec.train` (what torchrun starts): the same as `codec train`."""
import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))
