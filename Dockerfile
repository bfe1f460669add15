# One image with every Cairn binary: cairn (CLI + standalone server),
# cairn-operator (control plane) and cairn-mount (FUSE mounter).
# Built from Debian packages only, like the development machines.
FROM debian:bookworm-slim AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libfuse3-dev libcpp-httplib-dev libyaml-cpp-dev libsqlite3-dev libssl-dev \
      libgtest-dev libgmock-dev libbenchmark-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    && ninja -C /build bin_links \
    && mkdir -p /out \
    && cp -L /build/bin/* /out/

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      fuse3 ca-certificates libgrpc++1.51 libprotobuf32 libfuse3-3 libyaml-cpp0.7 \
      libsqlite3-0 libssl3 libcpp-httplib0.11 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
# The standalone control plane listens on 7420 (gRPC) and 7421 (metrics).
# Off loopback it requires a bearer token: mount one (e.g. a Kubernetes
# Secret) at /etc/cairn/token, or override the command.
EXPOSE 7420 7421
ENTRYPOINT ["/usr/local/bin/cairn"]
CMD ["server", "--data", "/var/lib/cairn", "--listen", "0.0.0.0:7420", \
     "--metrics-listen", "0.0.0.0:7421", "--token-file", "/etc/cairn/token"]
