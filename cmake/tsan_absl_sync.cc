// Linked into every executable of the ThreadSanitizer build (CAIRN_TSAN)
// and nowhere else.
//
// Debian's abseil is not built with TSan, so TSan cannot see absl::Mutex,
// CondVar or Notification synchronise: every field guarded by an
// absl::Mutex would be reported as a race. These definitions interpose the
// library's entry points (a definition in the executable wins over the
// shared library's), call the real function, and tell TSan what it did:
// acquire after a lock is taken, release before it is given up, a release
// and an acquire around the waits that drop and retake the lock. Readers
// count as holders (a little stronger than TSan's own reader model, so a
// race between two readers would be missed; readers do not write).
//
// The mangled names are those of Debian bookworm's abseil 20220623
// (inline namespace "debian3"); with another abseil the build fails here,
// or a missing symbol aborts at start-up, rather than silently annotating
// nothing. Not covered: HasBeenNotified() (inline; polls an atomic inside
// the library), so code that polls a Notification instead of waiting on it
// may still be reported.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

static_assert(sizeof(absl::debian3::Mutex) > 0, "another abseil: update the mangled names");
static_assert(ABSL_OPTION_USE_INLINE_NAMESPACE == 1);

namespace {

template <typename Fn>
Fn* Real(const char* symbol) {
  void* fn = dlsym(RTLD_NEXT, symbol);
  if (fn == nullptr) {
    fprintf(stderr, "tsan_absl_sync: %s not found in abseil: %s\n", symbol, dlerror());
    abort();
  }
  return reinterpret_cast<Fn*>(fn);
}

using absl::CondVar;
using absl::Condition;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

// abseil evaluates a Condition with the mutex held, inside Await/LockWhen
// (on the waiting thread, or on the thread that is unlocking). Those
// internal lock hand-offs are invisible here, so the evaluation itself is
// bracketed: it holds `mu`, so it acquires before and releases after.
struct Guarded {
  const Condition* cond;
  Mutex* mu;
  static bool Eval(void* arg) {
    auto* g = static_cast<Guarded*>(arg);
    __tsan_acquire(g->mu);
    bool r = g->cond->Eval();
    __tsan_release(g->mu);
    return r;
  }
};

}  // namespace

#define CAIRN_SHIM(ret, name, mangled, params, args, before, after) \
  ret name params __asm__(mangled);                                 \
  ret name params {                                                 \
    static auto* real = Real<ret params>(mangled);                  \
    before;                                                         \
    ret r = real args;                                              \
    after;                                                          \
    return r;                                                       \
  }
#define CAIRN_SHIM_VOID(name, mangled, params, args, before, after) \
  void name params __asm__(mangled);                                \
  void name params {                                                \
    static auto* real = Real<void params>(mangled);                 \
    before;                                                         \
    real args;                                                      \
    after;                                                          \
  }

// clang-format off
CAIRN_SHIM_VOID(MutexLock, "_ZN4absl7debian35Mutex4LockEv",
                (Mutex* mu), (mu), , __tsan_acquire(mu))
CAIRN_SHIM_VOID(MutexReaderLock, "_ZN4absl7debian35Mutex10ReaderLockEv",
                (Mutex* mu), (mu), , __tsan_acquire(mu))
CAIRN_SHIM_VOID(MutexUnlock, "_ZN4absl7debian35Mutex6UnlockEv",
                (Mutex* mu), (mu), __tsan_release(mu), )
CAIRN_SHIM_VOID(MutexReaderUnlock, "_ZN4absl7debian35Mutex12ReaderUnlockEv",
                (Mutex* mu), (mu), __tsan_release(mu), )
CAIRN_SHIM(bool, MutexTryLock, "_ZN4absl7debian35Mutex7TryLockEv",
           (Mutex* mu), (mu), , if (r) __tsan_acquire(mu))
CAIRN_SHIM(bool, MutexReaderTryLock, "_ZN4absl7debian35Mutex13ReaderTryLockEv",
           (Mutex* mu), (mu), , if (r) __tsan_acquire(mu))
CAIRN_SHIM_VOID(CondVarWait, "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE",
                (CondVar* cv, Mutex* mu), (cv, mu), __tsan_release(mu), __tsan_acquire(mu))
CAIRN_SHIM(bool, CondVarWaitWithTimeout,
           "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE",
           (CondVar* cv, Mutex* mu, Duration d), (cv, mu, d), __tsan_release(mu),
           __tsan_acquire(mu))
CAIRN_SHIM(bool, CondVarWaitWithDeadline,
           "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE",
           (CondVar* cv, Mutex* mu, Time t), (cv, mu, t), __tsan_release(mu),
           __tsan_acquire(mu))
CAIRN_SHIM_VOID(NotificationNotify, "_ZN4absl7debian312Notification6NotifyEv",
                (Notification* n), (n), __tsan_release(n), )
CAIRN_SHIM_VOID(NotificationWait, "_ZNK4absl7debian312Notification19WaitForNotificationEv",
                (const Notification* n), (n), , __tsan_acquire(const_cast<Notification*>(n)))
CAIRN_SHIM(bool, NotificationWaitWithTimeout,
           "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE",
           (const Notification* n, Duration d), (n, d), ,
           if (r) __tsan_acquire(const_cast<Notification*>(n)))
CAIRN_SHIM(bool, NotificationWaitWithDeadline,
           "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE",
           (const Notification* n, Time t), (n, t), ,
           if (r) __tsan_acquire(const_cast<Notification*>(n)))

// The Condition-taking calls: the caller's condition is evaluated through
// Guarded. `extra` is the timeout or deadline parameter, if any.
#define CAIRN_COND_SHIM(ret, name, mangled, extra_params, extra_args, before, after) \
  ret name(Mutex* mu, const Condition& cond extra_params) __asm__(mangled);          \
  ret name(Mutex* mu, const Condition& cond extra_params) {                          \
    static auto* real = Real<ret(Mutex*, const Condition& extra_params)>(mangled);   \
    Guarded g{&cond, mu};                                                            \
    Condition guarded(&Guarded::Eval, &g);                                           \
    before;                                                                          \
    ret r = real(mu, guarded extra_args);                                            \
    after;                                                                           \
    return r;                                                                        \
  }
#define CAIRN_COND_SHIM_VOID(name, mangled, before, after)         \
  void name(Mutex* mu, const Condition& cond) __asm__(mangled);    \
  void name(Mutex* mu, const Condition& cond) {                    \
    static auto* real = Real<void(Mutex*, const Condition&)>(mangled); \
    Guarded g{&cond, mu};                                          \
    Condition guarded(&Guarded::Eval, &g);                         \
    before;                                                        \
    real(mu, guarded);                                             \
    after;                                                         \
  }
#define COMMA ,

CAIRN_COND_SHIM_VOID(MutexLockWhen, "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE",
                     , __tsan_acquire(mu))
CAIRN_COND_SHIM_VOID(MutexReaderLockWhen,
                     "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE",
                     , __tsan_acquire(mu))
CAIRN_COND_SHIM_VOID(MutexAwait, "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE",
                     __tsan_release(mu), __tsan_acquire(mu))
CAIRN_COND_SHIM(bool, MutexLockWhenWithTimeout,
                "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE",
                COMMA Duration d, COMMA d, , __tsan_acquire(mu))
CAIRN_COND_SHIM(bool, MutexLockWhenWithDeadline,
                "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE",
                COMMA Time t, COMMA t, , __tsan_acquire(mu))
CAIRN_COND_SHIM(bool, MutexReaderLockWhenWithTimeout,
                "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE",
                COMMA Duration d, COMMA d, , __tsan_acquire(mu))
CAIRN_COND_SHIM(bool, MutexReaderLockWhenWithDeadline,
                "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE",
                COMMA Time t, COMMA t, , __tsan_acquire(mu))
CAIRN_COND_SHIM(bool, MutexAwaitWithTimeout,
                "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE",
                COMMA Duration d, COMMA d, __tsan_release(mu), __tsan_acquire(mu))
CAIRN_COND_SHIM(bool, MutexAwaitWithDeadline,
                "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE",
                COMMA Time t, COMMA t, __tsan_release(mu), __tsan_acquire(mu))
// clang-format on
