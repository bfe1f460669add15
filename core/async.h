// RunAsync: std::async(std::launch::async, ...) for request handlers.
//
// std::async throws std::system_error when no thread can be created
// (EAGAIN under a thread or pid limit); thrown from a gRPC handler that
// ends in std::terminate. RunAsync catches it and returns a deferred future
// instead: the work then runs on the thread that calls get(), later and
// serially, but correctly. Functions and arguments are copied, as
// std::async copies them.
#pragma once

#include <future>
#include <system_error>
#include <type_traits>

namespace cairn {

template <typename F, typename... Args>
[[nodiscard]] std::future<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>> RunAsync(
    const F& fn, const Args&... args) {
  try {
    return std::async(std::launch::async, fn, args...);
  } catch (const std::system_error&) {
    return std::async(std::launch::deferred, fn, args...);
  }
}

}  // namespace cairn
