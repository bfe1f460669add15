"""The connection to a Cairn control plane (the gRPC Volume API)."""

from __future__ import annotations

import os
import random
import time
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import grpc

from . import exceptions
from ._proto import volume_pb2_grpc

DEFAULT_SERVER = "127.0.0.1:7420"
# Large enough for a whole listing or commit reply of a big tree.
_MAX_MESSAGE_BYTES = 1 << 30

T = TypeVar("T")


def _read_token_file(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if not token:
        raise exceptions.InvalidError(f"token file {path} is empty")
    return token


class Client:
    """A channel to the control plane, with its bearer token and namespace.

    Arguments default to the environment the ``cairn`` CLI reads:
    ``CAIRN_SERVER`` (host:port, default 127.0.0.1:7420), ``CAIRN_TOKEN`` or
    ``CAIRN_TOKEN_FILE``, ``CAIRN_NAMESPACE`` (default "default") and
    ``CAIRN_CA_FILE`` (TLS with that CA; plaintext when unset).

    ``wait`` is how long a call waits for an unreachable server before it
    fails with UnavailableError (``CAIRN_SERVER_WAIT``, default 15 s).
    A Client is safe to share between threads.
    """

    def __init__(self, server: Optional[str] = None, *, token: Optional[str] = None,
                 namespace: Optional[str] = None, ca_file: Optional[str] = None,
                 wait: Optional[float] = None, timeout: float = 300.0) -> None:
        env = os.environ
        self.server = server or env.get("CAIRN_SERVER") or DEFAULT_SERVER
        if token is None:
            token = env.get("CAIRN_TOKEN")
            if token is None and env.get("CAIRN_TOKEN_FILE"):
                token = _read_token_file(env["CAIRN_TOKEN_FILE"])
        self.namespace = namespace or env.get("CAIRN_NAMESPACE") or "default"
        self.wait = float(wait if wait is not None else env.get("CAIRN_SERVER_WAIT", 15))
        self.timeout = timeout
        self._metadata: Sequence[tuple[str, str]] = (
            (("authorization", f"Bearer {token}"),) if token else ())
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", -1)]
        ca_file = ca_file or env.get("CAIRN_CA_FILE")
        if ca_file:
            with open(ca_file, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            self._channel = grpc.secure_channel(self.server, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(self.server, options=options)
        self.stub = volume_pb2_grpc.VolumeServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def call(self, method: str, request: Any, context: str = "", *,
             retry: bool = True) -> Any:
        """Calls a unary method, waiting out an unreachable server for ``wait``
        seconds when ``retry`` (the call must be safe to repeat)."""
        fn = getattr(self.stub, method)
        return self._retrying(
            lambda: fn(request, timeout=self.timeout, metadata=self._metadata), context, retry)

    def stream(self, method: str, request: Any, context: str = "") -> Iterator[Any]:
        """Calls a server-streaming method; yields its replies."""
        fn = getattr(self.stub, method)
        try:
            # Only the connection is waited for: a stream that broke half-way
            # is not resumed here (the caller may, from its offset).
            for reply in fn(request, timeout=self.timeout, metadata=self._metadata,
                            wait_for_ready=True):
                yield reply
        except grpc.RpcError as e:
            raise exceptions.from_rpc_error(e, context) from None

    def client_stream(self, method: str, requests: Iterator[Any], context: str = "") -> Any:
        """Calls a client-streaming method (not retried: the iterator is consumed)."""
        fn = getattr(self.stub, method)
        try:
            return fn(requests, timeout=self.timeout, metadata=self._metadata,
                      wait_for_ready=True)
        except grpc.RpcError as e:
            raise exceptions.from_rpc_error(e, context) from None

    def _retrying(self, attempt: Callable[[], T], context: str, retry: bool) -> T:
        deadline = time.monotonic() + self.wait
        delay = 0.05
        while True:
            try:
                return attempt()
            except grpc.RpcError as e:
                if (not retry or e.code() != grpc.StatusCode.UNAVAILABLE or
                        time.monotonic() + delay > deadline):
                    raise exceptions.from_rpc_error(e, context) from None
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


_default: Optional[Client] = None


def default_client() -> Client:
    """The process-wide client built from the environment (made on first use)."""
    global _default
    if _default is None:
        _default = Client()
    return _default
