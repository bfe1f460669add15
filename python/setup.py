"""Builds the cairn package, generating the Volume API stubs from ../proto.

The generated modules are not checked in: they are made here, at build time,
from the same .proto files the C++ build uses, so they cannot drift. The
protos import each other as "proto/…"; they are copied into the package's
namespace (cairn/_proto) with that import rewritten, so the generated code
imports `cairn._proto.objects_pb2` instead of a top-level `proto` package.
The wire format does not depend on file paths (the proto packages stay
cairn.api and cairn.objects).
"""

from __future__ import annotations

import pathlib
import re
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
PROTO_DIR = HERE.parent / "proto"
PROTOS = ["objects.proto", "volume.proto"]


def generate(out_dir: pathlib.Path) -> None:
    from grpc_tools import protoc
    import grpc_tools

    missing = [p for p in PROTOS if not (PROTO_DIR / p).is_file()]
    if missing:
        raise SystemExit(f"cairn: {', '.join(missing)} not found in {PROTO_DIR}; "
                         "install from a checkout of the Cairn repository (pip install ./python)")
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "cairn" / "_proto"
        src.mkdir(parents=True)
        for name in PROTOS:
            text = (PROTO_DIR / name).read_text()
            text = re.sub(r'import "proto/', 'import "cairn/_proto/', text)
            (src / name).write_text(text)
        include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
        args = ["grpc_tools.protoc", f"-I{tmp}", f"-I{include}", f"--python_out={out_dir}",
                f"--pyi_out={out_dir}"]
        args += [str(src / "objects.proto")]
        if protoc.main(args) != 0:
            raise SystemExit("cairn: protoc failed on objects.proto")
        args = ["grpc_tools.protoc", f"-I{tmp}", f"-I{include}", f"--python_out={out_dir}",
                f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", str(src / "volume.proto")]
        if protoc.main(args) != 0:
            raise SystemExit("cairn: protoc failed on volume.proto")


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        super().run()
        generate(pathlib.Path(self.build_lib))


setup(cmdclass={"build_py": BuildPyWithProtos})
