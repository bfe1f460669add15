#include "core/testing/fault_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

namespace cairn::testing {

struct FaultSqliteVfs::Impl {
  sqlite3_vfs vfs;  // first: SQLite hands this pointer back to us
  sqlite3_vfs* base = nullptr;
  PowerSwitch* power = nullptr;
};

namespace {

using Impl = FaultSqliteVfs::Impl;

Impl* Of(sqlite3_vfs* vfs) { return reinterpret_cast<Impl*>(vfs); }

struct Extent {
  sqlite3_int64 offset;
  std::string data;
};

struct FaultFile {
  sqlite3_file file;  // first: pMethods
  Impl* owner;
  sqlite3_file* real;
  // Writes and a truncation not yet synced, applied in order at xSync.
  std::vector<Extent>* pending;
  sqlite3_int64 truncated_to;  // max(): no truncation pending
  sqlite3_int64 size;          // the size SQLite sees
};

FaultFile* Of(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f); }

bool On(FaultFile* f) { return f->owner->power == nullptr || f->owner->power->On(); }
bool Tick(FaultFile* f) { return f->owner->power == nullptr || f->owner->power->Tick(); }

int Flush(FaultFile* f) {
  const sqlite3_io_methods* m = f->real->pMethods;
  if (f->truncated_to != std::numeric_limits<sqlite3_int64>::max()) {
    int rc = m->xTruncate(f->real, f->truncated_to);
    if (rc != SQLITE_OK) return rc;
    f->truncated_to = std::numeric_limits<sqlite3_int64>::max();
  }
  for (const Extent& e : *f->pending) {
    int rc = m->xWrite(f->real, e.data.data(), static_cast<int>(e.data.size()), e.offset);
    if (rc != SQLITE_OK) return rc;
  }
  f->pending->clear();
  return SQLITE_OK;
}

int Close(sqlite3_file* file) {
  FaultFile* f = Of(file);
  // With the power on, a close loses nothing (the page cache keeps it);
  // after a cut, what was pending is gone.
  if (On(f)) Flush(f);
  int rc = f->real->pMethods != nullptr ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
  delete f->pending;
  std::free(f->real);
  return rc;
}

int Read(sqlite3_file* file, void* buf, int amt, sqlite3_int64 off) {
  FaultFile* f = Of(file);
  if (!On(f)) return SQLITE_IOERR_READ;
  char* out = static_cast<char*>(buf);
  int rc = f->real->pMethods->xRead(f->real, buf, amt, off);
  if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) return rc;
  const sqlite3_int64 end = off + amt;
  // The real file past a pending truncation reads as zeros.
  if (f->truncated_to < end) {
    const sqlite3_int64 from = std::max(off, f->truncated_to);
    std::memset(out + (from - off), 0, static_cast<size_t>(end - from));
  }
  for (const Extent& e : *f->pending) {
    const sqlite3_int64 lo = std::max(off, e.offset);
    const sqlite3_int64 hi = std::min(end, e.offset + static_cast<sqlite3_int64>(e.data.size()));
    if (lo < hi) {
      std::memcpy(out + (lo - off), e.data.data() + (lo - e.offset), static_cast<size_t>(hi - lo));
    }
  }
  if (end > f->size) {
    const sqlite3_int64 from = std::max(off, f->size);
    std::memset(out + (from - off), 0, static_cast<size_t>(end - from));
    return SQLITE_IOERR_SHORT_READ;
  }
  return SQLITE_OK;
}

int Write(sqlite3_file* file, const void* buf, int amt, sqlite3_int64 off) {
  FaultFile* f = Of(file);
  if (!Tick(f)) return SQLITE_IOERR_WRITE;
  f->pending->push_back(Extent{off, std::string(static_cast<const char*>(buf), amt)});
  f->size = std::max(f->size, off + amt);
  return SQLITE_OK;
}

int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  FaultFile* f = Of(file);
  if (!Tick(f)) return SQLITE_IOERR_TRUNCATE;
  if (size >= f->size) return SQLITE_OK;
  f->truncated_to = std::min(f->truncated_to, size);
  f->size = size;
  std::vector<Extent>& p = *f->pending;
  for (Extent& e : p) {
    if (e.offset + static_cast<sqlite3_int64>(e.data.size()) > size) {
      e.data.resize(static_cast<size_t>(std::max<sqlite3_int64>(0, size - e.offset)));
    }
  }
  p.erase(std::remove_if(p.begin(), p.end(), [](const Extent& e) { return e.data.empty(); }),
          p.end());
  return SQLITE_OK;
}

int Sync(sqlite3_file* file, int flags) {
  FaultFile* f = Of(file);
  if (!Tick(f)) return SQLITE_IOERR_FSYNC;
  int rc = Flush(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xSync(f->real, flags);
}

int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  FaultFile* f = Of(file);
  if (!On(f)) return SQLITE_IOERR_FSTAT;
  *size = f->size;
  return SQLITE_OK;
}

int Lock(sqlite3_file* file, int level) {
  FaultFile* f = Of(file);
  if (!On(f)) return SQLITE_IOERR_LOCK;
  return f->real->pMethods->xLock(f->real, level);
}
int Unlock(sqlite3_file* file, int level) {
  // Always allowed: a dead process drops its locks too.
  return Of(file)->real->pMethods->xUnlock(Of(file)->real, level);
}
int CheckReservedLock(sqlite3_file* file, int* out) {
  FaultFile* f = Of(file);
  if (!On(f)) return SQLITE_IOERR_CHECKRESERVEDLOCK;
  return f->real->pMethods->xCheckReservedLock(f->real, out);
}
int FileControl(sqlite3_file* file, int op, void* arg) {
  FaultFile* f = Of(file);
  // Size hints would grow the real file behind the pending writes' back.
  if (op == SQLITE_FCNTL_SIZE_HINT || op == SQLITE_FCNTL_CHUNK_SIZE) return SQLITE_NOTFOUND;
  return f->real->pMethods->xFileControl(f->real, op, arg);
}
int SectorSize(sqlite3_file* file) { return Of(file)->real->pMethods->xSectorSize(Of(file)->real); }
int DeviceCharacteristics(sqlite3_file* file) {
  return Of(file)->real->pMethods->xDeviceCharacteristics(Of(file)->real);
}
int ShmMap(sqlite3_file* file, int page, int size, int extend, void volatile** out) {
  FaultFile* f = Of(file);
  if (!On(f)) return SQLITE_IOERR_SHMMAP;
  return f->real->pMethods->xShmMap(f->real, page, size, extend, out);
}
int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  FaultFile* f = Of(file);
  if (!On(f) && (flags & SQLITE_SHM_LOCK)) return SQLITE_IOERR_SHMLOCK;
  return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}
void ShmBarrier(sqlite3_file* file) { Of(file)->real->pMethods->xShmBarrier(Of(file)->real); }
int ShmUnmap(sqlite3_file* file, int del) {
  return Of(file)->real->pMethods->xShmUnmap(Of(file)->real, del);
}

const sqlite3_io_methods kMethods = {
    2,  // iVersion: shared memory, no memory-mapped I/O
    Close,      Read,       Write,      Truncate,  Sync,     FileSize,
    Lock,       Unlock,     CheckReservedLock,     FileControl,
    SectorSize, DeviceCharacteristics,  ShmMap,    ShmLock,  ShmBarrier,
    ShmUnmap,   nullptr,    nullptr,
};

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  Impl* impl = Of(vfs);
  FaultFile* f = Of(file);
  f->file.pMethods = nullptr;
  if (impl->power != nullptr && !impl->power->On()) return SQLITE_CANTOPEN;
  auto* real = static_cast<sqlite3_file*>(std::calloc(1, impl->base->szOsFile));
  if (real == nullptr) return SQLITE_NOMEM;
  int rc = impl->base->xOpen(impl->base, name, real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (real->pMethods != nullptr) real->pMethods->xClose(real);
    std::free(real);
    return rc;
  }
  sqlite3_int64 size = 0;
  rc = real->pMethods->xFileSize(real, &size);
  if (rc != SQLITE_OK) {
    real->pMethods->xClose(real);
    std::free(real);
    return rc;
  }
  f->owner = impl;
  f->real = real;
  f->pending = new std::vector<Extent>();
  f->truncated_to = std::numeric_limits<sqlite3_int64>::max();
  f->size = size;
  f->file.pMethods = &kMethods;
  return SQLITE_OK;
}

int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  Impl* impl = Of(vfs);
  if (impl->power != nullptr && !impl->power->Tick()) return SQLITE_IOERR_DELETE;
  return impl->base->xDelete(impl->base, name, sync_dir);
}
int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  Impl* impl = Of(vfs);
  if (impl->power != nullptr && !impl->power->On()) return SQLITE_IOERR_ACCESS;
  return impl->base->xAccess(impl->base, name, flags, out);
}
int FullPathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  return Of(vfs)->base->xFullPathname(Of(vfs)->base, name, n, out);
}
void* DlOpen(sqlite3_vfs* vfs, const char* name) {
  return Of(vfs)->base->xDlOpen(Of(vfs)->base, name);
}
void DlError(sqlite3_vfs* vfs, int n, char* out) { Of(vfs)->base->xDlError(Of(vfs)->base, n, out); }
void (*DlSym(sqlite3_vfs* vfs, void* handle, const char* sym))(void) {
  return Of(vfs)->base->xDlSym(Of(vfs)->base, handle, sym);
}
void DlClose(sqlite3_vfs* vfs, void* handle) { Of(vfs)->base->xDlClose(Of(vfs)->base, handle); }
int Randomness(sqlite3_vfs* vfs, int n, char* out) {
  return Of(vfs)->base->xRandomness(Of(vfs)->base, n, out);
}
int Sleep(sqlite3_vfs* vfs, int us) { return Of(vfs)->base->xSleep(Of(vfs)->base, us); }
int CurrentTime(sqlite3_vfs* vfs, double* out) {
  return Of(vfs)->base->xCurrentTime(Of(vfs)->base, out);
}
int GetLastError(sqlite3_vfs* vfs, int n, char* out) {
  return Of(vfs)->base->xGetLastError(Of(vfs)->base, n, out);
}
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return Of(vfs)->base->xCurrentTimeInt64(Of(vfs)->base, out);
}

}  // namespace

FaultSqliteVfs::FaultSqliteVfs(std::string name, PowerSwitch* power)
    : name_(std::move(name)), impl_(std::make_unique<Impl>()) {
  sqlite3_initialize();
  impl_->base = sqlite3_vfs_find(nullptr);
  impl_->power = power;
  sqlite3_vfs& v = impl_->vfs;
  std::memset(&v, 0, sizeof(v));
  v.iVersion = 2;
  v.szOsFile = sizeof(FaultFile);
  v.mxPathname = impl_->base->mxPathname;
  v.zName = name_.c_str();
  v.pAppData = impl_.get();
  v.xOpen = Open;
  v.xDelete = Delete;
  v.xAccess = Access;
  v.xFullPathname = FullPathname;
  v.xDlOpen = DlOpen;
  v.xDlError = DlError;
  v.xDlSym = DlSym;
  v.xDlClose = DlClose;
  v.xRandomness = Randomness;
  v.xSleep = Sleep;
  v.xCurrentTime = CurrentTime;
  v.xGetLastError = GetLastError;
  v.xCurrentTimeInt64 = CurrentTimeInt64;
  sqlite3_vfs_register(&v, /*makeDflt=*/0);
}

FaultSqliteVfs::~FaultSqliteVfs() { sqlite3_vfs_unregister(&impl_->vfs); }

}  // namespace cairn::testing
