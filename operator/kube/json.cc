#include "operator/kube/json.h"

namespace cairn::kube {

Json ParseJson(std::string_view text) {
  return Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

absl::StatusOr<Json> ParseObject(std::string_view text, std::string_view what) {
  Json j = ParseJson(text);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        std::string(what) + ": response is not a JSON object: " + std::string(text.substr(0, 200)));
  }
  return j;
}

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

const Json* Find(const Json& j, std::initializer_list<std::string_view> path) {
  const Json* cur = &j;
  for (std::string_view key : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(key);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

std::string GetString(const Json& j, std::string_view key, std::string_view def) {
  return GetStringAt(j, {key}, def);
}

std::string GetStringAt(const Json& j, std::initializer_list<std::string_view> path,
                        std::string_view def) {
  const Json* v = Find(j, path);
  if (v == nullptr || !v->is_string()) return std::string(def);
  return v->get_ref<const std::string&>();
}

int64_t GetIntAt(const Json& j, std::initializer_list<std::string_view> path, int64_t def) {
  const Json* v = Find(j, path);
  if (v == nullptr || !v->is_number_integer()) return def;
  return v->get<int64_t>();
}

bool IsIntegerAt(const Json& j, std::initializer_list<std::string_view> path) {
  const Json* v = Find(j, path);
  return v != nullptr && v->is_number_integer();
}

}  // namespace cairn::kube
