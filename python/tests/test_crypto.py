"""Sealing is byte-compatible with the C++ core (shared vectors)."""

from __future__ import annotations

import json

import pytest

from cairn import _crypto
from make_sealing_vectors import VECTORS_PATH, make, pattern


@pytest.fixture(scope="module")
def vectors() -> dict:
    return json.loads(VECTORS_PATH.read_text())


def test_vectors_file_is_what_the_generator_writes(vectors):
    # The checked-in file is the generator's output (regenerate with
    # python3 python/tests/make_sealing_vectors.py).
    assert vectors == make()


def test_every_vector_addresses_reseals_and_opens(vectors):
    key = bytes.fromhex(vectors["data_key"])
    assert len(vectors["vectors"]) >= 4
    for v in vectors["vectors"]:
        plain = pattern(v["size"])
        addr = bytes.fromhex(v["address"])
        sealed = bytes.fromhex(v["sealed"])
        assert _crypto.address(key, plain) == addr
        assert _crypto.open_sealed(key, addr, sealed) == plain
        if v["form"] == "blocked":
            assert len(sealed) == _crypto.sealed_size(v["size"])
            assert _crypto.seal(key, addr, plain, salt=bytes.fromhex(v["salt"])) == sealed


def test_tampering_fails_to_open(vectors):
    key = bytes.fromhex(vectors["data_key"])
    v = next(v for v in vectors["vectors"] if v["size"] > _crypto.BLOCK_SIZE)
    addr = bytes.fromhex(v["address"])
    sealed = bytearray.fromhex(v["sealed"])
    for at in (0, 9, 20, 40, len(sealed) - 1, 32 + _crypto.BLOCK_SIZE + 16 + 3):
        bad = bytearray(sealed)
        bad[at] ^= 1
        with pytest.raises(_crypto.SealError):
            _crypto.open_sealed(key, addr, bytes(bad))
    with pytest.raises(_crypto.SealError):
        _crypto.open_sealed(key, bytes(32), bytes(sealed))  # another address
    with pytest.raises(_crypto.SealError):
        _crypto.open_sealed(key, addr, bytes(sealed[:-1]))  # truncated


def test_random_salts_differ_and_both_open():
    key = bytes(range(64))
    plain = b"x" * 1000
    addr = _crypto.address(key, plain)
    a, b = _crypto.seal(key, addr, plain), _crypto.seal(key, addr, plain)
    assert a != b
    assert _crypto.open_sealed(key, addr, a) == _crypto.open_sealed(key, addr, b) == plain


def test_bad_key_size_is_an_error():
    with pytest.raises(ValueError):
        _crypto.address(b"short", b"x")
