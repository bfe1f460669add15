"""Volumes: look up, create, browse, read and write through the Volume API."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import stat
import threading
import time
import uuid
from typing import IO, Any, BinaryIO, Iterator, List, Optional, Sequence, Union

from . import _crypto, exceptions
from ._client import Client, default_client
from .mount import MountedVolume
from ._proto import objects_pb2, volume_pb2

PathLike = Union[str, "os.PathLike[str]"]

# Chunks whose presence is checked at once, and sent on one PutObjects stream.
_CHUNKS_PER_FLUSH = 8


class FileEntryType(enum.IntEnum):
    """The type of an entry in a volume (cairn.objects.EntryType)."""

    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2
    SYMLINK = 3
    FIFO = 4
    SOCKET = 5
    CHAR_DEVICE = 6
    BLOCK_DEVICE = 7


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One entry of a listing.

    ``path`` is relative to the volume root, without a leading "/"; names
    that are not UTF-8 are decoded with ``os.fsdecode`` (surrogateescape),
    so ``os.fsencode(path)`` gives back the stored bytes. ``mtime`` is in
    seconds since the epoch. ``uid``/``gid`` are None when the entry stores
    no owner (files written by ``batch_upload`` or ``cairn volume put``).
    """

    path: str
    type: FileEntryType
    mtime: float
    size: int
    mode: int
    symlink_target: Optional[str] = None
    uid: Optional[int] = None
    gid: Optional[int] = None

    @classmethod
    def _from_proto(cls, e: Any) -> "FileEntry":
        return cls(
            path=os.fsdecode(e.path),
            type=FileEntryType(e.type) if e.type in FileEntryType._value2member_map_
            else FileEntryType.UNSPECIFIED,
            mtime=e.mtime_ns / 1e9,
            size=e.size,
            mode=e.mode,
            symlink_target=os.fsdecode(e.symlink_target) if e.symlink_target else None,
            uid=e.uid if e.HasField("uid") else None,
            gid=e.gid if e.HasField("gid") else None,
        )


@dataclasses.dataclass(frozen=True)
class VolumeInfo:
    """A volume's identity and totals as the control plane reports them."""

    object_id: str
    namespace: str
    name: str
    version: int
    created_at: float
    head_seq: int
    inodes: int
    bytes: int
    last_commit_at: Optional[float]
    # Ephemeral volumes: when the lease lapses unless renewed (seconds since
    # the epoch); None for an ordinary volume.
    lease_expires_at: Optional[float] = None

    @classmethod
    def _from_proto(cls, v: Any) -> "VolumeInfo":
        return cls(object_id=v.id, namespace=v.namespace, name=v.name, version=v.version,
                   created_at=v.created_at_ns / 1e9, head_seq=v.head_seq, inodes=v.inodes,
                   bytes=v.bytes,
                   last_commit_at=v.last_commit_ns / 1e9 if v.last_commit_ns else None,
                   lease_expires_at=v.lease_expires_ns / 1e9 if v.lease_expires_ns else None)


def _remote(path: PathLike) -> bytes:
    """A volume path as the API takes it: bytes, relative to the root."""
    raw = os.fsencode(path)
    return raw.lstrip(b"/")


class Volume:
    """A Cairn volume, referred to by its ID.

    Get one with ``Volume.from_name`` (or ``lookup``/``create``). Every
    method refers to the volume by the ID it had when it was looked up, so
    a volume deleted and re-created under the same name is NotFound here
    rather than silently another volume. Methods raise the exceptions of
    ``cairn.exceptions``, with the control plane's message.
    """

    def __init__(self, info: VolumeInfo, client: Client) -> None:
        self._info = info
        self._client = client

    # ---- identity --------------------------------------------------------

    @property
    def object_id(self) -> str:
        """The volume's opaque ID ("vo-…")."""
        return self._info.object_id

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def namespace(self) -> str:
        return self._info.namespace

    @property
    def version(self) -> int:
        return self._info.version

    def __repr__(self) -> str:
        return f"Volume({self.namespace}/{self.name}, {self.object_id})"

    def _ref(self) -> Any:
        return volume_pb2.VolumeRef(id=self.object_id)

    def _where(self, path: PathLike = "") -> str:
        shown = os.fsdecode(_remote(path))
        return f"{self.name}:/{shown}"

    def info(self) -> VolumeInfo:
        """Fresh totals of the volume (head, inodes, bytes, last commit)."""
        v = self._client.call("GetVolume", volume_pb2.GetVolumeRequest(volume=self._ref()),
                              f"volume {self.name}")
        self._info = VolumeInfo._from_proto(v)
        return self._info

    # ---- lookup and lifecycle ---------------------------------------------

    @classmethod
    def from_name(cls, name: str, namespace: Optional[str] = None, *,
                  create_if_missing: bool = False, version: int = 2,
                  client: Optional[Client] = None) -> "Volume":
        """The volume called ``name`` in ``namespace`` (the client's by default).

        With ``create_if_missing`` an absent volume is created with
        ``version`` (1 or 2); an existing one of another version is an
        error. Without it, a missing volume raises NotFoundError.
        """
        client = client or default_client()
        ns = namespace or client.namespace
        if create_if_missing:
            v = client.call("CreateVolume", volume_pb2.CreateVolumeRequest(
                namespace=ns, name=name, version=version, create_if_missing=True),
                f"volume {name}")
        else:
            v = client.call("GetVolume", volume_pb2.GetVolumeRequest(
                volume=volume_pb2.VolumeRef(namespace=ns, name=name)), f"volume {name}")
        return cls(VolumeInfo._from_proto(v), client)

    @classmethod
    def lookup(cls, name: str, namespace: Optional[str] = None, *,
               create_if_missing: bool = False, version: int = 2,
               client: Optional[Client] = None) -> "Volume":
        """The same as ``from_name`` (the name Modal's older API used)."""
        return cls.from_name(name, namespace, create_if_missing=create_if_missing,
                             version=version, client=client)

    @classmethod
    def create(cls, name: str, namespace: Optional[str] = None, *, version: int = 2,
               client: Optional[Client] = None) -> "Volume":
        """Creates a new, empty volume; AlreadyExistsError if the name is taken."""
        client = client or default_client()
        v = client.call("CreateVolume", volume_pb2.CreateVolumeRequest(
            namespace=namespace or client.namespace, name=name, version=version),
            f"create volume {name}")
        return cls(VolumeInfo._from_proto(v), client)

    @classmethod
    @contextlib.contextmanager
    def ephemeral(cls, namespace: Optional[str] = None, *, version: int = 2,
                  lease: float = 30.0, client: Optional[Client] = None) -> Iterator["Volume"]:
        """An anonymous volume that lives while it is held::

            with cairn.Volume.ephemeral() as vol:
                with vol.batch_upload() as batch:
                    batch.put_file("data.bin", "/data.bin")
                ...

        Inside the block a background thread renews the volume's lease
        every third of ``lease`` seconds. After the block (or if this
        process dies) the renewals stop, and once the lease lapses and no
        other holder (a mount of it, another client) renewed it, the
        control plane deletes the volume and destroys its data key.
        """
        client = client or default_client()
        seconds = int(round(lease))
        if not 1 <= seconds <= 86400:
            raise exceptions.InvalidError(f"a lease is 1 to 86400 seconds, not {lease}")
        v = client.call("CreateVolume", volume_pb2.CreateVolumeRequest(
            namespace=namespace or client.namespace, version=version, ephemeral=True,
            lease_seconds=seconds), "create ephemeral volume", retry=False)
        vol = cls(VolumeInfo._from_proto(v), client)
        holder = _LeaseHolder(vol, seconds)
        try:
            yield vol
        finally:
            holder.stop()

    def renew_lease(self, lease: float = 30.0) -> VolumeInfo:
        """Renews an ephemeral volume's lease to ``lease`` seconds from now
        (never shortening it). NotFoundError once the lease has lapsed;
        FailedPreconditionError for an ordinary volume."""
        v = self._client.call("RenewLease", volume_pb2.RenewLeaseRequest(
            volume=self._ref(), lease_seconds=int(round(lease))),
            f"renew the lease of {self.name}")
        self._info = VolumeInfo._from_proto(v)
        return self._info

    @classmethod
    def list(cls, namespace: Optional[str] = None, *,
             client: Optional[Client] = None) -> List["Volume"]:
        """The volumes of a namespace, newest first."""
        client = client or default_client()
        r = client.call("ListVolumes", volume_pb2.ListVolumesRequest(
            namespace=namespace or client.namespace), "list volumes")
        return [cls(VolumeInfo._from_proto(v), client) for v in r.volumes]

    @classmethod
    def delete(cls, name: str, namespace: Optional[str] = None, *, allow_missing: bool = False,
               client: Optional[Client] = None) -> bool:
        """Deletes the volume called ``name``: its data is unreadable at once
        (the data key is destroyed) and space is reclaimed later.

        Returns whether a volume was deleted; a missing one raises
        NotFoundError unless ``allow_missing``.
        """
        client = client or default_client()
        r = client.call("DeleteVolume", volume_pb2.DeleteVolumeRequest(
            volume=volume_pb2.VolumeRef(namespace=namespace or client.namespace, name=name),
            allow_missing=allow_missing), f"delete volume {name}")
        return r.deleted

    def rename(self, new_name: str) -> None:
        """Renames the volume within its namespace (its ID stays)."""
        v = self._client.call("RenameVolume", volume_pb2.RenameVolumeRequest(
            volume=self._ref(), new_name=new_name), f"rename volume {self.name}")
        self._info = VolumeInfo._from_proto(v)

    # ---- reading -----------------------------------------------------------

    def iterdir(self, path: PathLike = "/", *, recursive: bool = False) -> Iterator[FileEntry]:
        """Yields the entries under ``path`` (a directory), or the entry of
        ``path`` itself when it is a file, as the listing streams in."""
        request = volume_pb2.ListFilesRequest(volume=self._ref(), path=_remote(path),
                                              recursive=recursive)
        for reply in self._client.stream("ListFiles", request, f"list {self._where(path)}"):
            for e in reply.entries:
                yield FileEntry._from_proto(e)

    def listdir(self, path: PathLike = "/", *, recursive: bool = False) -> List[FileEntry]:
        """The entries under ``path``; with ``recursive``, the whole subtree."""
        return list(self.iterdir(path, recursive=recursive))

    def stat(self, path: PathLike) -> FileEntry:
        """The entry at ``path``."""
        e = self._client.call("Stat", volume_pb2.StatRequest(volume=self._ref(),
                                                             path=_remote(path)),
                              f"stat {self._where(path)}")
        return FileEntry._from_proto(e)

    def read_file(self, path: PathLike) -> Iterator[bytes]:
        """The content of the file at ``path`` as it streams in, any size.

        A generator: the file is read as it is consumed, and errors (such as
        NotFoundError) are raised by the first ``next``.
        """
        request = volume_pb2.ReadFileRequest(volume=self._ref(), path=_remote(path))
        for reply in self._client.stream("ReadFile", request, f"read {self._where(path)}"):
            if reply.data:
                yield reply.data

    def read_file_into_fileobj(self, path: PathLike, fileobj: IO[bytes]) -> int:
        """Writes the file at ``path`` into ``fileobj``; returns the bytes written."""
        written = 0
        for data in self.read_file(path):
            fileobj.write(data)
            written += len(data)
        return written

    # ---- changing ----------------------------------------------------------

    def remove_file(self, path: PathLike, *, recursive: bool = False) -> None:
        """Removes the file or directory at ``path`` in one commit.

        A directory needs ``recursive=True`` (FailedPreconditionError
        otherwise); a missing path raises NotFoundError.
        """
        self._client.call("RemoveFile", volume_pb2.RemoveFileRequest(
            volume=self._ref(), path=_remote(path), recursive=recursive),
            f"remove {self._where(path)}", retry=False)

    def copy_files(self, src_paths: Sequence[PathLike], dst_path: PathLike, *,
                   recursive: bool = False) -> None:
        """Copies files (and, with ``recursive``, directories) inside the
        volume, in one commit. No data moves: copies share the chunks.

        ``dst_path`` is an existing directory to copy into, or, for one
        source, the new path.
        """
        if isinstance(src_paths, (str, bytes)) or not src_paths:
            raise exceptions.InvalidError("copy_files takes a non-empty list of source paths")
        self._client.call("CopyFiles", volume_pb2.CopyFilesRequest(
            volume=self._ref(), sources=[_remote(p) for p in src_paths],
            destination=_remote(dst_path), recursive=recursive),
            f"copy to {self._where(dst_path)}", retry=False)

    @staticmethod
    def from_mount(path: PathLike) -> "MountedVolume":
        """The Cairn mount whose root is ``path`` (in a pod, or a ``cairn
        mount``), with ``commit()``, ``reload()`` and ``status()``.
        NotAMountError if ``path`` is not one."""
        return MountedVolume(os.fspath(path))

    def batch_upload(self, force: bool = False) -> "BatchUpload":
        """A context manager that uploads files and commits them all at once.

        ::

            with vol.batch_upload() as batch:
                batch.put_file("local.txt", "/remote.txt")
                batch.put_file(io.BytesIO(b"data"), "/data.bin")
                batch.put_directory("weights/", "/models/v1")

        Data is uploaded as the calls are made; the files appear in the
        volume in one atomic commit when the block exits, and not at all if
        it raises. Existing files are refused (AlreadyExistsError, and
        nothing is committed) unless ``force``; a directory is never
        replaced by a file.
        """
        return BatchUpload(self, force)


class _LeaseHolder:
    """Renews a volume's lease on a daemon thread until stopped."""

    def __init__(self, volume: Volume, seconds: int) -> None:
        self._volume = volume
        self._seconds = seconds
        self._stopped = threading.Event()
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"cairn-lease-{volume.name}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._seconds / 3):
            try:
                self._volume.renew_lease(self._seconds)
            except exceptions.NotFoundError as e:
                self.error = e  # lapsed or deleted: nothing left to hold
                return
            except exceptions.CairnError as e:
                self.error = e  # transient: try again at the next beat

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


@dataclasses.dataclass
class _Opened:
    key: bytes
    base_seq: int
    max_file_size: int


class BatchUpload:
    """Files to be committed together; see ``Volume.batch_upload``."""

    def __init__(self, volume: Volume, force: bool) -> None:
        self._volume = volume
        self._client = volume._client
        self._force = force
        self._changes: List[Any] = []
        self._paths: set[bytes] = set()
        self._pending: List[tuple[bytes, bytes]] = []  # (address, plaintext)
        self._opened: Optional[_Opened] = None
        self._done = False

    def __enter__(self) -> "BatchUpload":
        r = self._client.call("OpenVolume", volume_pb2.OpenVolumeRequest(
            volume=self._volume._ref()), f"open volume {self._volume.name}")
        self._opened = _Opened(key=r.data_key, base_seq=r.head.seq,
                               max_file_size=r.max_file_size)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._done = True
        if exc_type is not None:
            # Nothing is committed; the chunks already sent are unreferenced
            # and garbage collection removes them.
            return
        self._flush()
        if self._changes:
            self._commit()

    # ---- what a batch holds -------------------------------------------------

    def put_file(self, local_file: Union[PathLike, BinaryIO], remote_path: PathLike,
                 mode: Optional[int] = None) -> None:
        """Uploads a local file (a path or a binary file object) to
        ``remote_path``, a file path in the volume.

        The permission bits are the local file's (0644 for a file object)
        unless ``mode`` is given; the mtime is the local file's (now for a
        file object).
        """
        remote = self._claim(remote_path)
        if isinstance(local_file, (str, bytes, os.PathLike)):
            with open(local_file, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise exceptions.InvalidError(f"{os.fsdecode(local_file)} is not a file")
                entry = self._store(f, st.st_mode if mode is None else mode, st.st_mtime_ns)
        else:
            entry = self._store(local_file, 0o644 if mode is None else mode, time.time_ns())
        self._add_put(remote, entry)

    def put_directory(self, local_path: PathLike, remote_path: PathLike) -> None:
        """Uploads the tree under ``local_path`` so that its contents land
        under ``remote_path`` (directories, files and symlinks; FIFOs,
        sockets and devices are left out)."""
        root = os.fspath(local_path)
        if not os.path.isdir(root):
            raise exceptions.InvalidError(f"{root} is not a directory")
        base = _remote(remote_path).rstrip(b"/")
        if base:
            self._add_dir(base, os.stat(root))
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            prefix = base if rel == "." else b"/".join(
                p for p in (base, os.fsencode(rel)) if p)
            for d in list(dirnames):
                full = os.path.join(dirpath, d)
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    dirnames.remove(d)  # os.walk would not descend; store the link
                    self._put_symlink(full, self._join(prefix, d), st)
                else:
                    self._add_dir(self._join(prefix, d), st)
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                remote = self._join(prefix, name)
                if stat.S_ISLNK(st.st_mode):
                    self._put_symlink(full, remote, st)
                elif stat.S_ISREG(st.st_mode):
                    self.put_file(full, remote)

    # ---- internals -----------------------------------------------------------

    @staticmethod
    def _join(prefix: bytes, name: str) -> bytes:
        return prefix + b"/" + os.fsencode(name) if prefix else os.fsencode(name)

    def _check_open(self) -> _Opened:
        if self._opened is None or self._done:
            raise exceptions.InvalidError(
                "use the batch inside its `with vol.batch_upload() as batch:` block")
        return self._opened

    def _claim(self, remote_path: PathLike) -> bytes:
        self._check_open()
        remote = _remote(remote_path)
        if not remote or remote.endswith(b"/"):
            raise exceptions.InvalidError(
                f"{os.fsdecode(os.fsencode(remote_path))!r} is not a file path in the volume")
        if remote in self._paths:
            raise exceptions.InvalidError(
                f"{os.fsdecode(remote)} is given twice in one batch upload")
        self._paths.add(remote)
        return remote

    def _add_put(self, remote: bytes, entry: Any) -> None:
        self._changes.append(objects_pb2.Change(
            kind=objects_pb2.Change.PUT, path=remote, entry=entry,
            no_replace=not self._force, keep_directories=True))

    def _add_dir(self, remote: bytes, st: os.stat_result) -> None:
        self._check_open()
        self._changes.append(objects_pb2.Change(
            kind=objects_pb2.Change.MKDIR, path=remote, entry=objects_pb2.Entry(
                type=objects_pb2.DIRECTORY, mode=st.st_mode & 0o7777,
                mtime_ns=st.st_mtime_ns)))

    def _put_symlink(self, local: str, remote: bytes, st: os.stat_result) -> None:
        remote = self._claim(remote)
        self._add_put(remote, objects_pb2.Entry(
            type=objects_pb2.SYMLINK, mode=st.st_mode & 0o7777, mtime_ns=st.st_mtime_ns,
            symlink_target=os.fsencode(os.readlink(local))))

    def _store(self, f: BinaryIO, mode: int, mtime_ns: int) -> Any:
        """Reads ``f`` to its end: inline when small, else chunked and sent."""
        opened = self._check_open()
        entry = objects_pb2.Entry(type=objects_pb2.FILE, mode=mode & 0o7777, mtime_ns=mtime_ns)
        head = _read_full(f, _crypto.INLINE_MAX + 1)
        if len(head) <= _crypto.INLINE_MAX:
            entry.inline_data = head
            entry.size = len(head)
            return entry
        size = 0
        chunk = head + _read_full(f, _crypto.CHUNK_SIZE - len(head))
        while chunk:
            size += len(chunk)
            if opened.max_file_size and size >= opened.max_file_size:
                raise exceptions.LimitExceededError(
                    f"file is larger than the volume's limit of {opened.max_file_size} bytes")
            address = _crypto.address(opened.key, chunk)
            entry.chunks.append(address)
            self._pending.append((address, chunk))
            if len(self._pending) >= _CHUNKS_PER_FLUSH:
                self._flush()
            if len(chunk) < _crypto.CHUNK_SIZE:
                break
            chunk = _read_full(f, _crypto.CHUNK_SIZE)
        entry.size = size
        return entry

    def _flush(self) -> None:
        """Sends the pending chunks the server does not hold yet."""
        if not self._pending:
            return
        opened = self._opened
        assert opened is not None
        pending, self._pending = self._pending, []
        volume_id = self._volume.object_id
        unique = {a: data for a, data in pending}
        r = self._client.call("MissingObjects", volume_pb2.MissingObjectsRequest(
            volume_id=volume_id, addresses=list(unique)), f"upload to {self._volume.name}")
        missing = list(r.missing)
        if not missing:
            return

        def requests() -> Iterator[Any]:
            for i, address in enumerate(missing):
                yield volume_pb2.PutObjectsRequest(
                    volume_id=volume_id if i == 0 else "", address=address,
                    sealed=_crypto.seal(opened.key, address, unique[address]))

        self._client.client_stream("PutObjects", requests(), f"upload to {self._volume.name}")

    def _commit(self) -> None:
        assert self._opened is not None
        request = volume_pb2.CommitRequest(
            volume_id=self._volume.object_id, base_seq=self._opened.base_seq,
            changes=objects_pb2.ChangeSet(changes=self._changes),
            # Resent unchanged on retry: a commit whose reply was lost is
            # answered with the snapshot it made, not applied twice.
            idempotency_key=uuid.uuid4().hex)
        try:
            self._client.call("Commit", request, f"commit to {self._volume.name}")
        except exceptions.AlreadyExistsError as e:
            raise exceptions.AlreadyExistsError(
                f"{e.message} (use batch_upload(force=True) to overwrite)", e.code) from None


def _read_full(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes; fewer only at the end of ``f``."""
    parts = []
    while n > 0:
        data = f.read(n)
        if not data:
            break
        parts.append(data)
        n -= len(data)
    return b"".join(parts)
