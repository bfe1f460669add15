#include "core/testing/fault_env.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace cairn::testing {

namespace fs = std::filesystem;

void PowerSwitch::CutAfter(int64_t ops) {
  planned_.store(false);
  remaining_.store(ops);
  cut_.store(false);
  planned_.store(ops > 0);
}

bool PowerSwitch::Tick() {
  if (cut_.load()) return false;
  ticks_.fetch_add(1);
  if (!planned_.load()) return true;
  if (remaining_.fetch_sub(1) <= 0) {
    cut_.store(true);
    return false;
  }
  return true;
}

struct FaultInjectionEnv::Node {
  bool is_dir = false;
  std::string data;    // visible content
  std::string synced;  // content as of the last Sync
  std::chrono::system_clock::time_point mtime = std::chrono::system_clock::now();
  std::map<std::string, std::shared_ptr<Node>> entries;         // visible
  std::map<std::string, std::shared_ptr<Node>> synced_entries;  // as of the last SyncDir
};

namespace {

using Node = FaultInjectionEnv::Node;

absl::Status PowerCutError() { return absl::UnavailableError("simulated power cut"); }

std::vector<std::string> Components(const fs::path& path) {
  std::vector<std::string> out;
  for (const fs::path& part : path.lexically_normal()) {
    const std::string s = part.string();
    if (s.empty() || s == "/" || s == ".") continue;
    out.push_back(s);
  }
  return out;
}

void Restore(Node& node) {
  if (!node.is_dir) {
    node.data = node.synced;
    return;
  }
  node.entries = node.synced_entries;
  for (auto& [name, child] : node.entries) Restore(*child);
}

void Count(const Node& node, FaultInjectionEnv::Pending& pending) {
  if (!node.is_dir) {
    if (node.data != node.synced) ++pending.unsynced_files;
    return;
  }
  if (node.entries != node.synced_entries) ++pending.unsynced_dirs;
  for (const auto& [name, child] : node.entries) Count(*child, pending);
}

}  // namespace

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultInjectionEnv* env, std::shared_ptr<Node> node)
      : env_(env), node_(std::move(node)) {}
  absl::Status Append(std::string_view data) override {
    absl::MutexLock lock(&env_->mu_);
    CAIRN_RETURN_IF_ERROR(env_->PowerCheck(true));
    node_->data.append(data.data(), data.size());
    node_->mtime = std::chrono::system_clock::now();
    return absl::OkStatus();
  }
  absl::Status Sync() override {
    absl::MutexLock lock(&env_->mu_);
    CAIRN_RETURN_IF_ERROR(env_->PowerCheck(true));
    node_->synced = node_->data;
    return absl::OkStatus();
  }
  absl::Status Close() override { return absl::OkStatus(); }

 private:
  FaultInjectionEnv* const env_;
  std::shared_ptr<Node> node_;
};

FaultInjectionEnv::FaultInjectionEnv(PowerSwitch* power)
    : power_(power), root_(std::make_shared<Node>()) {
  root_->is_dir = true;
}

FaultInjectionEnv::~FaultInjectionEnv() = default;

absl::Status FaultInjectionEnv::PowerCheck(bool mutating) const {
  if (power_ == nullptr) return absl::OkStatus();
  if (mutating ? !power_->Tick() : !power_->On()) return PowerCutError();
  return absl::OkStatus();
}

void FaultInjectionEnv::DropUnsynced() {
  absl::MutexLock lock(&mu_);
  Restore(*root_);
}

FaultInjectionEnv::Pending FaultInjectionEnv::CountPending() {
  absl::MutexLock lock(&mu_);
  Pending pending;
  Count(*root_, pending);
  return pending;
}

absl::StatusOr<std::shared_ptr<Node>> FaultInjectionEnv::Lookup(const fs::path& path) {
  std::shared_ptr<Node> node = root_;
  for (const std::string& c : Components(path)) {
    if (!node->is_dir) return absl::NotFoundError(absl::StrCat(path.string(), ": not found"));
    auto it = node->entries.find(c);
    if (it == node->entries.end()) {
      return absl::NotFoundError(absl::StrCat(path.string(), ": not found"));
    }
    node = it->second;
  }
  return node;
}

absl::StatusOr<std::pair<Node*, std::string>> FaultInjectionEnv::Parent(const fs::path& path) {
  std::vector<std::string> parts = Components(path);
  if (parts.empty()) return absl::InvalidArgumentError("the root has no parent");
  std::string last = parts.back();
  parts.pop_back();
  Node* node = root_.get();
  for (const std::string& c : parts) {
    auto it = node->entries.find(c);
    if (it == node->entries.end() || !it->second->is_dir) {
      return absl::NotFoundError(absl::StrCat(path.string(), ": directory not found"));
    }
    node = it->second.get();
  }
  return std::make_pair(node, std::move(last));
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewWritableFile(
    const fs::path& path, WriteOptions) {
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(PowerCheck(true));
  absl::StatusOr<std::pair<Node*, std::string>> parent = Parent(path);
  if (!parent.ok()) return parent.status();
  auto [dir, name] = *parent;
  if (dir->entries.contains(name)) {
    return absl::AlreadyExistsError(absl::StrCat(path.string(), " exists"));
  }
  auto node = std::make_shared<Node>();
  dir->entries[name] = node;
  return std::unique_ptr<WritableFile>(new FaultWritableFile(this, node));
}

absl::StatusOr<std::string> FaultInjectionEnv::ReadFile(const fs::path& path) {
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(PowerCheck(false));
  absl::StatusOr<std::shared_ptr<Node>> node = Lookup(path);
  if (!node.ok()) return node.status();
  if ((*node)->is_dir) return absl::FailedPreconditionError(path.string() + " is a directory");
  return (*node)->data;
}

absl::Status FaultInjectionEnv::Rename(const fs::path& from, const fs::path& to) {
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(PowerCheck(true));
  absl::StatusOr<std::pair<Node*, std::string>> src = Parent(from);
  if (!src.ok()) return src.status();
  absl::StatusOr<std::pair<Node*, std::string>> dst = Parent(to);
  if (!dst.ok()) return dst.status();
  auto it = src->first->entries.find(src->second);
  if (it == src->first->entries.end()) {
    return absl::NotFoundError(absl::StrCat(from.string(), ": not found"));
  }
  std::shared_ptr<Node> node = it->second;
  src->first->entries.erase(it);
  dst->first->entries[dst->second] = std::move(node);
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::Link(const fs::path& from, const fs::path& to) {
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(PowerCheck(true));
  absl::StatusOr<std::pair<Node*, std::string>> src = Parent(from);
  if (!src.ok()) return src.status();
  absl::StatusOr<std::pair<Node*, std::string>> dst = Parent(to);
  if (!dst.ok()) return dst.status();
  auto it = src->first->entries.find(src->second);
  if (it == src->first->entries.end()) {
    return absl::NotFoundError(absl::StrCat(from.string(), ": not found"));
  }
  if (dst->first->entries.contains(dst->second)) {
    return absl::AlreadyExistsError(absl::StrCat(to.string(), " exists"));
  }
  // The same node under a second name, as a hard link is one inode.
  dst->first->entries[dst->second] = it->second;
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::RemoveFile(const fs::path& path) {
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(PowerCheck(true));
  absl::StatusOr<std::pair<Node*, std::string>> parent = Parent(path);
  if (!parent.ok()) return parent.status();
  auto it = parent->first->entries.find(parent->second);
  if (it == parent->first->entries.end()) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": not found"));
  }
  if (it->second->is_dir) return absl::FailedPreconditionError(path.string() + " is a directory");
  parent->first->entries.erase(it);
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::CreateDir(const fs::path& path) {
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(PowerCheck(true));
  if (Components(path).empty()) return absl::AlreadyExistsError("/ exists");
  absl::StatusOr<std::pair<Node*, std::string>> parent = Parent(path);
  if (!parent.ok()) return parent.status();
  auto [dir, name] = *parent;
  if (dir->entries.contains(name)) {
    return absl::AlreadyExistsError(absl::StrCat(path.string(), " exists"));
  }
  auto node = std::make_shared<Node>();
  node->is_dir = true;
  dir->entries[name] = std::move(node);
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::SyncDir(const fs::path& path) {
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(PowerCheck(true));
  absl::StatusOr<std::shared_ptr<Node>> node = Lookup(path);
  if (!node.ok()) return node.status();
  if (!(*node)->is_dir) return absl::FailedPreconditionError(path.string() + " is not a directory");
  (*node)->synced_entries = (*node)->entries;
  return absl::OkStatus();
}

absl::StatusOr<FileInfo> FaultInjectionEnv::Stat(const fs::path& path) {
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(PowerCheck(false));
  absl::StatusOr<std::shared_ptr<Node>> node = Lookup(path);
  if (!node.ok()) return node.status();
  return FileInfo{.is_dir = (*node)->is_dir,
                  .size = (*node)->data.size(),
                  .mtime = (*node)->mtime};
}

absl::Status FaultInjectionEnv::Touch(const fs::path& path) {
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(PowerCheck(true));
  absl::StatusOr<std::shared_ptr<Node>> node = Lookup(path);
  if (!node.ok()) return node.status();
  (*node)->mtime = std::chrono::system_clock::now();
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::ListDir(const fs::path& dir,
                                        const std::function<void(const std::string&)>& fn) {
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&mu_);
    CAIRN_RETURN_IF_ERROR(PowerCheck(false));
    absl::StatusOr<std::shared_ptr<Node>> node = Lookup(dir);
    if (!node.ok()) return node.status();
    if (!(*node)->is_dir) return absl::NotFoundError(dir.string() + " is not a directory");
    for (const auto& [name, child] : (*node)->entries) names.push_back(name);
  }
  // Outside the lock: fn may call back into the env.
  for (const std::string& name : names) fn(name);
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::RemoveTree(const fs::path& path) {
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(PowerCheck(true));
  absl::StatusOr<std::pair<Node*, std::string>> parent = Parent(path);
  if (absl::IsNotFound(parent.status())) return absl::OkStatus();
  if (!parent.ok()) return parent.status();
  parent->first->entries.erase(parent->second);
  return absl::OkStatus();
}

}  // namespace cairn::testing
