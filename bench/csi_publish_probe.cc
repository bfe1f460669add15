// One NodePublishVolume against a running cairn-csi, timed until FILE in
// the new mount yields its first byte; then NodeUnpublishVolume. Prints
// "<publish seconds> <first-byte seconds>" (both from the publish call).
// Used by bench/csi_bench.sh.
//
//   cairn_csi_publish_probe SOCKET VOLUME TARGET FILE
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "grpcpp/grpcpp.h"
#include "proto/csi.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s SOCKET VOLUME TARGET FILE\n", argv[0]);
    return 2;
  }
  auto channel = grpc::CreateChannel(std::string("unix://") + argv[1],
                                     grpc::InsecureChannelCredentials());
  auto node = csi::v1::Node::NewStub(channel);
  csi::v1::NodePublishVolumeRequest req;
  req.set_volume_id(std::string("bench-") + argv[2]);
  req.set_target_path(argv[3]);
  req.mutable_volume_capability()->mutable_mount();
  req.mutable_volume_capability()->mutable_access_mode()->set_mode(
      csi::v1::VolumeCapability::AccessMode::MULTI_NODE_READER_ONLY);
  (*req.mutable_volume_context())["volume"] = argv[2];
  auto t0 = std::chrono::steady_clock::now();
  grpc::ClientContext ctx;
  csi::v1::NodePublishVolumeResponse resp;
  grpc::Status st = node->NodePublishVolume(&ctx, req, &resp);
  auto t1 = std::chrono::steady_clock::now();
  if (!st.ok()) {
    std::fprintf(stderr, "NodePublishVolume: %s\n", st.error_message().c_str());
    return 1;
  }
  std::string path = std::string(argv[3]) + "/" + argv[4];
  int fd = ::open(path.c_str(), O_RDONLY);
  char byte;
  bool read_ok = fd >= 0 && ::read(fd, &byte, 1) == 1;
  auto t2 = std::chrono::steady_clock::now();
  if (fd >= 0) ::close(fd);
  csi::v1::NodeUnpublishVolumeRequest ureq;
  ureq.set_volume_id(req.volume_id());
  ureq.set_target_path(argv[3]);
  grpc::ClientContext uctx;
  csi::v1::NodeUnpublishVolumeResponse uresp;
  grpc::Status ust = node->NodeUnpublishVolume(&uctx, ureq, &uresp);
  if (!read_ok) {
    std::fprintf(stderr, "cannot read the first byte of %s\n", path.c_str());
    return 1;
  }
  if (!ust.ok()) {
    std::fprintf(stderr, "NodeUnpublishVolume: %s\n", ust.error_message().c_str());
    return 1;
  }
  std::printf("%.4f %.4f\n", std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t0).count());
  return 0;
}
