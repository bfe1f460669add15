"""Errors raised by the Cairn client.

Every error of the Volume API arrives as a gRPC status; ``from_rpc_error``
turns it into the exception class of its code, carrying the server's message.
Errors of a mount's control interface (``Volume.from_mount``) arrive as an
errno and become the same classes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import grpc


class CairnError(Exception):
    """Base class of every error this package raises on purpose."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NotFoundError(CairnError):
    """The volume, file or directory does not exist (NOT_FOUND)."""


class AlreadyExistsError(CairnError):
    """Something already exists where it would be created (ALREADY_EXISTS)."""


class InvalidError(CairnError, ValueError):
    """The request is malformed: a bad name or path, a bad argument (INVALID_ARGUMENT)."""


class FailedPreconditionError(CairnError):
    """The state must be fixed first, e.g. a directory removed without recursive=True."""


class ConflictError(CairnError):
    """A concurrent change got there first; redo the read-modify-write (ABORTED)."""


class LimitExceededError(CairnError):
    """A volume limit was reached: inodes, directory entries, file size (RESOURCE_EXHAUSTED)."""


class UnavailableError(CairnError):
    """The control plane could not be reached or went away; retry (UNAVAILABLE)."""


class AuthError(CairnError):
    """The token is missing, wrong, or lacks permission (UNAUTHENTICATED, PERMISSION_DENIED)."""


class DataLossError(CairnError):
    """Stored data failed to authenticate (DATA_LOSS)."""


class DeadlineExceededError(CairnError, TimeoutError):
    """The call did not finish in time (DEADLINE_EXCEEDED)."""


class VolumeBusyError(CairnError):
    """A mount cannot reload while files are open on it.

    ``open_files`` names the open files when they could be found (the
    processes of this machine that this user may inspect); it may be empty.
    """

    def __init__(self, message: str, open_files: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.open_files = list(open_files)


class NotAMountError(CairnError):
    """The path given to ``Volume.from_mount`` is not the root of a Cairn mount."""


class CommitError(CairnError):
    """A mount's commit failed; the message is the control plane's reason."""


_BY_CODE = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: ConflictError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceededError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: AuthError,
    grpc.StatusCode.PERMISSION_DENIED: AuthError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_rpc_error(error: grpc.RpcError, context: str = "") -> CairnError:
    """The typed exception for a failed gRPC call, with the server's message."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    message = f"{context}: {details}" if context else (details or str(code))
    return _BY_CODE.get(code, CairnError)(message, code)
