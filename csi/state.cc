#include "csi/state.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/fd.h"
#include "core/status.h"

namespace cairn::csi {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json ToJson(const PluginState& s) {
  json pubs = json::array();
  for (const auto& [target, p] : s.publications) {
    pubs.push_back({{"volume_id", p.volume_id}, {"cairn_id", p.cairn_id}, {"namespace", p.ns},
                    {"target", p.target}, {"read_only", p.read_only}, {"single_writer", p.single_writer},
                    {"fingerprint", p.fingerprint}, {"pid", p.mounter.pid},
                    {"start_ticks", p.mounter.start_ticks}, {"log_file", p.log_file}});
    // Pod mode only: older plugins never wrote these.
    if (!p.mounter.pod.empty()) pubs.back()["mounter_pod"] = p.mounter.pod;
    if (!p.mounter_args.empty()) pubs.back()["mounter_args"] = p.mounter_args;
  }
  json prov = json::array();
  for (const auto& [name, p] : s.provisioned) {
    prov.push_back({{"request_name", p.request_name}, {"volume_id", p.volume_id},
                    {"namespace", p.ns}, {"name", p.name}, {"fingerprint", p.fingerprint},
                    {"capacity_bytes", p.capacity_bytes}, {"created", p.created},
                    {"delete", p.delete_on_delete}, {"source", p.source}});
  }
  json snaps = json::array();
  for (const auto& [name, e] : s.snapshots) {
    snaps.push_back({{"request_name", e.request_name}, {"snapshot_id", e.snapshot_id},
                     {"source_volume_id", e.source_volume_id},
                     {"created_at_ns", e.created_at_ns}, {"size_bytes", e.size_bytes}});
  }
  return {{"version", 1}, {"publications", pubs}, {"provisioned", prov}, {"snapshots", snaps}};
}

// nlohmann throws on malformed input; this is the one place that catches.
absl::StatusOr<PluginState> FromJson(const std::string& text) {
  try {
    json j = json::parse(text);
    PluginState s;
    for (const auto& p : j.at("publications")) {
      Publication pub;
      pub.volume_id = p.at("volume_id").get<std::string>();
      pub.cairn_id = p.at("cairn_id").get<std::string>();
      pub.ns = p.at("namespace").get<std::string>();
      pub.target = p.at("target").get<std::string>();
      pub.read_only = p.at("read_only").get<bool>();
      pub.single_writer = p.value("single_writer", false);
      pub.fingerprint = p.at("fingerprint").get<std::string>();
      pub.mounter.pid = p.at("pid").get<pid_t>();
      pub.mounter.start_ticks = p.at("start_ticks").get<uint64_t>();
      pub.log_file = p.at("log_file").get<std::string>();
      pub.mounter.pod = p.value("mounter_pod", std::string());
      pub.mounter_args = p.value("mounter_args", std::vector<std::string>());
      s.publications[pub.target] = pub;
    }
    for (const auto& p : j.at("provisioned")) {
      Provisioned v;
      v.request_name = p.at("request_name").get<std::string>();
      v.volume_id = p.at("volume_id").get<std::string>();
      v.ns = p.at("namespace").get<std::string>();
      v.name = p.at("name").get<std::string>();
      v.fingerprint = p.at("fingerprint").get<std::string>();
      v.capacity_bytes = p.at("capacity_bytes").get<int64_t>();
      v.created = p.at("created").get<bool>();
      v.delete_on_delete = p.at("delete").get<bool>();
      v.source = p.value("source", "");
      s.provisioned[v.request_name] = v;
    }
    if (j.contains("snapshots")) {
      for (const auto& p : j.at("snapshots")) {
        SnapshotEntry e;
        e.request_name = p.at("request_name").get<std::string>();
        e.snapshot_id = p.at("snapshot_id").get<std::string>();
        e.source_volume_id = p.at("source_volume_id").get<std::string>();
        e.created_at_ns = p.at("created_at_ns").get<int64_t>();
        e.size_bytes = p.at("size_bytes").get<int64_t>();
        s.snapshots[e.request_name] = e;
      }
    }
    return s;
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("malformed state: ", e.what()));
  }
}

}  // namespace

absl::StatusOr<PluginState> StateFile::Load() const {
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    if (!fs::exists(path_)) return PluginState{};
    return ErrnoToStatus(errno, absl::StrCat("read ", path_.string()));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto state = FromJson(text);
  if (!state.ok()) {
    return absl::DataLossError(absl::StrCat(path_.string(), ": ", state.status().message()));
  }
  return state;
}

absl::Status StateFile::Save(const PluginState& state) const {
  std::error_code ec;
  fs::create_directories(path_.parent_path(), ec);
  if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("create ", path_.parent_path().string()));
  std::string text = ToJson(state).dump(1);
  fs::path tmp = path_;
  tmp += absl::StrCat(".tmp.", ::getpid());
  {
    ScopedFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", tmp.string()));
    size_t off = 0;
    while (off < text.size()) {
      ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        return ErrnoToStatus(err, absl::StrCat("write ", tmp.string()));
      }
      off += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return ErrnoToStatus(err, absl::StrCat("fsync ", tmp.string()));
    }
  }
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoToStatus(err, absl::StrCat("rename to ", path_.string()));
  }
  ScopedFd dir(::open(path_.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.valid() && ::fsync(dir.get()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("fsync ", path_.parent_path().string()));
  }
  return absl::OkStatus();
}

}  // namespace cairn::csi
