// The in-mount control surface of a Cairn mount: extended attributes on the
// mount's root directory that any process can use without a Cairn binary
// (a pod, `cairn volume commit|reload|status`, the CSI plugin).
//
//   setxattr(root, kCommitXattr, any value)  commit now (also: fsync of the
//                                            root directory, i.e. `sync ROOT`)
//   setxattr(root, kReloadXattr, any value)  move to the volume's head (C5;
//                                            EBUSY while files are open)
//   getxattr(root, kStatusXattr)             the mount's state as JSON
//
// The value written is ignored. Errors come back as the syscall's errno.
#pragma once

namespace cairn {

inline constexpr char kCommitXattr[] = "user.cairn.commit";
inline constexpr char kReloadXattr[] = "user.cairn.reload";
inline constexpr char kStatusXattr[] = "user.cairn.status";

}  // namespace cairn
