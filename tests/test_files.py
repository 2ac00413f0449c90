"""iptkit.files: the run directory's file operations over Beam's FileSystems."""

from __future__ import annotations

from iptkit import files
from iptkit.files import delete_tree, is_local, list_tree, move, publish_tree


def test_is_local_by_scheme():
    assert is_local("/tmp/run") and is_local("runs/demo")
    assert not is_local("gs://bucket/run") and not is_local("s3://bucket/run")


def test_publish_list_move_and_delete_a_tree(tmp_path, monkeypatch):
    src = tmp_path / "staging"
    (src / "megatron").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"\x00\x01")
    (src / "megatron" / "m.idx").write_bytes(b"MMIDIDX")
    dest = str(tmp_path / "run" / ".parts" / "00000")
    publish_tree(src, dest)
    assert list_tree(dest) == ["a.bin", "megatron/m.idx"]
    move(f"{dest}/megatron/m.idx", str(tmp_path / "run" / "megatron" / "m.idx"))
    assert (tmp_path / "run" / "megatron" / "m.idx").read_bytes() == b"MMIDIDX"
    # On an object store there are no folders: delete_tree removes every object under it.
    monkeypatch.setattr(files, "is_local", lambda path: False)
    delete_tree(str(tmp_path / "run" / ".parts"))
    assert list_tree(str(tmp_path / "run" / ".parts")) == []
    delete_tree(str(tmp_path / "run" / ".parts"))  # nothing left: no error
