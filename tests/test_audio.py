"""Audio in and out: the layouts `as_batch` accepts and refuses, and atomic writes that fail cleanly."""
import errno
import os

import numpy as np
import pytest
import torch

from codec import CodecError
from codec.io.atomic import atomic_path
from codec.io.audio import write_audio
from codec.signal import as_batch
from codec.errors import OutputError


@pytest.mark.parametrize("shape,expected", [
    ((100,), (1, 1, 100)), ((2, 100), (1, 2, 100)), ((1, 100), (1, 1, 100)), ((3, 2, 100), (3, 2, 100)),
    ((2, 2), (1, 2, 2)), ((1, 0), (1, 1, 0)),
])
@pytest.mark.parametrize("kind", [np.asarray, torch.as_tensor])
def test_accepted_layouts(shape, expected, kind):
    assert tuple(as_batch(kind(np.zeros(shape, np.float32))).shape) == expected


@pytest.mark.parametrize("shape", [(144242, 2), (5000, 1), (3, 2)])
@pytest.mark.parametrize("kind", [np.asarray, torch.as_tensor])
def test_samples_by_channels_is_refused_with_the_fix(shape, kind):
    with pytest.raises(ValueError, match=r"\(samples, channels\).*transpose \(wav\.T\)"):
        as_batch(kind(np.zeros(shape, np.float32)))


def test_model_and_stream_refuse_soundfile_layout(tiny_model):
    wav = np.random.default_rng(0).standard_normal((4000, 2)).astype(np.float32) * 0.1
    for x in (wav, torch.from_numpy(wav), wav[:, :1]):
        with pytest.raises(ValueError, match="transpose"):
            tiny_model.encode(x, 24000)
    with tiny_model.streaming(batch_size=1) as stream, pytest.raises(ValueError, match="transpose"):
        stream.encode(wav[:, :1])
    assert tiny_model.encode(wav.T, 24000).shape[0] == 1  # the transpose is what it asks for


def test_an_os_error_while_writing_becomes_output_error(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"earlier")
    with pytest.raises(OutputError, match=f"^{target}: cannot write \\(No space left on device\\)$") as err:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert isinstance(err.value, CodecError) and err.value.exit_code == 6
    assert target.read_bytes() == b"earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]  # the temporary file is gone


def test_writing_audio_below_a_file_names_it(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(OutputError, match="blocker is a file, not a folder"):
        write_audio(tmp_path / "blocker" / "y.wav", np.zeros(100, np.float32), 24000)
