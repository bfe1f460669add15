"""Writes core/testdata/sealing_vectors.json, the shared sealing test vectors.

The C++ suite (core/crypto_test.cc, SealingVectorsTest) opens every vector
with DataKey and checks its address; the Python suite (test_crypto.py)
re-seals each one with its salt and must reproduce the bytes exactly.
Plaintexts are the pattern byte i = (i * 131 + 7) mod 256, of `size` bytes.

    python3 python/tests/make_sealing_vectors.py   # from the repository root
"""

from __future__ import annotations

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cairn import _crypto  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

VECTORS_PATH = HERE.parent.parent / "core" / "testdata" / "sealing_vectors.json"
DATA_KEY = bytes(range(64))
# (size, form): 0 (one empty block), 1, a block and a byte
# (two blocks, the last short), several blocks, and the single-block form
# older writers used.
CASES = [(0, "blocked"), (1, "blocked"), (16385, "blocked"), (65537, "blocked"), (300, "single")]


def pattern(size: int) -> bytes:
    return bytes((i * 131 + 7) & 0xFF for i in range(size))


def make() -> dict:
    vectors = []
    for n, (size, form) in enumerate(CASES):
        plain = pattern(size)
        addr = _crypto.address(DATA_KEY, plain)
        salt = bytes((n * 16 + j) & 0xFF for j in range(16))  # the nonce for "single"
        if form == "blocked":
            sealed = _crypto.seal(DATA_KEY, addr, plain, salt=salt)
        else:
            nonce = salt[:12]
            sealed = nonce + AESGCM(DATA_KEY[:32]).encrypt(nonce, plain, addr)
        vectors.append({"size": size, "form": form, "salt": salt.hex(), "address": addr.hex(),
                        "sealed": sealed.hex()})
    return {
        "comment": "Shared sealing vectors (docs/decisions.md D33). Written by "
                   "python/tests/make_sealing_vectors.py; checked by core/crypto_test.cc and "
                   "python/tests/test_crypto.py. Plaintext byte i = (i * 131 + 7) mod 256. "
                   "For form 'single' the first 12 bytes of 'salt' are the nonce.",
        "data_key": DATA_KEY.hex(),
        "vectors": vectors,
    }


if __name__ == "__main__":
    VECTORS_PATH.write_text(json.dumps(make(), indent=1) + "\n")
    print(f"wrote {VECTORS_PATH}")
