// Conversions from the core's records to Volume API messages, shared by the
// server (operator/volume_service) and the in-process test client
// (mounter/testing), so both answer with the same fields.
#pragma once

#include "core/meta_store.h"
#include "proto/volume.pb.h"

namespace cairn {

api::Snapshot ToApi(const SnapshotRecord& s);

}  // namespace cairn
