// In-memory BlobStore and MetaStore with the full contracts of the real
// ones (core/blob_store.h, core/meta_store.h), for unit tests. Test-only
// (cairn_testing): production code always uses the real stores.
// Thread-safe: one mutex per store makes every call atomic.
#pragma once

#include <memory>

#include "core/blob_store.h"
#include "core/meta_store.h"

namespace cairn {

std::unique_ptr<BlobStore> NewMemBlobStore();
std::unique_ptr<MetaStore> NewMemMetaStore();

}  // namespace cairn
