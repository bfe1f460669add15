#include "cli/commands.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/mount_commands.h"
#include "cli/output.h"
#include "core/data_dir.h"
#include "core/fsck.h"
#include "core/path.h"
#include "core/process.h"
#include "core/size.h"
#include "core/rpc_client.h"
#include "core/status.h"
#include "core/transfer.h"
#include "core/version.h"
#include "operator/flags.h"
#include "operator/server.h"

namespace cairn::cli {
namespace {

constexpr char kGlobalHelp[] =
    "Global options (accepted anywhere before a lone '--'):\n"
    "  --server HOST:PORT   control plane address (env CAIRN_SERVER, default 127.0.0.1:7420)\n"
    "  -n, --namespace NS   namespace / environment (env CAIRN_NAMESPACE, default \"default\")\n"
    "  --token-file FILE    bearer token file (env CAIRN_TOKEN or CAIRN_TOKEN_FILE)\n"
    "  --ca-file FILE       PEM roots: connect with TLS (env CAIRN_CA_FILE)\n"
    "  --server-wait SECONDS  how long a command waits for an unreachable or\n"
    "                       restarting server before it fails (env\n"
    "                       CAIRN_SERVER_WAIT, default 15)\n"
    "  -h, --help           show help for the command\n";

constexpr char kTopHelp[] =
    "Usage: cairn COMMAND [ARGS...]\n"
    "\n"
    "Versioned shared volumes: create volumes, move files in and out, mount them.\n"
    "\n"
    "Commands:\n"
    "  volume     manage volumes and their files (create, list, ls, put, get, cp, rm,\n"
    "             rename, delete; commit, reload, status for mounts)\n"
    "  server     run the standalone control plane on a data directory\n"
    "  mount      mount a volume with FUSE (foreground)\n"
    "  shell      run a shell (or COMMAND) with volumes mounted\n"
    "  fsck       check a data directory's consistency (server stopped)\n"
    "  completion bash|zsh  print a shell completion script\n"
    "\n"
    "  --version  print the version and exit\n"
    "\n"
    "Run 'cairn COMMAND --help' for details. Exit codes: 0 ok, 1 failed, 2 usage.\n";

constexpr char kVolumeHelp[] =
    "Usage: cairn volume SUBCOMMAND [ARGS...]\n"
    "\n"
    "Subcommands:\n"
    "  create NAME [--version 1|2] [--allow-existing]  create a volume\n"
    "  list [-l] [--json]                    list volumes in the namespace, newest first\n"
    "  ls VOLUME [PATH] [-l] [--json]        list a directory of a volume\n"
    "  put VOLUME LOCAL [REMOTE] [-f] [-q]   upload a file or directory\n"
    "  get VOLUME REMOTE [DEST|-] [-f] [-q]  download a file or directory\n"
    "  cp VOLUME SRC... DST [-r]             copy inside a volume (no bytes copied)\n"
    "  rm VOLUME PATH [-r]                   remove a file or directory\n"
    "  rename OLD NEW [-y]                   rename a volume\n"
    "  delete NAME [-y] [--allow-missing]    delete a volume and its data\n"
    "  commit MOUNTPOINT                     commit a mount's changes now\n"
    "  reload MOUNTPOINT                     move a mount to the volume's head\n"
    "  status MOUNTPOINT [--json]            show a mount's state\n"
    "\n"
    "Run 'cairn volume SUBCOMMAND --help' for details.\n";

struct Command {
  const char* name;
  const char* usage;
  const char* help;
  std::vector<FlagSpec> flags;
  size_t min_args;
  size_t max_args;  // SIZE_MAX: unbounded
};

const std::vector<Command>& VolumeCommands() {
  static const std::vector<Command> commands = {
      {"create",
       "cairn volume create NAME [--version 1|2] [--allow-existing] [--max-inodes N]\n"
       "                         [--max-dir-entries N] [--max-file-size SIZE]\n"
       "       cairn volume create --ephemeral [--lease SECONDS] [--version 1|2] ...",
       "Creates a volume in the namespace.\n\n"
       "  --ephemeral            an anonymous volume (named ephemeral-...) that lives\n"
       "                         while this command runs: it prints the name, then\n"
       "                         renews the volume's lease until SIGINT or SIGTERM;\n"
       "                         one lease after the last renewal the volume is\n"
       "                         deleted and its data key destroyed\n"
       "  --lease SECONDS        the ephemeral volume's lease (default 30)\n"
       "  --version 1|2          1: at most 500,000 inodes; 2 (default): no inode limit,\n"
       "                         32,768 entries per directory, files under 1 TiB,\n"
       "                         hard links\n"
       "  --allow-existing       succeed if the volume exists with the same version\n"
       "                         (fails if its version differs)\n"
       "  --max-inodes N         tighter limits than the version's, kept with the\n"
       "  --max-dir-entries N    volume (quotas, tests); creates past them fail with\n"
       "  --max-file-size SIZE   ENOSPC / EFBIG. SIZE: bytes or 64K, 10M, 1G ...\n",
       {{"--version", "", true},
        {"--allow-existing", "", false},
        {"--max-inodes", "", true},
        {"--max-dir-entries", "", true},
        {"--max-file-size", "", true},
        {"--ephemeral", "", false},
        {"--lease", "", true}},
       0, 1},
      {"list", "cairn volume list [-l|--long] [--json]",
       "Lists the namespace's volumes, newest first. On a terminal (or with -l): a\n"
       "table of name, ID, version, files, size, last commit and creation time;\n"
       "piped: one name per line.\n\n"
       "  -l, --long   the table, also when piped\n"
       "  --json       a JSON array of volumes\n",
       {{"--json", "", false}, {"--long", "-l", false}}, 0, 0},
      {"ls", "cairn volume ls VOLUME [PATH] [-l|--long] [--json]",
       "Lists the entries of a directory in a volume (PATH defaults to the root).\n"
       "On a terminal: a table; piped: one path per line.\n\n"
       "  -l, --long   mode, human-readable size, modification time and path, also\n"
       "               when piped\n"
       "  --json       a JSON array of entries (sizes in bytes)\n",
       {{"--json", "", false}, {"--long", "-l", false}}, 1, 2},
      {"put", "cairn volume put VOLUME LOCAL [REMOTE] [-f|--force] [-q|--quiet]",
       "Uploads LOCAL (a file, or a directory recursively) to REMOTE (default '/').\n"
       "A REMOTE ending in '/' gets LOCAL's name appended. All files land in one\n"
       "atomic commit: an interrupted put leaves nothing visible. Existing files are\n"
       "refused unless --force; a directory is never replaced by a file. On a\n"
       "terminal a progress line shows bytes, rate and time left.\n\n"
       "  -f, --force   overwrite existing files\n"
       "  -q, --quiet   no progress line and no summary\n",
       {{"--force", "-f", false}, {"--quiet", "-q", false}}, 2, 3},
      {"get", "cairn volume get VOLUME REMOTE [DEST|-] [-f|--force] [-q|--quiet]",
       "Downloads REMOTE (a file, or a directory recursively) to DEST (default '.').\n"
       "An existing directory DEST receives REMOTE under its own name; '-' writes a\n"
       "file's content to stdout. Existing local files are refused unless --force.\n"
       "On a terminal a progress line shows bytes, rate and time left.\n\n"
       "  -f, --force   overwrite existing local files\n"
       "  -q, --quiet   no progress line\n",
       {{"--force", "-f", false}, {"--quiet", "-q", false}}, 2, 3},
      {"cp", "cairn volume cp VOLUME SRC... DST [-r|--recursive]",
       "Copies files inside a volume, like cp(1): into DST if it is an existing\n"
       "directory, else to the new path DST (one SRC). Copies share the stored data.\n\n"
       "  -r, --recursive   copy directories\n",
       {{"--recursive", "-r", false}}, 3, SIZE_MAX},
      {"rm", "cairn volume rm VOLUME PATH [-r|--recursive]",
       "Removes a file, or a directory with -r, in one commit.\n\n"
       "  -r, --recursive   remove a directory and everything below it\n",
       {{"--recursive", "-r", false}}, 2, 2},
      {"rename", "cairn volume rename OLD NEW [-y|--yes]",
       "Renames a volume. The volume ID stays, so mounts keep working. Asks for\n"
       "confirmation unless -y.\n\n"
       "  -y, --yes   do not ask\n",
       {{"--yes", "-y", false}}, 2, 2},
      {"delete", "cairn volume delete NAME [-y|--yes] [--allow-missing]",
       "Deletes a volume: its data key is destroyed at once, so its data is\n"
       "unrecoverable; space is reclaimed by garbage collection. Asks unless -y.\n\n"
       "  -y, --yes         do not ask\n"
       "  --allow-missing   succeed if the volume does not exist\n",
       {{"--yes", "-y", false}, {"--allow-missing", "", false}}, 1, 1},
  };
  return commands;
}

void PrintCommandHelp(const Command& c) {
  std::printf("Usage: %s\n\n%s\n%s", c.usage, c.help, kGlobalHelp);
}

// ---- Volume subcommands ----------------------------------------------------

// Written to by SIGINT/SIGTERM while an ephemeral volume is held: whichever
// thread (the client's included) the kernel hands the signal, the wait in
// HoldLease wakes.
int stop_pipe[2] = {-1, -1};
void OnStopSignal(int) {
  char byte = 1;
  (void)!::write(stop_pipe[1], &byte, 1);
}

// Renews an ephemeral volume's lease every third of it until SIGINT or
// SIGTERM; then the lease is left to lapse.
absl::Status HoldLease(Client& client, const api::Volume& volume, uint32_t lease_seconds) {
  const absl::Duration lease = absl::Seconds(lease_seconds == 0 ? 30 : lease_seconds);
  if (::pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    return ErrnoToStatus(errno, "pipe for signals");
  }
  struct sigaction on_stop = {};
  on_stop.sa_handler = OnStopSignal;
  ::sigaction(SIGINT, &on_stop, nullptr);
  ::sigaction(SIGTERM, &on_stop, nullptr);
  std::fprintf(stderr, "holding the lease of %s (renewed every %s); stop with Ctrl-C\n",
               volume.name().c_str(), absl::FormatDuration(lease / 3).c_str());
  api::RenewLeaseRequest renew;
  renew.mutable_volume()->set_id(volume.id());
  renew.set_lease_seconds(lease_seconds);
  for (;;) {
    pollfd stop{stop_pipe[0], POLLIN, 0};
    int ready = ::poll(&stop, 1, static_cast<int>(absl::ToInt64Milliseconds(lease / 3)));
    if (ready > 0) {
      std::fprintf(stderr, "released %s: it is deleted once its lease lapses\n",
                   volume.name().c_str());
      return absl::OkStatus();
    }
    if (ready < 0 && errno != EINTR) return ErrnoToStatus(errno, "poll");
    if (ready == 0) CAIRN_RETURN_IF_ERROR(client.RenewLease(renew).status());
  }
}

absl::Status VolumeCreate(Client& client, const Args& a) {
  const bool ephemeral = a.Has("--ephemeral");
  if (ephemeral != a.positional().empty()) {
    return UsageError(ephemeral ? "an --ephemeral volume takes no NAME (the server names it)"
                                : "missing arguments: NAME (or --ephemeral)");
  }
  if (a.Has("--lease") && !ephemeral) return UsageError("--lease needs --ephemeral");
  if (ephemeral && a.Has("--allow-existing")) {
    return UsageError("--allow-existing does not apply to --ephemeral");
  }
  const std::string name = ephemeral ? "" : a.positional()[0];
  if (!ephemeral) CAIRN_RETURN_IF_ERROR(ValidateVolumeName(name));
  api::CreateVolumeRequest request;
  request.set_namespace_(client.options().ns);
  request.set_name(name);
  request.set_ephemeral(ephemeral);
  if (a.Has("--lease")) {
    uint64_t seconds = 0;
    if (!absl::SimpleAtoi(a.Get("--lease"), &seconds) || seconds == 0 || seconds > 86400) {
      return UsageError(absl::StrCat("--lease needs seconds from 1 to 86400, not '",
                                     a.Get("--lease"), "'"));
    }
    request.set_lease_seconds(static_cast<uint32_t>(seconds));
  }
  const std::string version = a.Get("--version", "2");
  if (version != "1" && version != "2") {
    return UsageError(absl::StrCat("--version must be 1 or 2, not '", version, "'"));
  }
  request.set_version(version == "1" ? 1 : 2);
  request.set_create_if_missing(a.Has("--allow-existing"));
  for (const char* flag : {"--max-inodes", "--max-dir-entries", "--max-file-size"}) {
    if (!a.Has(flag)) continue;
    absl::StatusOr<uint64_t> value = ParseSize(a.Get(flag));
    if (!value.ok() || *value == 0) {
      return UsageError(absl::StrCat(flag, " needs a positive number, not '", a.Get(flag), "'"));
    }
    api::VolumeLimits& limits = *request.mutable_limits();
    if (std::string_view(flag) == "--max-inodes") limits.set_max_inodes(*value);
    if (std::string_view(flag) == "--max-dir-entries") {
      if (*value > UINT32_MAX) return UsageError("--max-dir-entries is too large");
      limits.set_max_dir_entries(static_cast<uint32_t>(*value));
    }
    if (std::string_view(flag) == "--max-file-size") limits.set_max_file_size(*value);
  }
  CAIRN_ASSIGN_OR_RETURN(api::Volume volume, client.CreateVolume(request));
  std::printf("Created %svolume %s (%s, version %u) in namespace %s\n",
              ephemeral ? "ephemeral " : "", volume.name().c_str(), volume.id().c_str(),
              volume.version(), volume.namespace_().c_str());
  if (!ephemeral) return absl::OkStatus();
  std::fflush(stdout);
  return HoldLease(client, volume, request.lease_seconds());
}

absl::Status VolumeList(Client& client, const Args& a) {
  CAIRN_ASSIGN_OR_RETURN(api::ListVolumesResponse response, client.ListVolumes(client.options().ns));
  std::string out;
  if (a.Has("--json")) {
    std::vector<std::string> items;
    for (const api::Volume& v : response.volumes()) {
      items.push_back(absl::StrCat(
          "{\"name\":", JsonString(v.name()), ",\"id\":", JsonString(v.id()),
          ",\"namespace\":", JsonString(v.namespace_()), ",\"version\":", v.version(),
          ",\"created_at\":", JsonString(HumanTime(v.created_at_ns())),
          ",\"created_at_ns\":", v.created_at_ns(), ",\"head_seq\":", v.head_seq(),
          ",\"inodes\":", v.inodes(), ",\"bytes\":", v.bytes(),
          ",\"last_commit\":", JsonString(HumanTime(v.last_commit_ns())),
          ",\"last_commit_ns\":", v.last_commit_ns(), "}"));
    }
    out = absl::StrCat("[", absl::StrJoin(items, ","), "]\n");
  } else if (a.Has("--long") || StdoutIsTerminal()) {
    std::vector<std::vector<std::string>> rows = {{"NAME", "ID", "VERSION", "FILES", "SIZE",
                                                   "LAST COMMIT (UTC)", "CREATED (UTC)"}};
    for (const api::Volume& v : response.volumes()) {
      rows.push_back({v.name(), v.id(), absl::StrCat("v", v.version()), absl::StrCat(v.inodes()),
                      HumanBytes(v.bytes()),
                      v.head_seq() == 0 ? "never"
                                        : absl::StrCat(HumanTime(v.last_commit_ns()), " (#",
                                                       v.head_seq(), ")"),
                      HumanTime(v.created_at_ns())});
    }
    out = FormatTable(rows);
  } else {
    for (const api::Volume& v : response.volumes()) absl::StrAppend(&out, v.name(), "\n");
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return absl::OkStatus();
}

const char* TypeName(objects::EntryType t) {
  switch (t) {
    case objects::FILE:
      return "file";
    case objects::DIRECTORY:
      return "dir";
    case objects::SYMLINK:
      return "symlink";
    case objects::FIFO:
      return "fifo";
    case objects::SOCKET:
      return "socket";
    case objects::CHAR_DEVICE:
      return "char-device";
    case objects::BLOCK_DEVICE:
      return "block-device";
    default:
      return "unknown";
  }
}

// "drwxr-xr-x", as ls -l shows it.
std::string ModeString(objects::EntryType type, uint32_t mode) {
  char kind = '-';
  switch (type) {
    case objects::DIRECTORY: kind = 'd'; break;
    case objects::SYMLINK: kind = 'l'; break;
    case objects::FIFO: kind = 'p'; break;
    case objects::SOCKET: kind = 's'; break;
    case objects::CHAR_DEVICE: kind = 'c'; break;
    case objects::BLOCK_DEVICE: kind = 'b'; break;
    default: break;
  }
  std::string out(1, kind);
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) out += (mode & (0400u >> i)) ? rwx[i] : '-';
  if (mode & 04000) out[3] = (mode & 0100) ? 's' : 'S';
  if (mode & 02000) out[6] = (mode & 0010) ? 's' : 'S';
  if (mode & 01000) out[9] = (mode & 0001) ? 't' : 'T';
  return out;
}

absl::Status VolumeLs(Client& client, const Args& a) {
  const std::string& volume = a.positional()[0];
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(volume));
  const std::string path = a.positional().size() > 1 ? a.positional()[1] : "";
  CAIRN_ASSIGN_OR_RETURN(std::string normalized, NormalizePath(path));
  api::ListFilesRequest request;
  *request.mutable_volume() = client.Ref(volume);
  request.set_path(normalized);
  CAIRN_ASSIGN_OR_RETURN(std::vector<api::FileEntry> entries, client.ListFiles(request));
  std::string out;
  if (a.Has("--json")) {
    std::vector<std::string> items;
    for (const api::FileEntry& e : entries) {
      items.push_back(absl::StrCat(
          "{\"path\":", JsonString(e.path()), ",\"type\":", JsonString(TypeName(e.type())),
          ",\"size\":", e.size(), ",\"mtime\":", JsonString(HumanTime(e.mtime_ns())),
          ",\"mtime_ns\":", e.mtime_ns(), ",\"mode\":", e.mode(),
          e.has_uid() ? absl::StrCat(",\"uid\":", e.uid()) : "",
          e.has_gid() ? absl::StrCat(",\"gid\":", e.gid()) : "",
          e.type() == objects::SYMLINK
              ? absl::StrCat(",\"symlink_target\":", JsonString(e.symlink_target()))
              : "",
          "}"));
    }
    out = absl::StrCat("[", absl::StrJoin(items, ","), "]\n");
  } else if (a.Has("--long")) {
    std::vector<std::vector<std::string>> rows = {{"MODE", "SIZE", "MODIFIED (UTC)", "PATH"}};
    for (const api::FileEntry& e : entries) {
      std::string path = e.path();
      if (e.type() == objects::DIRECTORY) path += "/";
      if (e.type() == objects::SYMLINK) absl::StrAppend(&path, " -> ", e.symlink_target());
      rows.push_back({ModeString(e.type(), e.mode()), HumanBytes(e.size()),
                      HumanTime(e.mtime_ns()), path});
    }
    out = FormatTable(rows);
  } else if (StdoutIsTerminal()) {
    std::vector<std::vector<std::string>> rows = {{"PATH", "TYPE", "MODIFIED (UTC)", "SIZE"}};
    for (const api::FileEntry& e : entries) {
      rows.push_back({e.type() == objects::DIRECTORY ? e.path() + "/" : e.path(),
                      TypeName(e.type()), HumanTime(e.mtime_ns()), HumanBytes(e.size())});
    }
    out = FormatTable(rows);
  } else {
    for (const api::FileEntry& e : entries) absl::StrAppend(&out, e.path(), "\n");
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return absl::OkStatus();
}

// A progress bar on a terminal (none with --quiet), and a note for each
// local entry put skips.
class TerminalObserver final : public TransferObserver {
 public:
  explicit TerminalObserver(bool quiet) : quiet_(quiet) {}
  void Begin(std::string_view label, uint64_t total_bytes) override {
    if (!quiet_) progress_ = std::make_unique<Progress>(std::string(label), total_bytes);
  }
  void Add(uint64_t bytes) override {
    if (progress_) progress_->Add(bytes);
  }
  void End() override {
    if (progress_) progress_->Finish();
  }
  void Skipped(const std::string& path, const absl::Status& why) override {
    std::fprintf(stderr, "cairn: skipping %s: %s\n", path.c_str(),
                 std::string(why.message()).c_str());
  }

 private:
  const bool quiet_;
  std::unique_ptr<Progress> progress_;
};

absl::Status VolumePut(Client& client, const Args& a) {
  TerminalObserver observer(a.Has("--quiet"));
  PutRequest request;
  request.volume = a.positional()[0];
  request.local = a.positional()[1];
  if (a.positional().size() > 2) request.remote = a.positional()[2];
  request.force = a.Has("--force");
  request.observer = &observer;
  std::string landed;
  CAIRN_ASSIGN_OR_RETURN(TransferStats stats, Put(client, request, &landed));
  if (StderrIsTerminal() && !a.Has("--quiet")) {
    std::fprintf(stderr, "Uploaded %zu file%s (%s) to %s\n", stats.files,
                 stats.files == 1 ? "" : "s", HumanBytes(stats.bytes).c_str(), landed.c_str());
  }
  return absl::OkStatus();
}

absl::Status VolumeGet(Client& client, const Args& a) {
  TerminalObserver observer(a.Has("--quiet"));
  GetRequest request;
  request.volume = a.positional()[0];
  request.remote = a.positional()[1];
  if (a.positional().size() > 2) request.dest = a.positional()[2];
  request.force = a.Has("--force");
  request.observer = &observer;
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(request.volume));
  return Get(client, request).status();
}

absl::Status VolumeCp(Client& client, const Args& a) {
  const auto& p = a.positional();
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(p[0]));
  api::CopyFilesRequest request;
  *request.mutable_volume() = client.Ref(p[0]);
  for (size_t i = 1; i + 1 < p.size(); ++i) {
    CAIRN_RETURN_IF_ERROR(NormalizePath(p[i]).status());
    request.add_sources(p[i]);
  }
  CAIRN_RETURN_IF_ERROR(NormalizePath(p.back()).status());
  request.set_destination(p.back());
  request.set_recursive(a.Has("--recursive"));
  return client.CopyFiles(request).status();
}

absl::Status VolumeRm(Client& client, const Args& a) {
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(a.positional()[0]));
  CAIRN_ASSIGN_OR_RETURN(std::string path, NormalizePath(a.positional()[1]));
  api::RemoveFileRequest request;
  *request.mutable_volume() = client.Ref(a.positional()[0]);
  request.set_path(path);
  request.set_recursive(a.Has("--recursive"));
  return client.RemoveFile(request).status();
}

// NotFound (with the name and namespace) if the volume does not exist.
absl::StatusOr<api::Volume> Lookup(Client& client, const std::string& name) {
  absl::StatusOr<api::Volume> volume = client.GetVolume(client.Ref(name));
  const absl::Status& s = volume.status();
  if (absl::IsNotFound(s)) {
    return absl::NotFoundError(absl::StrCat("volume '", name, "' not found in namespace ",
                                            client.options().ns));
  }
  if (!s.ok()) return s;
  return volume;
}

absl::Status VolumeRename(Client& client, const Args& a) {
  const std::string& from = a.positional()[0];
  const std::string& to = a.positional()[1];
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(from));
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(to));
  CAIRN_ASSIGN_OR_RETURN(api::Volume volume, Lookup(client, from));
  if (!a.Has("--yes")) {
    CAIRN_RETURN_IF_ERROR(Confirm(absl::StrCat("Rename volume '", from, "' to '", to, "'?")));
  }
  api::RenameVolumeRequest request;
  request.mutable_volume()->set_id(volume.id());
  request.set_new_name(to);
  CAIRN_ASSIGN_OR_RETURN(api::Volume renamed, client.RenameVolume(request));
  std::printf("Renamed volume %s to %s\n", from.c_str(), renamed.name().c_str());
  return absl::OkStatus();
}

absl::Status VolumeDelete(Client& client, const Args& a) {
  const std::string& name = a.positional()[0];
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(name));
  absl::StatusOr<api::Volume> volume = Lookup(client, name);
  if (absl::IsNotFound(volume.status()) && a.Has("--allow-missing")) {
    std::printf("Volume %s does not exist; nothing to delete\n", name.c_str());
    return absl::OkStatus();
  }
  if (!volume.ok()) return volume.status();
  if (!a.Has("--yes")) {
    CAIRN_RETURN_IF_ERROR(Confirm(absl::StrCat(
        "Delete volume '", name, "' (", volume->id(),
        ") and all its data? This cannot be undone.")));
  }
  api::DeleteVolumeRequest request;
  request.mutable_volume()->set_id(volume->id());
  request.set_allow_missing(a.Has("--allow-missing"));
  CAIRN_RETURN_IF_ERROR(client.DeleteVolume(request).status());
  std::printf("Deleted volume %s\n", name.c_str());
  return absl::OkStatus();
}

using Handler = absl::Status (*)(Client&, const Args&);

Handler HandlerFor(const std::string& name) {
  if (name == "create") return VolumeCreate;
  if (name == "list") return VolumeList;
  if (name == "ls") return VolumeLs;
  if (name == "put") return VolumePut;
  if (name == "get") return VolumeGet;
  if (name == "cp") return VolumeCp;
  if (name == "rm") return VolumeRm;
  if (name == "rename") return VolumeRename;
  if (name == "delete") return VolumeDelete;
  return nullptr;
}

// ---- Exit codes ------------------------------------------------------------

int Fail(const absl::Status& status, const std::string& help_hint) {
  if (IsUsageError(status)) {
    std::fprintf(stderr, "cairn: usage error: %s\n%s", std::string(status.message()).c_str(),
                 help_hint.c_str());
    return 2;
  }
  std::fprintf(stderr, "cairn: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

int Usage(const std::string& message, const std::string& help_hint) {
  return Fail(UsageError(message), help_hint);
}

// Pulls the global flags out of `args` (up to a lone "--"), leaving the rest.
absl::Status ExtractGlobals(std::vector<std::string>& args, ClientOptions& options,
                            bool& help) {
  std::vector<std::string> rest;
  bool passthrough = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (passthrough) {
      rest.push_back(a);
      continue;
    }
    if (a == "--") {
      passthrough = true;
      rest.push_back(a);
      continue;
    }
    // Named references, not a structured binding: clang 14 (the CI's
    // thread-safety build) cannot capture bindings in the lambda below.
    const SplitFlagResult split = SplitFlag(a);
    const std::string& name = split.name;
    const std::string& value = split.value;
    const bool inline_value = split.inline_value;
    auto take = [&]() -> absl::StatusOr<std::string> {
      if (inline_value) return value;
      if (i + 1 >= args.size()) return UsageError(absl::StrCat(name, " needs a value"));
      return args[++i];
    };
    if (name == "--server") {
      CAIRN_ASSIGN_OR_RETURN(options.server, take());
    } else if (name == "-n" || name == "--namespace") {
      CAIRN_ASSIGN_OR_RETURN(options.ns, take());
      if (absl::Status s = ValidateNamespace(options.ns); !s.ok()) {
        return UsageError(std::string(s.message()));
      }
      options.ns = NamespaceOrDefault(options.ns);
    } else if (name == "--token-file") {
      CAIRN_ASSIGN_OR_RETURN(std::string file, take());
      CAIRN_ASSIGN_OR_RETURN(options.token, ReadTokenFile(file));
    } else if (name == "--server-wait") {
      CAIRN_ASSIGN_OR_RETURN(std::string v, take());
      absl::StatusOr<absl::Duration> wait = ParseSeconds(v);
      if (!wait.ok()) return UsageError(absl::StrCat("--server-wait: ", wait.status().message()));
      options.retry_for = *wait;
    } else if (name == "--ca-file") {
      CAIRN_ASSIGN_OR_RETURN(options.ca_file, take());
    } else {
      if (a == "-h" || a == "--help") help = true;
      rest.push_back(a);
    }
  }
  args = std::move(rest);
  return absl::OkStatus();
}

int RunVolume(const ClientOptions& options, const std::vector<std::string>& args) {
  const std::string hint = "Run 'cairn volume --help' for usage.\n";
  if (args.empty()) {
    std::fprintf(stderr, "%s", kVolumeHelp);
    return 2;
  }
  if (args[0] == "-h" || args[0] == "--help") {
    std::printf("%s\n%s", kVolumeHelp, kGlobalHelp);
    return 0;
  }
  const std::string& sub = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (sub == "commit" || sub == "reload" || sub == "status") {
    return RunMountControl(sub, rest);
  }
  const Command* command = nullptr;
  for (const Command& c : VolumeCommands()) {
    if (sub == c.name) command = &c;
  }
  if (command == nullptr) return Usage(absl::StrCat("unknown volume subcommand '", sub, "'"), hint);
  const std::string sub_hint = absl::StrCat("Run 'cairn volume ", sub, " --help' for usage.\n");
  absl::StatusOr<Args> parsed = Args::Parse(rest, command->flags);
  if (!parsed.ok()) return Fail(parsed.status(), sub_hint);
  if (parsed->help()) {
    PrintCommandHelp(*command);
    return 0;
  }
  const size_t n = parsed->positional().size();
  if (n < command->min_args || n > command->max_args) {
    return Usage(absl::StrCat(n < command->min_args ? "missing arguments" : "too many arguments",
                              "; usage: ", command->usage),
                 sub_hint);
  }
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  if (!client.ok()) return Fail(client.status(), sub_hint);
  absl::Status status = HandlerFor(sub)(**client, *parsed);
  if (!status.ok()) return Fail(ForPerson(**client, status), sub_hint);
  return 0;
}

int RunServer(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "-h" || a == "--help") {
      std::printf(
          "Usage: cairn server --data DIR [--meta postgres://...] [--blobs s3://...]\n"
          "                    [--listen HOST:PORT] [options]\n\n"
          "Runs the standalone control plane in the foreground until SIGINT or SIGTERM:\n"
          "metadata in SQLite under DIR, or in PostgreSQL with --meta; blobs in a local\n"
          "directory under DIR, or in an S3 bucket with --blobs.\n\n"
          "Options:\n%s",
          operator_::ServerFlagsHelp().c_str());
      return 0;
    }
  }
  const std::string hint = "Run 'cairn server --help' for usage.\n";
  absl::StatusOr<operator_::ServerOptions> options = operator_::ParseServerFlags(args);
  if (!options.ok()) {
    if (absl::IsInvalidArgument(options.status())) {
      return Usage(std::string(options.status().message()), hint);
    }
    return Fail(options.status(), hint);
  }
  // Before the server starts a thread: only the wait below takes the signals.
  BlockTerminationSignals();
  absl::Status status = operator_::RunServer(*options, [] {
    int sig = WaitForTerminationSignal();
    std::fprintf(stderr, "cairn server: %s received, shutting down\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
  });
  if (!status.ok()) return Fail(status, hint);
  return 0;
}

int RunFsck(const std::vector<std::string>& args) {
  const std::string hint = "Run 'cairn fsck --help' for usage.\n";
  absl::StatusOr<Args> parsed =
      Args::Parse(args, {{"--data", "", true}, {"--meta", "", true}, {"--blobs", "", true}});
  if (!parsed.ok()) return Fail(parsed.status(), hint);
  if (parsed->help()) {
    std::printf(
        "Usage: cairn fsck --data DIR [--meta postgres://...] [--blobs s3://BUCKET/PREFIX?...]\n\n"
        "Checks every snapshot of every volume in a data directory: referenced objects\n"
        "must exist and authenticate. Run it with the server stopped. --meta (or\n"
        "CAIRN_META_URL) names the PostgreSQL database the server keeps its metadata\n"
        "in; --blobs names the bucket when the server keeps its blobs in S3 (as\n"
        "`cairn server --meta/--blobs`).\n\n"
        "Exit codes: 0 clean; 3 only orphans or temporaries (unreferenced blobs and\n"
        "leftover blob temporaries, e.g. from an interrupted upload; GC removes\n"
        "them); 4 missing or corrupt objects;\n"
        "1 could not run; 2 usage.\n");
    return 0;
  }
  if (!parsed->Has("--data") || !parsed->positional().empty()) {
    return Usage("usage: cairn fsck --data DIR", hint);
  }
  DataDirOptions dir_options;
  dir_options.meta_url = parsed->Get("--meta");
  if (const char* env = std::getenv("CAIRN_META_URL");
      dir_options.meta_url.empty() && env != nullptr) {
    dir_options.meta_url = env;
  }
  dir_options.blobs_url = parsed->Get("--blobs");
  absl::StatusOr<std::unique_ptr<DataDir>> dir = DataDir::Open(parsed->Get("--data"), dir_options);
  if (!dir.ok()) return Fail(dir.status(), hint);
  absl::StatusOr<FsckReport> report = Fsck((*dir)->meta(), (*dir)->blobs(), (*dir)->master());
  if (!report.ok()) return Fail(report.status(), hint);
  std::printf("%s\n", report->Summary().c_str());
  constexpr size_t kShow = 20;
  auto show = [&](const char* what, const std::vector<std::string>& list) {
    for (size_t i = 0; i < list.size() && i < kShow; ++i) {
      std::printf("%s: %s\n", what, list[i].c_str());
    }
    if (list.size() > kShow) std::printf("%s: ... and %zu more\n", what, list.size() - kShow);
  };
  show("dangling", report->dangling);
  show("corrupt", report->corrupt);
  show("orphan", report->orphans);
  show("temporary", report->temporaries);
  return report->ExitCode();
}

// ---- Shell completion -------------------------------------------------------

// Every subcommand's flags, from the table the parser uses, so completion
// cannot drift from what the commands accept.
std::string FlagWords(const Command& c) {
  std::vector<std::string> words = {"--help"};
  for (const FlagSpec& f : c.flags) {
    words.push_back(f.name);
    if (!f.short_name.empty()) words.push_back(f.short_name);
  }
  return absl::StrJoin(words, " ");
}

constexpr char kGlobalFlagWords[] =
    "--server --namespace -n --token-file --ca-file --server-wait --help";
constexpr char kMountVerbs[] = "commit reload status";

std::string BashCompletion() {
  std::string cases;
  std::vector<std::string> subs;
  for (const Command& c : VolumeCommands()) {
    subs.push_back(c.name);
    absl::StrAppend(&cases, "      ", c.name, ") flags=\"", FlagWords(c), "\" ;;\n");
  }
  return absl::StrCat(
      "# bash completion for cairn (cairn completion bash). Load it with\n"
      "#   source <(cairn completion bash)\n"
      "_cairn() {\n"
      "  local cur=${COMP_WORDS[COMP_CWORD]} cmd= sub= i\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    case ${COMP_WORDS[i]} in\n"
      "      -*) ;;\n"
      "      *) if [ -z \"$cmd\" ]; then cmd=${COMP_WORDS[i]}; elif [ -z \"$sub\" ]; then "
      "sub=${COMP_WORDS[i]}; fi ;;\n"
      "    esac\n"
      "  done\n"
      "  if [ -z \"$cmd\" ]; then\n"
      "    COMPREPLY=($(compgen -W \"volume server mount shell fsck completion --version "
      "--help\" -- \"$cur\"))\n"
      "    return\n"
      "  fi\n"
      "  case $cmd in\n"
      "    volume)\n"
      "      if [ -z \"$sub\" ]; then\n"
      "        COMPREPLY=($(compgen -W \"",
      absl::StrJoin(subs, " "), " ", kMountVerbs,
      "\" -- \"$cur\"))\n"
      "        return\n"
      "      fi\n"
      "      local flags=\n"
      "      case $sub in\n",
      cases,
      "      status) flags=\"--json --help\" ;;\n"
      "      esac\n"
      "      if [[ $cur == -* ]]; then\n"
      "        COMPREPLY=($(compgen -W \"$flags ",
      kGlobalFlagWords,
      "\" -- \"$cur\"))\n"
      "      else\n"
      "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
      "      fi ;;\n"
      "    completion) COMPREPLY=($(compgen -W \"bash zsh\" -- \"$cur\")) ;;\n"
      "    *) COMPREPLY=($(compgen -f -- \"$cur\")) ;;\n"
      "  esac\n"
      "}\n"
      "complete -o filenames -F _cairn cairn\n");
}

std::string ZshCompletion() {
  std::string cases;
  std::vector<std::string> subs;
  for (const Command& c : VolumeCommands()) {
    subs.push_back(c.name);
    absl::StrAppend(&cases, "        ", c.name, ") flags=(", FlagWords(c), ") ;;\n");
  }
  return absl::StrCat(
      "#compdef cairn\n"
      "# zsh completion for cairn (cairn completion zsh). Load it with\n"
      "#   source <(cairn completion zsh)\n"
      "# or save it as _cairn in a directory on $fpath.\n"
      "_cairn() {\n"
      "  local -a words_left flags\n"
      "  words_left=(${words[2,CURRENT-1]:#-*})\n"
      "  if (( ${#words_left} == 0 )); then\n"
      "    compadd -- volume server mount shell fsck completion --version --help\n"
      "    return\n"
      "  fi\n"
      "  case ${words_left[1]} in\n"
      "    volume)\n"
      "      if (( ${#words_left} == 1 )); then\n"
      "        compadd -- ",
      absl::StrJoin(subs, " "), " ", kMountVerbs,
      "\n"
      "        return\n"
      "      fi\n"
      "      case ${words_left[2]} in\n",
      cases,
      "        status) flags=(--json --help) ;;\n"
      "      esac\n"
      "      if [[ ${words[CURRENT]} == -* ]]; then\n"
      "        compadd -- $flags ",
      kGlobalFlagWords,
      "\n"
      "      else\n"
      "        _files\n"
      "      fi ;;\n"
      "    completion) compadd -- bash zsh ;;\n"
      "    *) _files ;;\n"
      "  esac\n"
      "}\n"
      "if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n"
      "  _cairn \"$@\"\n"
      "else\n"
      "  compdef _cairn cairn\n"
      "fi\n");
}

int RunCompletion(const std::vector<std::string>& args) {
  const std::string hint = "Run 'cairn completion --help' for usage.\n";
  if (args.size() == 1 && (args[0] == "-h" || args[0] == "--help")) {
    std::printf(
        "Usage: cairn completion bash|zsh\n\n"
        "Prints a completion script for the shell: commands, volume subcommands and\n"
        "their flags; local paths elsewhere.\n\n"
        "  bash:  source <(cairn completion bash)      (e.g. in ~/.bashrc)\n"
        "  zsh:   source <(cairn completion zsh)       (e.g. in ~/.zshrc, after compinit)\n");
    return 0;
  }
  if (args.size() != 1) return Usage("usage: cairn completion bash|zsh", hint);
  if (args[0] == "bash") {
    std::fputs(BashCompletion().c_str(), stdout);
    return 0;
  }
  if (args[0] == "zsh") {
    std::fputs(ZshCompletion().c_str(), stdout);
    return 0;
  }
  return Usage(absl::StrCat("no completion for shell '", args[0], "' (bash or zsh)"), hint);
}

}  // namespace

int Main(const std::vector<std::string>& argv) {
  if (PrintVersionIfAsked("cairn", argv)) return 0;
  std::vector<std::string> args = argv;
  absl::StatusOr<ClientOptions> options = ClientOptionsFromEnv();
  if (!options.ok()) return Fail(options.status(), "");
  bool help = false;
  // `server` and `fsck` take no client flags; leave their arguments alone.
  if (!args.empty() && args[0] != "server" && args[0] != "fsck") {
    if (absl::Status s = ExtractGlobals(args, *options, help); !s.ok()) {
      return Fail(s, "Run 'cairn --help' for usage.\n");
    }
  }
  if (args.empty()) {
    std::fputs(kTopHelp, stderr);
    return 2;
  }
  const std::string command = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "-h" || command == "--help" || command == "help") {
    std::printf("%s\n%s", kTopHelp, kGlobalHelp);
    return 0;
  }
  if (command == "volume") return RunVolume(*options, rest);
  if (command == "server") return RunServer(rest);
  if (command == "fsck") return RunFsck(rest);
  if (command == "completion") return RunCompletion(rest);
  if (command == "mount") return RunMount(*options, rest);
  if (command == "shell") return RunShell(*options, rest);
  return Usage(absl::StrCat("unknown command '", command, "'"), "Run 'cairn --help' for usage.\n");
}

}  // namespace cairn::cli
