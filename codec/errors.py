"""Errors a user can act on. The CLI prints their message on one line and exits with their code."""


class CodecError(Exception):
    """Base class: a problem with what the user gave us, not a bug."""

    exit_code = 1


class UsageError(CodecError):
    """The command line asks for something that cannot be done as asked: two inputs that would be written to
    one output, several inputs for an output that is not a folder."""

    exit_code = 2


class RecipeError(UsageError, ValueError):
    """A training recipe cannot be run as written: an unreadable file, an unknown key, no corpus, a batch that
    does not split over the processes, a source weight its corpus has no source for."""


class InputError(CodecError):
    """An input file is missing, unreadable, empty, not audio, or holds unusable samples."""

    exit_code = 3


class CodesFileError(CodecError):
    """A codes file is damaged, truncated, of another version, or made by another model."""

    exit_code = 4


class WeightsError(CodecError):
    """A checkpoint is missing, incomplete, or does not match its checksum."""

    exit_code = 5


class OutputError(CodecError):
    """An output cannot be written: a read-only folder, permission denied, a full disk."""

    exit_code = 6
