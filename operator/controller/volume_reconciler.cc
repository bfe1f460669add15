#include "operator/controller/volume_reconciler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "core/path.h"
#include "core/status.h"
#include "operator/kube/errors.h"

namespace cairn::controller {
namespace {

using kube::Json;

bool HasFinalizer(const Json& obj) {
  const Json* f = kube::Find(obj, {"metadata", "finalizers"});
  if (f == nullptr || !f->is_array()) return false;
  return std::any_of(f->begin(), f->end(),
                     [](const Json& v) { return v.is_string() && v.get<std::string>() == kFinalizer; });
}

std::string ReadyReason(const Json& status) {
  const Json* conds = kube::Find(status, {"conditions"});
  if (conds == nullptr || !conds->is_array()) return "";
  for (const Json& c : *conds) {
    if (kube::GetString(c, "type") == "Ready") return kube::GetString(c, "reason");
  }
  return "";
}

std::string S(absl::string_view v) { return std::string(v); }

}  // namespace

const kube::Resource& VolumeResource() {
  static const kube::Resource r{"cairn.dev", "v1alpha1", "volumes"};
  return r;
}

std::string RfcTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", t, absl::UTCTimeZone());
}

absl::StatusOr<VolumeSpec> ParseSpec(const Json& volume) {
  VolumeSpec spec;
  const Json* s = kube::Find(volume, {"spec"});
  if (s != nullptr && !s->is_object()) return absl::InvalidArgumentError("spec is not an object");
  Json empty = Json::object();
  const Json& sp = s == nullptr ? empty : *s;
  if (const Json* v = kube::Find(sp, {"version"}); v != nullptr) {
    if (!v->is_number_integer() || (v->get<int64_t>() != 1 && v->get<int64_t>() != 2)) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.version must be 1 or 2, not ", kube::Dump(*v)));
    }
    spec.version = static_cast<int>(v->get<int64_t>());
  }
  std::string policy = kube::GetString(sp, "deletionPolicy", "Retain");
  if (policy != "Retain" && policy != "Delete") {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.deletionPolicy must be Retain or Delete, not '", policy, "'"));
  }
  spec.delete_data = policy == "Delete";
  spec.limits = DefaultLimits(spec.version);
  // The version's limits can only be tightened (decisions.md D6).
  auto tighten = [&](const char* field, uint64_t& limit, uint64_t hard_max,
                     const char* what) -> absl::Status {
    const Json* v = kube::Find(sp, {"limits", field});
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number_integer() || v->get<int64_t>() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.limits.", field, " must be a positive integer"));
    }
    uint64_t want = v->get<uint64_t>();
    if (hard_max != 0 && want > hard_max) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.limits.", field, " ", want, " is above what version ", spec.version,
          " allows (", hard_max, " ", what, "); limits can only be tightened"));
    }
    limit = want;
    return absl::OkStatus();
  };
  uint64_t max_inodes = spec.limits.max_inodes;
  uint64_t max_file = spec.limits.max_file_size;
  CAIRN_RETURN_IF_ERROR(tighten("maxInodes", spec.limits.max_inodes, max_inodes, "inodes"));
  CAIRN_RETURN_IF_ERROR(tighten("maxBytes", spec.limits.max_file_size, max_file, "bytes per file"));
  return spec;
}

Json BuildStatus(const Json& current, int64_t generation, const Observed& o, absl::Time now) {
  Json status = Json::object();
  status["phase"] = o.phase;
  status["observedGeneration"] = generation;
  if (o.volume.has_value()) {
    status["id"] = o.volume->id;
  } else if (const Json* id = kube::Find(current, {"id"}); id != nullptr && id->is_string()) {
    status["id"] = *id;  // keep the identity even while the volume is missing
  }
  if (o.head.has_value()) {
    status["inodes"] = o.head->inodes;
    status["bytes"] = o.head->bytes;
    status["commits"] = o.head->seq;
    if (o.head->seq > 0) {
      status["lastCommitTime"] = RfcTime(absl::FromUnixNanos(o.head->created_at_ns));
    }
  }
  std::string cond_status = o.ready ? "True" : "False";
  std::string transition = RfcTime(now);
  if (const Json* conds = kube::Find(current, {"conditions"}); conds != nullptr && conds->is_array()) {
    for (const Json& c : *conds) {
      if (kube::GetString(c, "type") == "Ready" && kube::GetString(c, "status") == cond_status) {
        transition = kube::GetString(c, "lastTransitionTime", transition);
      }
    }
  }
  status["conditions"] = Json::array({Json{{"type", "Ready"},
                                           {"status", cond_status},
                                           {"reason", o.reason},
                                           {"message", o.message},
                                           {"lastTransitionTime", transition},
                                           {"observedGeneration", generation}}});
  return status;
}

VolumeReconciler::VolumeReconciler(kube::Client* kube, Engine* engine, ControllerMetrics* metrics)
    : kube_(kube), engine_(engine), metrics_(metrics) {}

void VolumeReconciler::SetGauges(const std::string& ns, const std::string& name,
                                 const SnapshotRecord& head) {
  metrics_->volume_inodes.WithLabels({ns, name}).Set(static_cast<double>(head.inodes));
  metrics_->volume_bytes.WithLabels({ns, name}).Set(static_cast<double>(head.bytes));
  metrics::Counter& commits = metrics_->volume_commits.WithLabels({ns, name});
  double seen = commits.value();
  if (static_cast<double>(head.seq) > seen) commits.Increment(static_cast<double>(head.seq) - seen);
}

void VolumeReconciler::DropGauges(const std::string& ns, const std::string& name,
                                  bool volume_deleted) {
  metrics_->volume_commits.Remove({ns, name});
  // inodes/bytes describe the Cairn volume (the Volume API sets them too):
  // they go only with the volume, not with a resource whose data is retained.
  if (volume_deleted) {
    metrics_->volume_inodes.Remove({ns, name});
    metrics_->volume_bytes.Remove({ns, name});
  }
}

void VolumeReconciler::Event(const Json& obj, bool warning, const std::string& reason,
                             const std::string& message) {
  std::string ns = kube::GetStringAt(obj, {"metadata", "namespace"});
  std::string name = kube::GetStringAt(obj, {"metadata", "name"});
  std::string now = absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone());
  Json ev = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"generateName", name + "."}, {"namespace", ns}}},
      {"involvedObject",
       {{"apiVersion", "cairn.dev/v1alpha1"},
        {"kind", "Volume"},
        {"namespace", ns},
        {"name", name},
        {"uid", kube::GetStringAt(obj, {"metadata", "uid"})},
        {"resourceVersion", kube::GetStringAt(obj, {"metadata", "resourceVersion"})}}},
      {"reason", reason},
      {"message", message},
      {"type", warning ? "Warning" : "Normal"},
      {"source", {{"component", "cairn-operator"}}},
      {"reportingComponent", "cairn-operator"},
      {"firstTimestamp", RfcTime(absl::Now())},
      {"lastTimestamp", RfcTime(absl::Now())},
      {"eventTime", now},
      {"action", "Reconcile"},
      {"reportingInstance", "cairn-operator"},
      {"count", 1}};
  absl::Status s = kube_->Create(kube::ResourcePath({"", "v1", "events"}, ns), ev).status();
  if (!s.ok()) CAIRN_LOG_WARNING("recording event %s on %s/%s: %s", reason, ns, name, s.ToString());
}

absl::Status VolumeReconciler::EnsureFinalizer(Json& obj, const std::string& ns,
                                               const std::string& name) {
  if (HasFinalizer(obj)) return absl::OkStatus();
  Json& meta = obj["metadata"];
  if (!meta.contains("finalizers") || !meta["finalizers"].is_array()) {
    meta["finalizers"] = Json::array();
  }
  meta["finalizers"].push_back(kFinalizer);
  // A PUT with the read resourceVersion: if the object changed meanwhile it
  // is a Conflict and the next pass starts from the new one.
  CAIRN_ASSIGN_OR_RETURN(obj, kube_->Update(kube::ResourcePath(VolumeResource(), ns, name), obj));
  return absl::OkStatus();
}

absl::Status VolumeReconciler::WriteStatus(const Json& obj, const std::string& ns,
                                           const std::string& name, const Observed& observed) {
  Json current = Json::object();
  if (const Json* st = kube::Find(obj, {"status"}); st != nullptr && st->is_object()) current = *st;
  int64_t generation = kube::GetIntAt(obj, {"metadata", "generation"});
  Json next = BuildStatus(current, generation, observed, absl::Now());
  std::string old_reason = ReadyReason(current);
  if (next == current) return absl::OkStatus();
  // A merge patch replaces `conditions` whole and sets the rest; fields we
  // stopped reporting are nulled so they do not linger.
  Json patch_status = next;
  for (auto it = current.begin(); it != current.end(); ++it) {
    if (!next.contains(it.key())) patch_status[it.key()] = nullptr;
  }
  absl::Status s = kube_->MergePatch(kube::ResourcePath(VolumeResource(), ns, name, "status"),
                                     Json{{"status", patch_status}})
                       .status();
  if (!s.ok()) return s;
  if (old_reason != observed.reason) {
    Event(obj, !observed.ready, observed.reason, observed.message);
  }
  return absl::OkStatus();
}

absl::StatusOr<ReconcileResult> VolumeReconciler::Finalize(const Json& obj, const std::string& ns,
                                                           const std::string& name) {
  ReconcileResult result;
  if (!HasFinalizer(obj)) return result;  // not ours to hold
  absl::StatusOr<VolumeSpec> spec = ParseSpec(obj);
  bool delete_data = spec.ok() && spec->delete_data;
  std::string id = kube::GetStringAt(obj, {"status", "id"});
  if (id.empty()) {
    // Created but the status write did not land (crash): the finalizer says
    // the volume of this name is ours.
    absl::StatusOr<VolumeRecord> v = engine_->GetVolume(ns, name);
    if (v.ok()) {
      id = v->id;
    } else if (!absl::IsNotFound(v.status())) {
      return v.status();
    }
  }
  std::string what;
  if (delete_data && !id.empty()) {
    absl::Status s = engine_->DeleteVolumeById(id);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
    what = absl::IsNotFound(s) ? absl::StrCat("Cairn volume ", id, " was already gone")
                               : absl::StrCat("Cairn volume ", id, " deleted; its data key is destroyed");
  } else if (!id.empty()) {
    what = absl::StrCat("Cairn volume ", id, " retained (deletionPolicy Retain)");
  } else {
    what = "no Cairn volume to clean up";
  }
  Json updated = obj;
  Json& fins = updated["metadata"]["finalizers"];
  fins.erase(std::remove(fins.begin(), fins.end(), Json(kFinalizer)), fins.end());
  absl::Status s = kube_->Update(kube::ResourcePath(VolumeResource(), ns, name), updated).status();
  if (!s.ok() && !kube::IsNotFound(s)) return s;
  CAIRN_LOG_INFO("volume %s/%s finalized: %s", ns, name, what);
  Event(obj, false, delete_data ? "Deleted" : "Retained", what);
  DropGauges(ns, name, delete_data);
  result.gone = true;
  return result;
}

absl::StatusOr<ReconcileResult> VolumeReconciler::Reconcile(const std::string& ns,
                                                            const std::string& name) {
  ReconcileResult result;
  absl::StatusOr<Json> got = kube_->Get(kube::ResourcePath(VolumeResource(), ns, name));
  if (kube::IsNotFound(got.status())) {
    DropGauges(ns, name, /*volume_deleted=*/false);
    result.gone = true;
    return result;
  }
  if (!got.ok()) return got.status();
  Json obj = *std::move(got);
  if (kube::Find(obj, {"metadata", "deletionTimestamp"}) != nullptr) {
    return Finalize(obj, ns, name);
  }

  Observed o;
  absl::StatusOr<VolumeSpec> spec = ParseSpec(obj);
  // The CRD refuses names Cairn cannot hold, but objects stored before that
  // rule (or with it removed) must still get a condition, not endless retries.
  if (spec.ok()) {
    absl::Status name_ok = ValidateNamespace(ns);
    if (name_ok.ok()) name_ok = ValidateVolumeName(name);
    if (!name_ok.ok()) spec = name_ok;
  }
  if (!spec.ok()) {
    o.phase = "Failed";
    o.reason = "InvalidSpec";
    o.message = S(spec.status().message());
    CAIRN_RETURN_IF_ERROR(WriteStatus(obj, ns, name, o));
    return result;
  }

  std::string id = kube::GetStringAt(obj, {"status", "id"});
  std::optional<VolumeRecord> volume;
  if (!id.empty()) {
    absl::StatusOr<VolumeRecord> v = engine_->GetVolumeById(id);
    if (absl::IsNotFound(v.status())) {
      o.phase = "Failed";
      o.reason = "VolumeMissing";
      o.message = absl::StrCat("Cairn volume ", id,
                               " no longer exists (deleted outside Kubernetes); delete this "
                               "Volume, or re-create it to get a new, empty volume");
      CAIRN_RETURN_IF_ERROR(WriteStatus(obj, ns, name, o));
      return result;
    }
    if (!v.ok()) return v.status();
    volume = *std::move(v);
  } else {
    absl::StatusOr<VolumeRecord> v = engine_->GetVolume(ns, name);
    if (v.ok()) {
      bool adopt = kube::GetStringAt(obj, {"metadata", "annotations", kAdoptAnnotation}) == "true";
      if (!HasFinalizer(obj) && !adopt) {
        o.phase = "Failed";
        o.reason = "NameTaken";
        o.message = absl::StrCat("a Cairn volume named ", name, " (", v->id,
                                 ") already exists in namespace ", ns,
                                 "; annotate this Volume with ", kAdoptAnnotation,
                                 "=\"true\" to adopt it");
        CAIRN_RETURN_IF_ERROR(WriteStatus(obj, ns, name, o));
        return result;
      }
      CAIRN_RETURN_IF_ERROR(EnsureFinalizer(obj, ns, name));
      volume = *std::move(v);
      o.reason = "Adopted";
    } else if (absl::IsNotFound(v.status())) {
      // The finalizer first: from then on a volume of this name is ours,
      // whichever step a crash interrupts.
      CAIRN_RETURN_IF_ERROR(EnsureFinalizer(obj, ns, name));
      absl::StatusOr<VolumeRecord> created =
          engine_->CreateVolume(ns, name, spec->version, spec->limits);
      if (absl::IsAlreadyExists(created.status())) {
        return absl::AbortedError(absl::StrCat("volume ", ns, "/", name,
                                               " appeared while creating it; retrying"));
      }
      if (absl::IsInvalidArgument(created.status())) {
        o.phase = "Failed";
        o.reason = "InvalidSpec";
        o.message = S(created.status().message());
        CAIRN_RETURN_IF_ERROR(WriteStatus(obj, ns, name, o));
        return result;
      }
      if (!created.ok()) return created.status();
      CAIRN_LOG_INFO("volume %s/%s: created Cairn volume %s (version %d)", ns, name, created->id,
                     spec->version);
      volume = *std::move(created);
      o.reason = "Created";
    } else {
      return v.status();
    }
  }
  CAIRN_RETURN_IF_ERROR(EnsureFinalizer(obj, ns, name));

  CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(volume->id));
  o.volume = volume;
  o.head = head;
  if (volume->version != spec->version) {
    o.phase = "Failed";
    o.reason = "VersionMismatch";
    o.message = absl::StrCat("the Cairn volume ", volume->id, " is version ", volume->version,
                             " but spec.version is ", spec->version);
  } else {
    o.phase = "Ready";
    o.ready = true;
    // Keep the reason that made it ready (Created or Adopted) for the life
    // of the condition; a first pass after a restart says VolumeReady.
    std::string previous = ReadyReason(obj.value("status", Json::object()));
    if (o.reason.empty()) {
      o.reason = previous == "Created" || previous == "Adopted" ? previous : "VolumeReady";
    }
    o.message = absl::StrCat("Cairn volume ", volume->id, " is ready");
  }
  CAIRN_RETURN_IF_ERROR(WriteStatus(obj, ns, name, o));
  SetGauges(ns, name, head);
  result.volume_id = volume->id;
  result.head_seq = head.seq;
  return result;
}

}  // namespace cairn::controller
