// Process-wide settings the mains apply (libraries never do: they would
// change the behaviour of every other component in the process).
#pragma once

namespace cairn {

// Keeps 4 MiB chunk buffers on the heap instead of a fresh mmap each (a
// page fault and page clear per 4 KiB: over 10 % of a mounter's CPU and half
// of a get's in profiles), and lets the heap keep freed memory. Returns
// false if glibc refused a setting (it caps the mmap threshold at 32 MiB on
// 64-bit; larger values are silently ignored).
bool TuneAllocatorForChunks();

// Blocks SIGINT and SIGTERM in the calling thread, before any other thread
// starts (threads inherit the mask), so only WaitForTerminationSignal
// receives them; ignores SIGPIPE. For servers that shut down gracefully.
void BlockTerminationSignals();
// Waits for SIGINT or SIGTERM (after BlockTerminationSignals); returns it.
int WaitForTerminationSignal();

}  // namespace cairn
