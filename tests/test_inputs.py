"""The one input grammar (codec.io.inputs): files, folders, globs and list files mean the same for every command."""
import pytest

from codec.errors import InputError
from codec.io.inputs import resolve_inputs


@pytest.fixture
def tree(tmp_path):
    for name in ("a/x.wav", "a/y.flac", "b/z.wav", "b/notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_folders_globs_and_files(tree):
    assert [i.path for i in resolve_inputs([str(tree / "a")])] == [tree / "a/x.wav", tree / "a/y.flac"]
    found = resolve_inputs([str(tree / "*" / "*.wav")])
    assert [i.path for i in found] == [tree / "a/x.wav", tree / "b/z.wav"]
    assert [str(i.rel) for i in found] == ["a/x.wav", "b/z.wav"]  # mirrored under the pattern's fixed part
    one = resolve_inputs([str(tree / "missing.wav")])  # reported when it is processed
    assert one[0].path == tree / "missing.wav" and not one[0].listed


def test_list_files_are_relative_to_their_folder_and_take_folders_and_globs(tree):
    listing = tree / "set.txt"
    listing.write_text(f"# clips\nb/z.wav\tspeaker 1\n\na\n{tree / 'b'}/*.wav\n")
    found = resolve_inputs([str(listing)])
    assert [i.path for i in found] == [tree / "b/z.wav", tree / "a/x.wav", tree / "a/y.flac"]  # no repeats
    assert [str(i.rel) for i in found] == ["b/z.wav", "a/x.wav", "a/y.flac"] and all(i.listed for i in found)


def test_a_list_is_read_only_where_its_suffix_is_not_what_is_wanted(tree):
    (tree / "names.txt").write_text("a/x.wav\n")
    assert [i.path for i in resolve_inputs([str(tree / "names.txt")], {".txt"})] == [tree / "names.txt"]


def test_empty_folders_and_patterns_are_named(tree):
    with pytest.raises(InputError, match="folder holds no"):
        resolve_inputs([str(tree / "b")], {".codes"})
    with pytest.raises(InputError, match="pattern matches no files"):
        resolve_inputs([str(tree / "*.codes")])
