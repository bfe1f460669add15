// posix_probe DIR PHASE: performs one phase of the POSIX behaviour suite in
// DIR and prints one line per step: the errno a call gave (or "ok") and the
// resulting attributes, in a form that does not depend on the file system
// (no inode numbers, no absolute times except those the suite sets).
// posix_test runs it on a native directory and on a Cairn mount and compares
// the two outputs: the native run is the oracle.
//
// Phases, in order (each expects the earlier ones to have run in DIR):
//   root   as root: creates the tree the other phases use
//   user   as uid 1000, gid 1000, groups {1000, 2000}
//   other  as uid 1001, gid 1001, groups {1001}
//   verify as root, possibly on another mount of the same volume: stats
//          what the earlier phases left (attributes that must survive a
//          commit and a fresh mount)
// Exit code 0 unless the arguments are wrong or DIR is unusable (2).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <chrono>

namespace {

std::string dir;

std::string P(const std::string& rel) { return dir + "/" + rel; }

std::string Err(int e) {
  if (e == 0) return "ok";
  switch (e) {
#define E(x) \
  case x:    \
    return #x;
    E(EPERM) E(ENOENT) E(EACCES) E(EEXIST) E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENOSPC) E(EROFS)
    E(ENAMETOOLONG) E(ENOTEMPTY) E(EXDEV) E(EAGAIN) E(ENXIO) E(EBADF) E(ENODEV) E(EOPNOTSUPP)
    E(ENOSYS) E(EBUSY) E(EFBIG) E(EMLINK) E(ELOOP) E(ESTALE) E(EIO)
#undef E
    default:
      return "errno" + std::to_string(e);
  }
}

int Rc(int rc) { return rc < 0 ? errno : 0; }

void Say(const std::string& step, const std::string& what) {
  std::printf("%s: %s\n", step.c_str(), what.c_str());
}
void Res(const std::string& step, int rc) { Say(step, Err(Rc(rc))); }

char TypeChar(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG: return 'f';
    case S_IFDIR: return 'd';
    case S_IFLNK: return 'l';
    case S_IFIFO: return 'p';
    case S_IFSOCK: return 's';
    case S_IFCHR: return 'c';
    case S_IFBLK: return 'b';
    default: return '?';
  }
}

std::string Attrs(const struct stat& st) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%c %04o %u:%u nlink=%lu", TypeChar(st.st_mode),
                static_cast<unsigned>(st.st_mode & 07777), st.st_uid, st.st_gid,
                static_cast<unsigned long>(st.st_nlink));
  std::string out = buf;
  if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) out += " size=" + std::to_string(st.st_size);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    out += " rdev=" + std::to_string(major(st.st_rdev)) + "," + std::to_string(minor(st.st_rdev));
  }
  return out;
}

struct stat Lstat(const std::string& rel) {
  struct stat st{};
  if (::lstat(P(rel).c_str(), &st) != 0) st.st_mode = 0;
  return st;
}

void Stat(const std::string& rel) {
  struct stat st{};
  if (::lstat(P(rel).c_str(), &st) != 0) {
    Say("stat " + rel, Err(errno));
  } else {
    Say("stat " + rel, Attrs(st));
  }
}

// SEEK_DATA and SEEK_HOLE from each offset of `fd` (the file `rel`).
void Seeks(const std::string& rel, int fd, std::initializer_list<off_t> offsets) {
  for (off_t off : offsets) {
    for (int whence : {SEEK_DATA, SEEK_HOLE}) {
      off_t at = ::lseek(fd, off, whence);
      Say(rel + (whence == SEEK_DATA ? " SEEK_DATA " : " SEEK_HOLE ") + std::to_string(off),
          at < 0 ? Err(errno) : std::to_string(at));
    }
  }
}

void Blocks(const std::string& rel) {
  struct stat st{};
  ::lstat(P(rel).c_str(), &st);
  Say(rel + " blocks", std::to_string(st.st_blocks) + " size=" + std::to_string(st.st_size));
}

int64_t Ns(const struct timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; }

std::string TimeStr(const struct timespec& t) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld.%09ld", static_cast<long long>(t.tv_sec), t.tv_nsec);
  return buf;
}

// Timestamps must be able to move between two steps.
void Tick() { std::this_thread::sleep_for(std::chrono::milliseconds(15)); }

// Runs `op` and reports which of `rel`'s times it moved ("m" mtime, "c"
// ctime, "a" atime; "-" none).
template <typename Op>
void Moved(const std::string& step, const std::string& rel, Op op) {
  struct stat before = Lstat(rel);
  Tick();
  int e = op();
  struct stat after = Lstat(rel);
  std::string m;
  if (Ns(after.st_mtim) != Ns(before.st_mtim)) m += "m";
  if (Ns(after.st_ctim) != Ns(before.st_ctim)) m += "c";
  if (Ns(after.st_atim) != Ns(before.st_atim)) m += "a";
  Say(step, Err(e) + " moved " + rel + "=" + (m.empty() ? "-" : m));
}

int Create(const std::string& rel, mode_t mode, const std::string& content = "") {
  int fd = ::open(P(rel).c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
  if (fd < 0) return errno;
  int e = 0;
  if (!content.empty() && ::write(fd, content.data(), content.size()) < 0) e = errno;
  ::close(fd);
  return e;
}

int Append(const std::string& rel, const std::string& content) {
  int fd = ::open(P(rel).c_str(), O_WRONLY | O_APPEND);
  if (fd < 0) return errno;
  int e = ::write(fd, content.data(), content.size()) < 0 ? errno : 0;
  ::close(fd);
  return e;
}

// The whole content of `rel` ("" if unreadable).
std::string Content(const std::string& rel) {
  int fd = ::open(P(rel).c_str(), O_RDONLY);
  if (fd < 0) return "";
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, n);
  ::close(fd);
  return out;
}

int ReadAll(const std::string& rel) {
  int fd = ::open(P(rel).c_str(), O_RDONLY);
  if (fd < 0) return errno;
  char buf[4096];
  int e = ::read(fd, buf, sizeof buf) < 0 ? errno : 0;
  ::close(fd);
  return e;
}

int BindSocket(const std::string& rel) {
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (s < 0) return errno;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = P(rel);
  if (path.size() >= sizeof addr.sun_path) {
    ::close(s);
    return ENAMETOOLONG;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int e = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? 0 : errno;
  ::close(s);
  return e;
}

int Utimens(const std::string& rel, struct timespec atime, struct timespec mtime) {
  struct timespec ts[2] = {atime, mtime};
  return Rc(::utimensat(AT_FDCWD, P(rel).c_str(), ts, AT_SYMLINK_NOFOLLOW));
}

constexpr struct timespec kOmit = {0, UTIME_OMIT};
constexpr struct timespec kNow = {0, UTIME_NOW};
// Past 2038 (32-bit time_t overflow) and past 2100, with nanoseconds.
constexpr struct timespec kT2100 = {4102444800, 123456789};
constexpr struct timespec kT2038 = {2147483648, 500000000};

void PhaseRoot() {
  ::umask(022);
  // Creation: mode from the umask, owner from the caller.
  Res("mkdir d 0777", ::mkdir(P("d").c_str(), 0777));
  Stat("d");
  Moved("create d/f", "d", [] { return Create("d/f", 0666, "hello"); });
  Stat("d/f");
  Moved("chown d/f 1000:2000", "d/f", [] { return Rc(::chown(P("d/f").c_str(), 1000, 2000)); });
  Stat("d/f");
  Moved("chmod d/f 06755", "d/f", [] { return Rc(::chmod(P("d/f").c_str(), 06755)); });
  Stat("d/f");
  // Root (CAP_FSETID) keeps setuid/setgid when writing.
  Res("root writes d/f", Append("d/f", "!"));
  Stat("d/f");
  Res("chmod d/f 0644", ::chmod(P("d/f").c_str(), 0644));

  // Home for uid 1000; a sticky world-writable directory; a setgid one.
  Res("mkdir u", ::mkdir(P("u").c_str(), 0755));
  Res("chown u 1000:1000", ::chown(P("u").c_str(), 1000, 1000));
  Res("create u/grp", Create("u/grp", 0644));
  Res("chown u/grp 1000:3000", ::chown(P("u/grp").c_str(), 1000, 3000));
  Res("mkdir t 01777", ::mkdir(P("t").c_str(), 0777));
  Res("chmod t 01777", ::chmod(P("t").c_str(), 01777));
  Stat("t");
  Res("mkdir g", ::mkdir(P("g").c_str(), 0775));
  Res("chown g 0:2000", ::chown(P("g").c_str(), 0, 2000));
  Res("chmod g 02775", ::chmod(P("g").c_str(), 02775));
  Stat("g");
  Res("mkdir g/sub", ::mkdir(P("g/sub").c_str(), 0755));
  Stat("g/sub");
  Res("create g/file", Create("g/file", 0644));
  Stat("g/file");
  Res("create d/secret 0600", Create("d/secret", 0600, "s"));
  Res("create d/open 0666", Create("d/open", 0666, "o"));
  Res("chmod d/open 0666", ::chmod(P("d/open").c_str(), 0666));

  // Special files.
  Moved("mkfifo d/p", "d", [] { return Rc(::mkfifo(P("d/p").c_str(), 0644)); });
  Stat("d/p");
  Res("mknod d/s S_IFSOCK", ::mknod(P("d/s").c_str(), S_IFSOCK | 0600, 0));
  Stat("d/s");
  Res("mknod d/c S_IFCHR 1,3", ::mknod(P("d/c").c_str(), S_IFCHR | 0666, makedev(1, 3)));
  Stat("d/c");
  Res("mknod d/b S_IFBLK 8,1", ::mknod(P("d/b").c_str(), S_IFBLK | 0660, makedev(8, 1)));
  Stat("d/b");
  Say("bind d/sock", Err(BindSocket("d/sock")));
  Stat("d/sock");
  {
    int fd = ::open(P("d/p").c_str(), O_RDONLY | O_NONBLOCK);
    Say("open fifo d/p O_NONBLOCK", Err(fd < 0 ? errno : 0));
    if (fd >= 0) ::close(fd);
  }
  Res("mknod d/reg S_IFREG", ::mknod(P("d/reg").c_str(), S_IFREG | 0640, 0));
  Stat("d/reg");

  // Links, symlinks and the times POSIX says they move.
  Moved("link d/f d/f2 (file)", "d/f", [] { return Rc(::link(P("d/f").c_str(), P("d/f2").c_str())); });
  Moved("link d/f d/f3 (dir)", "d",
        [] { return Rc(::link(P("d/f").c_str(), P("d/f3").c_str())); });
  Stat("d/f");
  Say("d/f and d/f2 one inode",
      Lstat("d/f").st_ino == Lstat("d/f2").st_ino ? "yes" : "no");
  Moved("unlink d/f3 (file)", "d/f", [] { return Rc(::unlink(P("d/f3").c_str())); });
  Moved("symlink d/l (dir)", "d", [] { return Rc(::symlink("f", P("d/l").c_str())); });
  Stat("d/l");
  Res("create d/x", Create("d/x", 0644, "x"));
  Res("create d/y", Create("d/y", 0644, "y"));
  Res("link d/y d/y2", ::link(P("d/y").c_str(), P("d/y2").c_str()));
  Moved("rename d/x over d/y (other name of y)", "d/y2",
        [] { return Rc(::rename(P("d/x").c_str(), P("d/y").c_str())); });
  Stat("d/y2");
  Res("mkdir d/m", ::mkdir(P("d/m").c_str(), 0755));
  Moved("rename d/y -> d/m/y (source dir)", "d",
        [] { return Rc(::rename(P("d/y").c_str(), P("d/m/y").c_str())); });
  Moved("rename d/m/y -> d/y (dest dir)", "d",
        [] { return Rc(::rename(P("d/m/y").c_str(), P("d/y").c_str())); });
  Moved("rename d/y -> d/yy (renamed inode)", "d/y",
        [] { return Rc(::rename(P("d/y").c_str(), P("d/yy").c_str())); });
  Moved("unlink d/yy (dir)", "d", [] { return Rc(::unlink(P("d/yy").c_str())); });
  Moved("mkdir d/s1 (dir)", "d", [] { return Rc(::mkdir(P("d/s1").c_str(), 0755)); });
  Res("mkdir d/s2", ::mkdir(P("d/s2").c_str(), 0755));
  Stat("d");
  Moved("rmdir d/s2 (dir)", "d", [] { return Rc(::rmdir(P("d/s2").c_str())); });
  Stat("d");
  Moved("write d/f2", "d/f2", [] { return Append("d/f2", "more"); });
  Moved("truncate d/f2", "d/f2", [] { return Rc(::truncate(P("d/f2").c_str(), 3)); });
  Moved("truncate d/f2 same size", "d/f2", [] { return Rc(::truncate(P("d/f2").c_str(), 3)); });
  Moved("chown d/f2 -1:-1", "d/f2", [] { return Rc(::chown(P("d/f2").c_str(), -1, -1)); });
  Res("create d/h1", Create("d/h1", 0644, "h"));
  Res("link d/h1 d/h2", ::link(P("d/h1").c_str(), P("d/h2").c_str()));

  // Times: exact past 2038, UTIME_OMIT / UTIME_NOW, relatime reads.
  Moved("utimens d/t1 create", "d", [] { return Create("d/t1", 0644, "t"); });
  Res("utimens d/t1 2100 2038", Utimens("d/t1", kT2100, kT2038));
  {
    struct stat st = Lstat("d/t1");
    Say("times d/t1", "atime=" + TimeStr(st.st_atim) + " mtime=" + TimeStr(st.st_mtim));
  }
  Res("utimens d/t1 OMIT NOW", Utimens("d/t1", kOmit, kNow));
  {
    struct stat st = Lstat("d/t1");
    std::time_t now = std::time(nullptr);
    Say("times d/t1", "atime=" + TimeStr(st.st_atim) +
                          " mtime_is_now=" + (std::abs(st.st_mtim.tv_sec - now) < 60 ? "1" : "0"));
  }
  Res("utimens d/t2 create", Create("d/t2", 0644, "t"));
  Res("utimens d/t2 1000 2000", Utimens("d/t2", {1000, 0}, {2000, 0}));
  Moved("read d/t2 (atime older than mtime)", "d/t2", [] { return ReadAll("d/t2"); });
  Moved("read d/t2 again", "d/t2", [] { return ReadAll("d/t2"); });
  Moved("write d/t2 (atime)", "d/t2", [] { return Append("d/t2", "w"); });
  Res("utimens d/t3 create", Create("d/t3", 0644));
  {
    struct stat st = Lstat("d/t3");
    Say("new file atime==mtime==ctime",
        Ns(st.st_atim) == Ns(st.st_mtim) && Ns(st.st_mtim) == Ns(st.st_ctim) ? "yes" : "no");
  }

  // Sparse files: holes at 4 KiB granularity, as a local file system keeps
  // them (st_blocks, SEEK_DATA / SEEK_HOLE, reads of holes).
  {
    int fd = ::open(P("d/sparse").c_str(), O_RDWR | O_CREAT | O_EXCL, 0644);
    Say("create d/sparse", Err(fd < 0 ? errno : 0));
    if (fd >= 0) {
      constexpr off_t kAt = off_t{8} << 20;
      Say("pwrite 8MiB", Err(::pwrite(fd, "x", 1, kAt) == 1 ? 0 : errno));
      Seeks("d/sparse", fd, {0, kAt, kAt + 1});
      char buf[16] = {1};
      Say("read in hole", ::pread(fd, buf, sizeof buf, 4096) == 16 && buf[0] == 0 ? "zeros" : "?");
      Blocks("d/sparse");
      std::string mid(8192, 'm');
      constexpr off_t kMid = (off_t{4} << 20) + 4096;
      Say("pwrite 8KiB at 4MiB+4KiB",
          Err(::pwrite(fd, mid.data(), mid.size(), kMid) == 8192 ? 0 : errno));
      Seeks("d/sparse", fd, {0, kMid, kMid + 4096, kMid + 8192});
      Blocks("d/sparse");
      ::close(fd);
    }
    struct stat st = Lstat("d/sparse");
    Say("d/sparse blocks below size", st.st_blocks * 512 < st.st_size ? "yes" : "no");
  }
  {
    // Extending with ftruncate leaves a hole.
    Res("create d/grow", Create("d/grow", 0644, "0123456789"));
    Res("truncate d/grow 1MiB", ::truncate(P("d/grow").c_str(), 1 << 20));
    int fd = ::open(P("d/grow").c_str(), O_RDONLY);
    Seeks("d/grow", fd, {0, 10, 4096});
    ::close(fd);
    Blocks("d/grow");
    const std::string want = "0123456789" + std::string((1 << 20) - 10, '\0');
    Say("read d/grow", Content("d/grow") == want ? "ok" : "?");
  }
  {
    // A small file (kept in memory until commit) with a hole before its data.
    int fd = ::open(P("d/small").c_str(), O_RDWR | O_CREAT | O_EXCL, 0644);
    Say("pwrite d/small 40000", Err(fd >= 0 && ::pwrite(fd, "s", 1, 40000) == 1 ? 0 : errno));
    Seeks("d/small", fd, {0, 36864});
    ::close(fd);
    Blocks("d/small");
  }
  {
    // fallocate(PUNCH_HOLE) frees whole blocks and zeroes the rest.
    std::string data(256 << 10, 'p');
    Res("create d/punch", Create("d/punch", 0644, data));
    int fd = ::open(P("d/punch").c_str(), O_RDWR);
    Res("punch d/punch 64KiB+100..128KiB",
        ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (64 << 10) + 100,
                    (64 << 10) - 100));
    Seeks("d/punch", fd, {0, 64 << 10, (64 << 10) + 4096});
    char buf[4] = {};
    Say("read d/punch at 64KiB", ::pread(fd, buf, 4, 64 << 10) == 4 ? std::string(buf, 4) : "?");
    const bool zeros = ::pread(fd, buf, 4, (64 << 10) + 100) == 4 && buf[0] == 0 && buf[3] == 0;
    Say("read d/punch at 64KiB+100", zeros ? "zeros" : "?");
    ::close(fd);
    Blocks("d/punch");
  }
  {
    // fallocate mode 0 grows the size (the space it reserves is not
    // compared: see docs/mounter.md).
    int fd = ::open(P("d/alloc").c_str(), O_RDWR | O_CREAT | O_EXCL, 0644);
    Res("fallocate d/alloc 0..1MiB", ::fallocate(fd, 0, 0, 1 << 20));
    Res("fallocate d/alloc KEEP_SIZE 1MiB..2MiB",
        ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20));
    ::close(fd);
    Say("d/alloc", "size=" + std::to_string(Lstat("d/alloc").st_size) +
                       (Content("d/alloc") == std::string(1 << 20, '\0') ? " zeros" : " ?"));
  }

  // Another umask: the kernel applies it to what creating calls ask for.
  ::umask(027);
  Res("create d/um 0666 (umask 027)", Create("d/um", 0666));
  Stat("d/um");
  Res("mkdir d/umd 0777 (umask 027)", ::mkdir(P("d/umd").c_str(), 0777));
  Stat("d/umd");
  Res("mkfifo d/ump 0666 (umask 027)", ::mkfifo(P("d/ump").c_str(), 0666));
  Stat("d/ump");
  ::umask(022);

  // Names and paths.
  Say("create 255-byte name", Err(Create("d/" + std::string(255, 'n'), 0644)));
  Say("create 256-byte name", Err(Create("d/" + std::string(256, 'n'), 0644)));
  Res("unlink 255-byte name", ::unlink(P("d/" + std::string(255, 'n')).c_str()));

  // Advisory locks within one mount.
  {
    int a = ::open(P("d/f").c_str(), O_RDWR);
    int b = ::open(P("d/f").c_str(), O_RDWR);
    Res("flock a LOCK_EX", ::flock(a, LOCK_EX | LOCK_NB));
    Res("flock b LOCK_EX|LOCK_NB", ::flock(b, LOCK_EX | LOCK_NB));
    Res("flock a LOCK_UN", ::flock(a, LOCK_UN));
    Res("flock b LOCK_SH", ::flock(b, LOCK_SH | LOCK_NB));
    ::close(b);
    struct flock lk{};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    lk.l_start = 0;
    lk.l_len = 10;
    Res("fcntl F_SETLK write 0-10", ::fcntl(a, F_SETLK, &lk));
    std::fflush(stdout);
    pid_t child = ::fork();
    if (child == 0) {
      int c = ::open(P("d/f").c_str(), O_RDWR);
      struct flock mine{};
      mine.l_type = F_WRLCK;
      mine.l_whence = SEEK_SET;
      mine.l_start = 5;
      mine.l_len = 1;
      Res("child fcntl F_SETLK 5", ::fcntl(c, F_SETLK, &mine));
      struct flock q{};
      q.l_type = F_WRLCK;
      q.l_whence = SEEK_SET;
      q.l_start = 0;
      q.l_len = 0;
      int rc = ::fcntl(c, F_GETLK, &q);
      Say("child fcntl F_GETLK", rc < 0 ? Err(errno)
                                        : (q.l_type == F_WRLCK && q.l_pid == ::getppid()
                                               ? "write lock held by parent"
                                               : "other: type " + std::to_string(q.l_type)));
      mine.l_start = 20;
      Res("child fcntl F_SETLK 20", ::fcntl(c, F_SETLK, &mine));
      std::fflush(stdout);
      ::_exit(0);
    }
    int status;
    ::waitpid(child, &status, 0);
    ::close(a);
  }
  Stat(".");
}

void PhaseUser() {
  ::umask(022);
  Res("create u/mine", Create("u/mine", 0666, "m"));
  Stat("u/mine");
  Res("chmod u/mine 06755", ::chmod(P("u/mine").c_str(), 06755));
  Stat("u/mine");
  Moved("write u/mine clears setuid", "u/mine", [] { return Append("u/mine", "w"); });
  Stat("u/mine");
  Res("chmod u/mine 06755 again", ::chmod(P("u/mine").c_str(), 06755));
  Res("truncate u/mine clears setuid", ::truncate(P("u/mine").c_str(), 0));
  Stat("u/mine");
  Res("chmod u/grp 02755 (not in group 3000)", ::chmod(P("u/grp").c_str(), 02755));
  Stat("u/grp");
  Res("chmod d/f 0640 (owner)", ::chmod(P("d/f").c_str(), 0640));
  Res("chown d/f 1001 (not root)", ::chown(P("d/f").c_str(), 1001, -1));
  Res("chgrp d/f 1000 (member)", ::chown(P("d/f").c_str(), -1, 1000));
  Res("chgrp d/f 3000 (not member)", ::chown(P("d/f").c_str(), -1, 3000));
  Res("chown d/f 1000:2000 (own uid, member gid)", ::chown(P("d/f").c_str(), 1000, 2000));
  Stat("d/f");
  Res("chmod g/file (not owner)", ::chmod(P("g/file").c_str(), 0666));
  Res("chown g/file 1000 (not owner)", ::chown(P("g/file").c_str(), 1000, -1));
  Say("create d/nope (dir not writable)", Err(Create("d/nope", 0644)));
  Say("read d/secret 0600 root", Err(ReadAll("d/secret")));
  Say("write d/open 0666", Err(Append("d/open", "+")));
  Res("utimens d/open NOW NOW (writable, not owner)", Utimens("d/open", kNow, kNow));
  Res("utimens d/open explicit (not owner)", Utimens("d/open", {5, 0}, {5, 0}));
  Res("utimens u/mine explicit (owner)", Utimens("u/mine", {5, 0}, {6, 0}));
  Say("create t/mine (sticky)", Err(Create("t/mine", 0644, "t")));
  Res("mkdir t/mydir", ::mkdir(P("t/mydir").c_str(), 0700));
  Say("create g/ufile (setgid dir)", Err(Create("g/ufile", 0664)));
  Stat("g/ufile");
  Res("mkdir g/udir (setgid dir)", ::mkdir(P("g/udir").c_str(), 0775));
  Stat("g/udir");
  Res("mkfifo u/fifo", ::mkfifo(P("u/fifo").c_str(), 0600));
  Stat("u/fifo");
  Res("mknod u/cdev S_IFCHR (not root)", ::mknod(P("u/cdev").c_str(), S_IFCHR | 0600, makedev(1, 3)));
  Say("bind u/sock", Err(BindSocket("u/sock")));
  Stat("u/sock");
  Res("mkdir u/sub 0700", ::mkdir(P("u/sub").c_str(), 0700));
  Res("chmod u 0700 (own dir)", ::chmod(P("u").c_str(), 0700));
  Res("chmod u 0755 (own dir)", ::chmod(P("u").c_str(), 0755));
  Res("rename d/f2 -> u/f2 (source dir not writable)",
      ::rename(P("d/f2").c_str(), P("u/f2").c_str()));
  Res("link d/open u/open (protected_hardlinks: not owner, writable)",
      ::link(P("d/open").c_str(), P("u/open").c_str()));
}

void PhaseOther() {
  ::umask(022);
  Res("unlink t/mine (sticky, not owner)", ::unlink(P("t/mine").c_str()));
  Res("rename t/mine -> t/x (sticky, not owner)", ::rename(P("t/mine").c_str(), P("t/x").c_str()));
  Res("rmdir t/mydir (sticky, not owner)", ::rmdir(P("t/mydir").c_str()));
  Say("create t/theirs (sticky)", Err(Create("t/theirs", 0644)));
  Res("rename t/theirs over t/mine (sticky, target not owned)",
      ::rename(P("t/theirs").c_str(), P("t/mine").c_str()));
  Res("unlink t/theirs (own, sticky)", ::unlink(P("t/theirs").c_str()));
  Say("read u/mine", Err(ReadAll("u/mine")));
  Say("write u/mine (no write bit)", Err(Append("u/mine", "o")));
  Say("create u/x (not my dir)", Err(Create("u/x", 0644)));
  Say("list u/sub 0700", Err(Rc(::access(P("u/sub").c_str(), R_OK))));
  Res("chmod t/mine (not owner)", ::chmod(P("t/mine").c_str(), 0777));
  Say("create g/ofile (setgid dir, not group member)", Err(Create("g/ofile", 0644)));
}

void PhaseVerify() {
  for (const char* rel : {".", "d", "d/f", "d/f2", "d/h1", "d/h2", "d/p", "d/s", "d/c", "d/b",
                          "d/sock", "d/l", "d/y2", "d/reg", "d/s1", "d/m", "d/sparse", "d/secret",
                          "d/um", "d/umd", "d/ump",
                          "u", "u/mine", "u/grp", "u/fifo", "u/sock", "u/sub", "t", "t/mine",
                          "t/mydir", "g", "g/sub", "g/file", "g/ufile", "g/udir"}) {
    Stat(rel);
  }
  Say("d/h1 and d/h2 one inode", Lstat("d/h1").st_ino == Lstat("d/h2").st_ino ? "yes" : "no");
  {
    struct stat st = Lstat("d/t1");
    Say("times d/t1 atime", TimeStr(st.st_atim));
    st = Lstat("d/t2");
    Say("d/t2 mtime within a day", std::abs(st.st_mtim.tv_sec - std::time(nullptr)) < 86400 ? "yes" : "no");
    Say("d/t2 atime after mtime", Ns(st.st_atim) > Ns(st.st_mtim) ? "yes" : "no");
  }
  for (const char* rel : {"d/sparse", "d/grow", "d/small", "d/punch"}) {
    int fd = ::open(P(rel).c_str(), O_RDONLY);
    Seeks(rel, fd, {0, 4096, 36864, 64 << 10, (64 << 10) + 4096, (off_t{4} << 20) + 4096,
                    (off_t{4} << 20) + 8192, off_t{8} << 20});
    ::close(fd);
    Blocks(rel);
  }
  {
    // Zeros, 8 KiB of 'm' at 4 MiB + 4 KiB, zeros, 'x' at 8 MiB.
    const std::string all = Content("d/sparse");
    const size_t mid = (size_t{4} << 20) + 4096;
    const bool ok = all.size() == (size_t{8} << 20) + 1 && all.find_first_not_of('\0') == mid &&
                    all.substr(mid, 8192) == std::string(8192, 'm') &&
                    all.find_first_not_of('\0', mid + 8192) == size_t{8} << 20;
    Say("read d/sparse", ok ? "ok" : "?");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: posix_probe DIR root|user|other|verify\n");
    return 2;
  }
  dir = argv[1];
  std::string phase = argv[2];
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "posix_probe: %s is not a directory\n", dir.c_str());
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (phase == "root") {
    PhaseRoot();
  } else if (phase == "user") {
    PhaseUser();
  } else if (phase == "other") {
    PhaseOther();
  } else if (phase == "verify") {
    PhaseVerify();
  } else {
    std::fprintf(stderr, "posix_probe: unknown phase %s\n", phase.c_str());
    return 2;
  }
  return 0;
}
