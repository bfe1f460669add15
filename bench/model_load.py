"""Model-loading workload for bench/model_load_bench.sh: real numpy and
safetensors (from PyPI, in a venv outside the repository).

  model_load.py write PATH SIZE_MIB     a safetensors file of random float32
                                        tensors, about SIZE_MIB MiB
  model_load.py all PATH                load every tensor; prints seconds
  model_load.py some PATH COUNT SEED    load COUNT tensors chosen at random
                                        (seeded); prints seconds
  model_load.py digest PATH             SHA-256 over all tensors, in name
                                        order (checks a copy is the same)

safetensors maps the file and copies each tensor out of the mapping, so
reads come through the page cache as page faults and kernel readahead, as
they do when a framework loads weights.
"""

import hashlib
import random
import sys
import time

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


def write(path, size_mib):
    rng = np.random.default_rng(13)
    # Shapes like a transformer's: many mid-sized matrices, a few big ones.
    tensors = {}
    left = size_mib << 20
    i = 0
    while left > 0:
        rows = 4096 if i % 8 else 16384
        cols = min(2048, max(1, left // 4 // rows))
        tensors[f"layer{i:03d}.weight"] = rng.standard_normal((rows, cols), dtype=np.float32)
        left -= rows * cols * 4
        i += 1
    save_file(tensors, path)


def load_all(path):
    start = time.perf_counter()
    tensors = load_file(path)
    elapsed = time.perf_counter() - start
    if not tensors:
        raise SystemExit(f"{path}: no tensors")
    return elapsed


def load_some(path, count, seed):
    start = time.perf_counter()
    with safe_open(path, framework="np") as f:
        names = sorted(f.keys())
        for name in random.Random(seed).sample(names, min(count, len(names))):
            if f.get_tensor(name).size == 0:
                raise SystemExit(f"{path}: empty tensor {name}")
    return time.perf_counter() - start


def digest(path):
    h = hashlib.sha256()
    with safe_open(path, framework="np") as f:
        for name in sorted(f.keys()):
            h.update(name.encode())
            h.update(f.get_tensor(name).tobytes())
    return h.hexdigest()


def main(argv):
    if len(argv) >= 4 and argv[1] == "write":
        write(argv[2], int(argv[3]))
    elif len(argv) >= 3 and argv[1] == "all":
        print(f"{load_all(argv[2]):.4f}")
    elif len(argv) >= 5 and argv[1] == "some":
        print(f"{load_some(argv[2], int(argv[3]), int(argv[4])):.4f}")
    elif len(argv) >= 3 and argv[1] == "digest":
        print(digest(argv[2]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
