# One image with every Cairn binary: cairn (CLI + standalone server),
# cairn-operator (control plane), cairn-mount (FUSE mounter) and cairn-csi
# (CSI plugin) when the tree has it: the build stage builds the `bin_links`
# target, which gathers whichever of them the tree defines.
# Built from Debian packages only, like the development machines; the build
# runs the same scripts the README does. e2e/image/build-image.sh builds it
# with buildah (no Docker daemon needed) and checks the result.

FROM debian:bookworm-slim AS build
# Lets build-image.sh find and drop build stages that a newer build replaced.
LABEL dev.cairn.stage=build
WORKDIR /src
# setup.sh alone first: the package layer is reused until the list changes.
COPY scripts/setup.sh scripts/setup.sh
RUN scripts/setup.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
# build/ inside the source tree, as on a development machine, so ccache keys
# (paths relative to the checkout) match the host's when its cache is mounted
# at /root/.cache/cairn/ccache (build-image.sh does).
RUN scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_WERROR=ON -- bin_links \
    && mkdir -p /out \
    && for b in build/bin/*; do strip --strip-debug -o "/out/${b##*/}" "$(readlink -f "$b")"; done

FROM debian:bookworm-slim
# Exactly the packages that own the shared libraries the binaries load
# (derived with ldd + dpkg -S; e2e/image/runtime-packages.sh --check-image
# fails the image build when this list and the binaries disagree). libc6,
# libgcc-s1 and libstdc++6 come with the base.
ARG RUNTIME_LIBRARIES="\
      libabsl20220623 libbrotli1 libc-ares2 libcom-err2 libcpp-httplib0.11 libffi8 libfuse3-3 \
      libgmp10 libgnutls30 libgrpc++1.51 libgrpc29 libgssapi-krb5-2 libhogweed6 libidn2-0 \
      libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 libldap-2.5-0 libnettle8 libp11-kit0 \
      libpq5 libprotobuf32 libre2-9 libsasl2-2 libsqlite3-0 libssl3 libtasn1-6 libunistring2 \
      libyaml-cpp0.7 zlib1g"
# fuse3 brings fusermount3, which the mounter falls back to for unmounting;
# ca-certificates lets the control plane verify S3 and API server endpoints.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       $RUNTIME_LIBRARIES fuse3 ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/cairn --create-home cairn
COPY --from=build /out/ /usr/local/bin/
# Non-root by default: the control plane (cairn-operator, cairn server), the
# CSI controller and the CLI need no privilege. The CSI node plugin and the
# mounter it starts run as root with /dev/fuse (the chart sets that per
# container): mounting FUSE at a pod's target path is a mount(2) in the
# host's mount namespace under the kubelet's directory, which needs
# CAP_SYS_ADMIN, and Kubernetes allows the Bidirectional mount propagation
# that carries the mount back to the kubelet only for privileged containers.
USER 10001:10001
# The standalone control plane listens on 7420 (gRPC) and 7421 (metrics).
# Off loopback it requires a bearer token: mount one (e.g. a Kubernetes
# Secret) at /etc/cairn/token, or override the command.
EXPOSE 7420 7421
ENTRYPOINT ["/usr/local/bin/cairn"]
CMD ["server", "--data", "/var/lib/cairn", "--listen", "0.0.0.0:7420", \
     "--metrics-listen", "0.0.0.0:7421", "--token-file", "/etc/cairn/token"]
