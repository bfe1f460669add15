"""Python client for Cairn: versioned, shared volumes for Kubernetes.

    import cairn

    vol = cairn.Volume.from_name("my-volume", create_if_missing=True)
    with vol.batch_upload() as batch:
        batch.put_file("model.safetensors", "/models/v1/model.safetensors")
    for entry in vol.iterdir("/models", recursive=True):
        print(entry.path, entry.size)
    data = b"".join(vol.read_file("/models/v1/model.safetensors"))

The control plane is found through ``CAIRN_SERVER`` (and ``CAIRN_TOKEN`` /
``CAIRN_TOKEN_FILE``, ``CAIRN_NAMESPACE``, ``CAIRN_CA_FILE``), or an explicit
``cairn.Client`` passed as ``client=``. Inside a pod that mounts a volume,
``cairn.Volume.from_mount("/data")`` commits and reloads that mount.
"""

from . import exceptions
from ._client import Client
from .exceptions import (AlreadyExistsError, CairnError, CommitError, ConflictError,
                         FailedPreconditionError, InvalidError, LimitExceededError,
                         NotAMountError, NotFoundError, UnavailableError, VolumeBusyError)
from .mount import MountedVolume
from .volume import BatchUpload, FileEntry, FileEntryType, Volume, VolumeInfo

__all__ = [
    "AlreadyExistsError", "BatchUpload", "CairnError", "Client", "CommitError", "ConflictError",
    "FailedPreconditionError", "FileEntry", "FileEntryType", "InvalidError",
    "LimitExceededError", "MountedVolume", "NotAMountError", "NotFoundError",
    "UnavailableError", "Volume", "VolumeBusyError", "VolumeInfo", "exceptions",
]
__version__ = "0.1.0"
