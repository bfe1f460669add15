// The cluster tier's pod sandbox image (containerd's sandbox_image): PID 1
// of every pod's sandbox. It waits for SIGTERM or SIGINT, reaping any child
// that is re-parented to it, and exits 0. A shell or busybox `sleep` as PID 1
// ignores SIGTERM (the kernel drops signals without a handler for PID 1), so
// every pod deletion would wait out its grace period.
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig) { (void)sig; stop = 1; }
static void on_child(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  while (!stop) pause();
  return 0;
}
