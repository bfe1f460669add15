// setxattr PATH NAME VALUE: one setxattr(2) call, for the cluster tier's
// workload image (busybox has no setfattr). Cairn mounts take their
// controls as extended attributes on the mount root, e.g.
// `setxattr /data user.cairn.reload 1` (docs/csi.md). Exit 0 on success;
// on failure prints strerror and exits 1 (2 on wrong usage).
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/xattr.h>

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: setxattr PATH NAME VALUE\n");
    return 2;
  }
  if (setxattr(argv[1], argv[2], argv[3], strlen(argv[3]), 0) != 0) {
    fprintf(stderr, "setxattr %s %s: %s\n", argv[1], argv[2], strerror(errno));
    return 1;
  }
  return 0;
}
