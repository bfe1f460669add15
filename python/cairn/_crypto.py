"""Addressing and sealing of chunks, byte-compatible with Cairn's core.

A volume's data key is 64 bytes: the first 32 are the AES-256-GCM key, the
last 32 the HMAC-SHA-256 key. A chunk's address is HMAC(mac key, plaintext),
so the same content has the same address inside a volume and nothing is
comparable across volumes.

Objects are written in the blocked form (format version 2):

    header (32 bytes): b"CRN\\x02" | block shift (16) | 3 zero bytes |
                       plaintext size (u64 little-endian) | salt (16 bytes)
    block i:           AES-256-GCM ciphertext || tag (16 bytes)

Each sealing derives its own key, HMAC-SHA-256(aes key, label || address ||
salt); block i's nonce is 4 zero bytes || i (u64 big-endian), its additional
data is header || address || i (u64 big-endian). An empty plaintext has one
empty block. ``open_sealed`` also reads the older single-block form
(12-byte nonce || ciphertext || tag, the address as additional data).

The shared test vectors in core/testdata/sealing_vectors.json are checked by
both the C++ and the Python test suites.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DATA_KEY_SIZE = 64
ADDRESS_SIZE = 32
CHUNK_SIZE = 4 << 20
INLINE_MAX = 4096

HEADER_SIZE = 32
TAG_SIZE = 16
BLOCK_SHIFT = 14  # 16 KiB blocks, as the C++ writers (core/crypto.h kSealBlockShift, D31)
BLOCK_SIZE = 1 << BLOCK_SHIFT
_MIN_SHIFT = 12
_MAX_SHIFT = 24
_SALT_SIZE = 16
_NONCE_SIZE = 12
_MAGIC = b"CRN\x02"
_BLOCK_KEY_LABEL = b"cairn blocked chunk key v2"


class SealError(ValueError):
    """A sealed object failed to authenticate or is malformed."""


def _check_key(key: bytes) -> None:
    if len(key) != DATA_KEY_SIZE:
        raise ValueError(f"a data key has {DATA_KEY_SIZE} bytes, not {len(key)}")


def address(key: bytes, plaintext: bytes) -> bytes:
    """The content address of ``plaintext`` in the volume whose data key is ``key``."""
    _check_key(key)
    return hmac.new(key[32:], plaintext, hashlib.sha256).digest()


def _block_count(size: int, shift: int) -> int:
    return 1 if size == 0 else ((size - 1) >> shift) + 1


def sealed_size(size: int) -> int:
    """Bytes of a plaintext of ``size`` bytes once sealed."""
    return HEADER_SIZE + size + _block_count(size, BLOCK_SHIFT) * TAG_SIZE


def _block_cipher(key: bytes, addr: bytes, salt: bytes) -> AESGCM:
    block_key = hmac.new(key[:32], _BLOCK_KEY_LABEL + addr + salt, hashlib.sha256).digest()
    return AESGCM(block_key)


def _nonce(index: int) -> bytes:
    return b"\0\0\0\0" + struct.pack(">Q", index)


def seal(key: bytes, addr: bytes, plaintext: bytes, salt: bytes | None = None) -> bytes:
    """Seals ``plaintext`` stored under ``addr`` in the blocked form.

    ``salt`` is random unless given (tests give it to reproduce a vector).
    """
    _check_key(key)
    if len(addr) != ADDRESS_SIZE:
        raise ValueError(f"an address has {ADDRESS_SIZE} bytes, not {len(addr)}")
    if salt is None:
        salt = os.urandom(_SALT_SIZE)
    if len(salt) != _SALT_SIZE:
        raise ValueError(f"a salt has {_SALT_SIZE} bytes, not {len(salt)}")
    header = _MAGIC + bytes([BLOCK_SHIFT, 0, 0, 0]) + struct.pack("<Q", len(plaintext)) + salt
    cipher = _block_cipher(key, addr, salt)
    view = memoryview(plaintext)
    parts = [header]
    for i in range(_block_count(len(plaintext), BLOCK_SHIFT)):
        block = view[i * BLOCK_SIZE:(i + 1) * BLOCK_SIZE]
        parts.append(cipher.encrypt(_nonce(i), bytes(block), header + addr + struct.pack(">Q", i)))
    return b"".join(parts)


def _parse_blocked(sealed: bytes) -> tuple[int, int] | None:
    """(shift, plaintext size) if ``sealed`` is a well-formed blocked object."""
    if len(sealed) < HEADER_SIZE + TAG_SIZE or sealed[:4] != _MAGIC:
        return None
    shift = sealed[4]
    if not _MIN_SHIFT <= shift <= _MAX_SHIFT or sealed[5:8] != b"\0\0\0":
        return None
    (size,) = struct.unpack("<Q", sealed[8:16])
    if size > len(sealed):
        return None
    if HEADER_SIZE + size + _block_count(size, shift) * TAG_SIZE != len(sealed):
        return None
    return shift, size


def _open_blocked(key: bytes, addr: bytes, sealed: bytes, shift: int, size: int) -> bytes:
    header = sealed[:HEADER_SIZE]
    cipher = _block_cipher(key, addr, header[16:32])
    block_size = 1 << shift
    out = []
    at = HEADER_SIZE
    for i in range(_block_count(size, shift)):
        n = min(block_size, size - i * block_size)
        try:
            out.append(cipher.decrypt(_nonce(i), sealed[at:at + n + TAG_SIZE],
                                      header + addr + struct.pack(">Q", i)))
        except InvalidTag:
            raise SealError(f"block {i}: authentication tag mismatch "
                            "(corrupt data, wrong key or wrong address)") from None
        at += n + TAG_SIZE
    return b"".join(out)


def open_sealed(key: bytes, addr: bytes, sealed: bytes) -> bytes:
    """The plaintext of a sealed object of either form; SealError if it does not verify."""
    _check_key(key)
    if len(sealed) < _NONCE_SIZE + TAG_SIZE:
        raise SealError(f"sealed object is {len(sealed)} bytes, shorter than nonce and tag")
    layout = _parse_blocked(sealed)
    if layout is not None:
        try:
            return _open_blocked(key, addr, sealed, *layout)
        except SealError:
            pass  # a single-block object whose random nonce looks like a header
    try:
        return AESGCM(key[:32]).decrypt(sealed[:_NONCE_SIZE], sealed[_NONCE_SIZE:], addr)
    except InvalidTag:
        raise SealError("authentication tag mismatch "
                        "(corrupt data, wrong key or wrong address)") from None
