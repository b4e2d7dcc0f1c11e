"""The one input grammar of every command that reads files (`encode`, `decode`, `info`, `eval`,
`tokenize`; `data prepare` searches its source folders with `audio_files`), and where each input's output
goes.

An input is, in this order of tests:

- a folder: the files below it (recursively) with one of the wanted suffixes, sorted;
- a glob pattern that names no existing file (`'clips/**/*.wav'`): its matching files, sorted;
- a list file (`.txt`, `.lst`, `.list`): one entry a line, each a file, folder or glob as above; a relative
  entry is relative to the list's folder; `#` starts a comment line and a tab ends the entry (later
  columns are the list's own business);
- anything else: a file, as named (a missing one is reported when it is processed).

Folders written by `codec data prepare` are corpora: the commands that read corpora (`eval`, `tokenize`)
test for them (`codec.io.corpus.is_corpus`) before this grammar.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, UsageError
from .audio import AUDIO_SUFFIXES

LIST_SUFFIXES = {".txt", ".lst", ".list"}
INPUTS_HELP = "files, folders (searched recursively), glob patterns or list files (.txt/.lst/.list: one a line)"
_WILDCARDS = "*?["


@dataclass(frozen=True)
class Input:
    path: Path
    rel: Path  # where its output goes under an output folder: its place under the folder, glob or list
    listed: bool  # found by listing a folder, expanding a glob or reading a list, not named on the command line


def audio_files(folder: str | Path, suffixes=AUDIO_SUFFIXES) -> list[Path]:
    """The files below `folder` (recursive) whose suffix is in `suffixes`, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def is_list_file(path: Path) -> bool:
    return path.suffix.lower() in LIST_SUFFIXES and path.is_file()


def resolve_inputs(items: list[str], suffixes: set[str] = AUDIO_SUFFIXES) -> list[Input]:
    """Inputs named on a command line -> files, in order, without repeats (see the module's grammar)."""
    out: list[Input] = []
    for item in items:
        path = Path(item)
        if is_list_file(path) and path.suffix.lower() not in suffixes:
            for entry in _list_entries(path):
                out += _expand(entry, suffixes, base=path.parent, named=False)
        else:
            out += _expand(str(path), suffixes, base=None, named=True)
    seen: set[Path] = set()
    return [i for i in out if not (i.path in seen or seen.add(i.path))]


def _list_entries(path: Path) -> list[str]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.split("\t", 1)[0].strip()
        if entry and not entry.startswith("#"):
            entries.append(entry if Path(entry).is_absolute() else str(path.parent / entry))
    return entries


def _expand(item: str, suffixes: set[str], base: Path | None, named: bool) -> list[Input]:
    """One folder, glob or file -> its inputs; `base`: the list's folder that relative outputs mirror."""
    path = Path(item)
    if path.is_dir():
        found = audio_files(path, suffixes)
        if not found:
            raise InputError(f"{path}: folder holds no {'/'.join(sorted(suffixes))} files")
        return [Input(p, _under(p, base) if base else p.relative_to(path), True) for p in found]
    if any(ch in item for ch in _WILDCARDS) and not path.exists():
        matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        if not matches:
            raise InputError(f"{item}: pattern matches no files")
        return [Input(p, _under(p, base or _fixed_part(path)), True) for p in matches]
    return [Input(path, _under(path, base) if base else Path(path.name), not named)]


def _under(path: Path, base: Path) -> Path:
    return path.relative_to(base) if path.is_relative_to(base) else Path(path.name)


def _fixed_part(pattern: Path) -> Path:
    """The leading folders of a glob pattern that hold no wildcard: what its matches are mirrored under."""
    parts = []
    for part in pattern.parent.parts:
        if any(ch in part for ch in _WILDCARDS):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def output_paths(inputs: list[Input], output: str | None, suffix: str) -> list[Path]:
    """One output per input: beside it by default. `output` names a file for a single input, or a folder
    (it ends in / or exists as one) under which the inputs' tree is mirrored. Raises UsageError before
    anything is written if two inputs would share an output or an output would overwrite an input."""
    if output is None:
        outputs = [i.path.with_suffix(suffix) for i in inputs]
    elif output.endswith(("/", os.sep)) or Path(output).is_dir():
        outputs = [Path(output) / i.rel.with_suffix(suffix) for i in inputs]
    elif len(inputs) > 1 or any(i.listed for i in inputs):
        raise UsageError(f"-o {output}: several inputs, or a folder or pattern, need an output folder: end it "
                         f"with / (-o {output}/) or create the folder first")
    else:
        outputs = [Path(output)]
    sources = {_key(i.path) for i in inputs}
    writers: dict[str, Path] = {}
    for i, dst in zip(inputs, outputs):
        key = _key(dst)
        if key in sources:
            raise UsageError(f"{dst}: the output of {i.path} would overwrite an input; nothing was written")
        if key in writers:
            raise UsageError(f"{writers[key]} and {i.path} would both be written to {dst}; nothing was written: "
                             "rename one or code them in separate runs")
        writers[key] = i.path
    return outputs


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))
