#include "core/api_convert.h"

namespace cairn {

api::Snapshot ToApi(const SnapshotRecord& s) {
  api::Snapshot out;
  out.set_volume_id(s.volume_id);
  out.set_seq(s.seq);
  out.set_root(s.root.RawString());
  out.set_parent_seq(s.parent_seq);
  out.set_created_at_ns(s.created_at_ns);
  out.set_inodes(s.inodes);
  out.set_bytes(s.bytes);
  return out;
}

}  // namespace cairn
