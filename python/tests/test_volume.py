"""The Python client against a real `cairn server` (and real mounts)."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import uuid

import pytest

import cairn
from cairn import _crypto
from cairn._proto import objects_pb2, volume_pb2
from conftest import Server


def unique(prefix: str = "v") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def read_all(vol: cairn.Volume, path: str) -> bytes:
    return b"".join(vol.read_file(path))


# ---- lookup and lifecycle ----------------------------------------------------


def test_from_name_missing_then_created(client):
    name = unique()
    with pytest.raises(cairn.NotFoundError) as e:
        cairn.Volume.from_name(name, client=client)
    assert name in str(e.value)
    vol = cairn.Volume.from_name(name, create_if_missing=True, client=client)
    assert vol.name == name and vol.namespace == "default" and vol.version == 2
    assert vol.object_id.startswith("vo-")
    again = cairn.Volume.from_name(name, create_if_missing=True, client=client)
    assert again.object_id == vol.object_id
    assert cairn.Volume.lookup(name, client=client).object_id == vol.object_id
    assert any(v.object_id == vol.object_id for v in cairn.Volume.list(client=client))


def test_create_twice_and_version_mismatch(client):
    name = unique()
    v1 = cairn.Volume.create(name, version=1, client=client)
    assert v1.version == 1
    with pytest.raises(cairn.AlreadyExistsError):
        cairn.Volume.create(name, client=client)
    with pytest.raises(cairn.CairnError) as e:
        cairn.Volume.from_name(name, create_if_missing=True, version=2, client=client)
    assert "version" in str(e.value)


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "x" * 300])
def test_bad_volume_names_are_invalid(client, bad):
    with pytest.raises(cairn.InvalidError):
        cairn.Volume.create(bad, client=client)


def test_rename_and_delete(client):
    vol = cairn.Volume.create(unique(), client=client)
    new = unique("renamed")
    old = vol.name
    vol.rename(new)
    assert vol.name == new
    with pytest.raises(cairn.NotFoundError):
        cairn.Volume.from_name(old, client=client)
    assert cairn.Volume.from_name(new, client=client).object_id == vol.object_id

    assert cairn.Volume.delete(new, client=client) is True
    with pytest.raises(cairn.NotFoundError):
        vol.listdir("/")  # the object refers to the deleted volume's ID (C1)
    # Re-created under the same name: a new ID, and the old object still fails.
    again = cairn.Volume.create(new, client=client)
    assert again.object_id != vol.object_id
    with pytest.raises(cairn.NotFoundError):
        vol.info()
    with pytest.raises(cairn.NotFoundError):
        cairn.Volume.delete(unique("absent"), client=client)
    assert cairn.Volume.delete(unique("absent"), allow_missing=True, client=client) is False


# ---- writing and reading ------------------------------------------------------


def test_batch_upload_files_fileobjs_and_directories(vol, tmp_path):
    big = os.urandom(9 * 1024 * 1024 + 123)  # three chunks, the last short
    (tmp_path / "big.bin").write_bytes(big)
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.txt").write_text("beta\n")
    (tree / "sub" / "deeper" / "c.bin").write_bytes(b"\0" * 5000)
    os.symlink("a.txt", tree / "link")
    os.chmod(tree / "a.txt", 0o640)

    before = vol.info().head_seq
    with vol.batch_upload() as batch:
        batch.put_file(tmp_path / "big.bin", "/data/big.bin")
        batch.put_file(io.BytesIO(b"hello from a file object"), "greeting.txt")
        batch.put_directory(tree, "/tree")
    assert vol.info().head_seq == before + 1  # one commit for everything

    assert read_all(vol, "/data/big.bin") == big
    assert read_all(vol, "greeting.txt") == b"hello from a file object"
    assert read_all(vol, "/tree/sub/deeper/c.bin") == b"\0" * 5000
    buf = io.BytesIO()
    assert vol.read_file_into_fileobj("/tree/a.txt", buf) == 6
    assert buf.getvalue() == b"alpha\n"

    top = {e.path: e for e in vol.listdir("/")}
    assert set(top) == {"data", "greeting.txt", "tree"}
    assert top["data"].type == cairn.FileEntryType.DIRECTORY
    assert top["greeting.txt"].type == cairn.FileEntryType.FILE
    assert top["greeting.txt"].size == 24 and top["greeting.txt"].uid is None

    everything = {e.path: e for e in vol.iterdir("/tree", recursive=True)}
    assert set(everything) == {"tree/a.txt", "tree/link", "tree/sub", "tree/sub/b.txt",
                               "tree/sub/deeper", "tree/sub/deeper/c.bin"}
    assert everything["tree/link"].type == cairn.FileEntryType.SYMLINK
    assert everything["tree/link"].symlink_target == "a.txt"
    assert everything["tree/a.txt"].mode == 0o640
    assert abs(everything["tree/a.txt"].mtime - (tree / "a.txt").stat().st_mtime) < 1e-6
    assert vol.stat("/data/big.bin").size == len(big)


def test_the_cli_reads_what_python_wrote(server, vol, tmp_path):
    # Python-sealed chunks opened by the C++ client (byte compatibility, end to end).
    data = os.urandom(5 * 1024 * 1024)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(data), "/x/file.bin")
    out = tmp_path / "got.bin"
    server.cli("volume", "get", vol.name, "/x/file.bin", str(out))
    assert out.read_bytes() == data


def test_python_opens_what_the_cli_sealed(server, client, vol, tmp_path):
    # Objects sealed by the C++ client, opened by Python: the root directory
    # object, then the file's chunks.
    data = os.urandom(4 * 1024 * 1024 + 10)
    (tmp_path / "f.bin").write_bytes(data)
    server.cli("volume", "put", vol.name, str(tmp_path / "f.bin"), "/f.bin")
    opened = client.stub.OpenVolume(volume_pb2.OpenVolumeRequest(
        volume=volume_pb2.VolumeRef(id=vol.object_id)))
    key = opened.data_key

    def fetch(address: bytes) -> bytes:
        replies = list(client.stub.GetObjects(volume_pb2.GetObjectsRequest(
            volume_id=vol.object_id, addresses=[address])))
        assert len(replies) == 1
        return _crypto.open_sealed(key, address, replies[0].sealed)

    root = objects_pb2.Directory.FromString(fetch(opened.head.root))
    entry = next(e for e in root.entries if e.name == b"f.bin")
    assert len(entry.chunks) == 2
    got = b"".join(fetch(c) for c in entry.chunks)
    assert got == data
    assert all(_crypto.address(key, fetch(c)) == c for c in entry.chunks)


def test_large_file_streams(vol):
    # Written from a generator-backed reader and read back as a stream,
    # never held whole by the client.
    size = 40 * 1024 * 1024 + 7

    class Pattern(io.RawIOBase):
        """Byte at offset p is (p >> 16) & 0xFF, whatever the read sizes."""

        def __init__(self) -> None:
            self.pos = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            n = min(len(b), size - self.pos)
            out = bytearray()
            while len(out) < n:
                block = self.pos >> 16
                take = min(n - len(out), ((block + 1) << 16) - self.pos)
                out += bytes([block & 0xFF]) * take
                self.pos += take
            b[:n] = out
            return n

    want = hashlib.sha256()
    src = Pattern()
    while True:
        chunk = src.read(1 << 20)
        if not chunk:
            break
        want.update(chunk)
    with vol.batch_upload() as batch:
        batch.put_file(Pattern(), "/big")
    got = hashlib.sha256()
    pieces = 0
    for piece in vol.read_file("/big"):
        got.update(piece)
        pieces += 1
    assert got.hexdigest() == want.hexdigest()
    assert pieces > 1
    assert vol.stat("big").size == size


def test_a_raising_block_commits_nothing(vol, tmp_path):
    before = vol.info().head_seq
    with pytest.raises(RuntimeError):
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(os.urandom(6 << 20)), "/half.bin")
            batch.put_file(io.BytesIO(b"small"), "/small.txt")
            raise RuntimeError("stop")
    assert vol.info().head_seq == before
    assert vol.listdir("/") == []


def test_existing_files_need_force_and_nothing_partial(vol):
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"v1"), "/model.txt")
    before = vol.info().head_seq
    with pytest.raises(cairn.AlreadyExistsError) as e:
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"new"), "/other.txt")
            batch.put_file(io.BytesIO(b"v2"), "/model.txt")
    assert "model.txt" in str(e.value) and "force=True" in str(e.value)
    assert vol.info().head_seq == before
    assert [e.path for e in vol.listdir("/")] == ["model.txt"]  # other.txt not committed
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"v2"), "/model.txt")
    assert read_all(vol, "/model.txt") == b"v2"


def test_a_file_never_replaces_a_directory(vol):
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"x"), "/dir/inside")
    with pytest.raises(cairn.FailedPreconditionError):
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(b"y"), "/dir")
    assert vol.stat("dir").type == cairn.FileEntryType.DIRECTORY


@pytest.mark.parametrize("bad", ["../escape", "a/../../b", "a//b/../.."])
def test_bad_remote_paths_are_refused_and_leave_nothing(vol, bad):
    with pytest.raises(cairn.InvalidError):
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"fine"), "/fine.txt")
            batch.put_file(io.BytesIO(b"x"), bad)
    assert vol.listdir("/") == []


def test_client_side_batch_errors(vol, tmp_path):
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"a"), "/same")
        with pytest.raises(cairn.InvalidError, match="twice"):
            batch.put_file(io.BytesIO(b"b"), "same")
        with pytest.raises(cairn.InvalidError):
            batch.put_file(io.BytesIO(b"b"), "/")
        with pytest.raises(FileNotFoundError):
            batch.put_file(tmp_path / "absent", "/absent")
        with pytest.raises(cairn.InvalidError):
            batch.put_directory(tmp_path / "absent", "/d")
    with pytest.raises(cairn.InvalidError, match="inside"):
        batch.put_file(io.BytesIO(b"late"), "/late")
    assert read_all(vol, "same") == b"a"


def test_remove_and_copy(vol):
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"one"), "/d/one")
        batch.put_file(io.BytesIO(os.urandom(5000)), "/d/two")
        batch.put_file(io.BytesIO(b"top"), "/top")
    vol.copy_files(["/top"], "/d")  # into an existing directory
    assert read_all(vol, "/d/top") == b"top"
    vol.copy_files(["/d/one"], "/d/one-copy")  # one source to a new path
    assert read_all(vol, "/d/one-copy") == b"one"
    with pytest.raises(cairn.InvalidError):
        vol.copy_files(["/d/one"], "/d")  # onto itself
    vol.copy_files(["/d"], "/e", recursive=True)
    assert read_all(vol, "/e/two") == read_all(vol, "/d/two")
    with pytest.raises(cairn.FailedPreconditionError):
        vol.copy_files(["/d"], "/f")  # a directory needs recursive
    with pytest.raises(cairn.NotFoundError):
        vol.copy_files(["/nope"], "/g")

    vol.remove_file("/top")
    with pytest.raises(cairn.NotFoundError):
        vol.stat("/top")
    with pytest.raises(cairn.FailedPreconditionError):
        vol.remove_file("/d")
    vol.remove_file("/d", recursive=True)
    assert sorted(e.path for e in vol.listdir("/")) == ["e"]
    with pytest.raises(cairn.NotFoundError):
        vol.remove_file("/d")


def test_reading_missing_or_directories(vol):
    with pytest.raises(cairn.NotFoundError) as e:
        read_all(vol, "/missing.txt")
    assert "missing.txt" in str(e.value)
    with pytest.raises(cairn.NotFoundError):
        vol.listdir("/no/such/dir")


def test_non_utf8_names_round_trip(vol):
    name = os.fsdecode(b"caf\xe9.txt")  # Latin-1, not UTF-8
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"bytes"), name)
    [entry] = vol.listdir("/")
    assert os.fsencode(entry.path) == b"caf\xe9.txt"
    assert read_all(vol, entry.path) == b"bytes"


# ---- connection and authentication ------------------------------------------


def test_unreachable_server_is_unavailable():
    with cairn.Client("127.0.0.1:1", wait=0.5, timeout=2) as c:
        with pytest.raises((cairn.UnavailableError, cairn.exceptions.DeadlineExceededError)):
            cairn.Volume.list(client=c)


def test_token_is_required_and_checked(tmp_path):
    s = Server(tmp_path, token="s3cret-token")
    s.start()
    try:
        with cairn.Client(s.address, token="wrong", wait=5) as c:
            with pytest.raises(cairn.exceptions.AuthError):
                cairn.Volume.list(client=c)
        with cairn.Client(s.address, token=None, wait=5) as c:
            with pytest.raises(cairn.exceptions.AuthError):
                cairn.Volume.create("x", client=c)
        with s.client() as c:
            vol = cairn.Volume.create("x", client=c)
            with vol.batch_upload() as batch:
                batch.put_file(io.BytesIO(b"ok"), "ok")
            assert read_all(vol, "ok") == b"ok"
    finally:
        s.stop()


def test_environment_configures_the_default_client(server, monkeypatch):
    monkeypatch.setenv("CAIRN_SERVER", server.address)
    monkeypatch.setenv("CAIRN_NAMESPACE", "team-a")
    c = cairn.Client()
    try:
        vol = cairn.Volume.from_name(unique(), create_if_missing=True, client=c)
        assert vol.namespace == "team-a"
    finally:
        c.close()


# ---- a mount's control interface ---------------------------------------------


def test_from_mount_commit_and_reload(server, client, mounts):
    vol = cairn.Volume.create(unique("m"), client=client)
    a = mounts(vol.name, "a")
    b = mounts(vol.name, "b")
    ma = cairn.Volume.from_mount(a.path)
    mb = cairn.Volume.from_mount(str(b.path))
    assert ma.object_id == vol.object_id and ma.name == vol.name

    (a.path / "ckpt.txt").write_text("step 1\n")
    assert ma.status()["dirty"] is True
    ma.commit()
    assert read_all(vol, "ckpt.txt") == b"step 1\n"
    assert not (b.path / "ckpt.txt").exists()  # b still shows its snapshot (C3)
    mb.reload()
    assert (b.path / "ckpt.txt").read_text() == "step 1\n"

    (a.path / "ckpt.txt").write_text("step 2\n")
    ma.commit()
    with open(b.path / "ckpt.txt") as held:
        with pytest.raises(cairn.VolumeBusyError) as e:
            mb.reload()
        assert str(b.path / "ckpt.txt") in e.value.open_files
        assert "busy" in str(e.value) and "ckpt.txt" in str(e.value)
        assert held.read() == "step 1\n"
    mb.reload()
    assert (b.path / "ckpt.txt").read_text() == "step 2\n"


def test_from_mount_refuses_a_plain_directory(tmp_path):
    with pytest.raises(cairn.NotAMountError) as e:
        cairn.Volume.from_mount(tmp_path)
    assert str(tmp_path) in str(e.value)
