"""A volume as mounted in this pod or machine (``cairn mount``, or CSI).

The mounter answers three extended attributes on its root (the control
interface, docs/mounter.md): ``user.cairn.status`` (JSON), and
``user.cairn.commit`` / ``user.cairn.reload`` (set to "1"). This module
wraps them so training code can checkpoint and serving code can pick up new
weights without a shell.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any, Dict, List

from . import exceptions

_STATUS = "user.cairn.status"
_COMMIT = "user.cairn.commit"
_RELOAD = "user.cairn.reload"


class MountedVolume:
    """The Cairn mount whose root is ``path``; see ``Volume.from_mount``."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        status = self.status()  # NotAMountError when it is not one
        self.name: str = status.get("volume", "")
        self.object_id: str = status.get("volume_id", "")

    def __repr__(self) -> str:
        return f"MountedVolume({self.name} at {self.path})"

    def status(self) -> Dict[str, Any]:
        """The mount's status: ``base_seq`` (the snapshot it shows), ``dirty``,
        ``pending_changes``, ``open_files``, ``last_commit_error`` and more
        (docs/mounter.md lists them)."""
        try:
            raw = os.getxattr(self.path, _STATUS)
        except OSError as e:
            raise exceptions.NotAMountError(
                f"{self.path} is not the root of a cairn mount ({os.strerror(e.errno)})") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise exceptions.NotAMountError(
                f"{self.path} answered a status that is not JSON: {raw[:80]!r}") from None

    def commit(self) -> None:
        """Publishes the mount's changes now; returns once the control plane
        accepted them. LimitExceededError for a volume limit, CommitError
        with the control plane's reason otherwise."""
        try:
            os.setxattr(self.path, _COMMIT, b"1")
        except OSError as e:
            reason = self._status_field("last_commit_error") or os.strerror(e.errno)
            if e.errno == errno.ENOSPC:
                raise exceptions.LimitExceededError(f"commit of {self.path}: {reason}") from None
            raise exceptions.CommitError(f"commit of {self.path} failed: {reason}") from None

    def reload(self) -> None:
        """Moves the mount to the volume's newest snapshot, keeping its own
        uncommitted changes on top. VolumeBusyError, naming the open files
        it can find, while files are open on the mount."""
        try:
            os.setxattr(self.path, _RELOAD, b"1")
        except OSError as e:
            reason = self._status_field("last_reload_error") or os.strerror(e.errno)
            if e.errno == errno.EBUSY:
                files = open_files_under(self.path)
                shown = (": " + ", ".join(files[:10]) + (" …" if len(files) > 10 else "")
                         if files else "")
                raise exceptions.VolumeBusyError(
                    f"cannot reload {self.path}: {reason}{shown}", files) from None
            raise exceptions.CairnError(f"reload of {self.path} failed: {reason}") from None

    def _status_field(self, key: str) -> str:
        try:
            return str(self.status().get(key) or "")
        except exceptions.CairnError:
            return ""


def open_files_under(path: str) -> List[str]:
    """Files under ``path`` that processes of this machine hold open, as
    far as /proc lets this user see (other users' processes may be hidden)."""
    prefix = os.path.abspath(path).rstrip("/") + "/"
    found = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith(prefix):
                found.add(target)
    return sorted(found)
