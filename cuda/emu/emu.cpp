// cuda/emu/emu.cpp — the scheduler and the CUDA runtime subset of normkit's test-only SIMT
// emulator (see nk_emu.hpp for what kernels see, cuda/NOTES.md for what is checked).
//
// Model: a grid runs block by block on the calling OS thread (one launch at a time,
// process-wide). Each thread of a block is a fiber with its own stack; a fiber runs until it
// reaches a collective (__syncthreads, a warp intrinsic) or returns, and the scheduler then
// picks the next runnable thread by the policy of NK_EMU_SCHEDULE. A collective completes
// only when every thread it names has arrived at the same call site (and, for warp
// collectives, with the same mask); anything else is an error naming file:line, reported as
// the launch's error (cudaErrorLaunchFailure, with the message as cudaGetErrorString) and on
// stderr. Settings (environment, read once):
//   NK_EMU_SCHEDULE   lowest (default) | highest | roundrobin | random
//   NK_EMU_SEED       seed of `random` (default 1); random also shuffles the block order
//   NK_EMU_SMS        SMs reported by cudaDevAttrMultiProcessorCount (default 3)
//   NK_EMU_BLOCKS_PER_SM  occupancy reported per SM (default 2; never more than fits in
//                     2048 threads)
//   NK_EMU_DEVICES    device count (default 1)
//   NK_EMU_DRIVER     the CUDA version the emulated driver supports, as cudaDriverGetVersion
//                     reports it (default: the runtime's, CUDART_VERSION); 0 = no driver
//                     installed. Below the runtime's, the device queries fail with
//                     cudaErrorInsufficientDriver, as a real old driver makes them — so the
//                     old-driver and no-driver messages of cuda_status() are tested
//   NK_EMU_ABORT=1    abort() at the first rule violation (for a debugger)
#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "nk_emu.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define NK_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NK_EMU_ASAN 1
#endif
#endif
#if defined(NK_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace nk_emu {

Coords g_coords{};

namespace {

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------
enum class Policy { Lowest, Highest, RoundRobin, Random };

struct Settings {
  Policy policy = Policy::Lowest;
  uint64_t seed = 1;
  int sms = 3;
  int blocks_per_sm = 2;
  int devices = 1;
  int driver = CUDART_VERSION;
  bool abort_on_error = false;
};

long env_long(const char* name, long fallback, long lo, long hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == 0) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != 0 || x < lo || x > hi) {
    std::fprintf(stderr, "nk_emu: %s=%s: expected an integer in [%ld, %ld]\n", name, v, lo, hi);
    std::abort();
  }
  return x;
}

Settings& mutable_settings() {
  static Settings s = [] {
    Settings r;
    if (const char* p = std::getenv("NK_EMU_SCHEDULE"); p != nullptr && *p != 0) {
      const std::string v = p;
      if (v == "lowest") r.policy = Policy::Lowest;
      else if (v == "highest") r.policy = Policy::Highest;
      else if (v == "roundrobin") r.policy = Policy::RoundRobin;
      else if (v == "random") r.policy = Policy::Random;
      else {
        std::fprintf(stderr,
                     "nk_emu: NK_EMU_SCHEDULE=%s: expected lowest, highest, roundrobin or random\n",
                     p);
        std::abort();
      }
    }
    r.seed = uint64_t(env_long("NK_EMU_SEED", 1, 0, 0x7fffffffL));
    r.sms = int(env_long("NK_EMU_SMS", 3, 1, 1024));
    r.blocks_per_sm = int(env_long("NK_EMU_BLOCKS_PER_SM", 2, 1, 32));
    r.devices = int(env_long("NK_EMU_DEVICES", 1, 0, 16));
    r.driver = int(env_long("NK_EMU_DRIVER", CUDART_VERSION, 0, 99999));
    r.abort_on_error = env_long("NK_EMU_ABORT", 0, 0, 1) == 1;
    return r;
  }();
  return s;
}
const Settings& settings() { return mutable_settings(); }

const char* policy_name(Policy p) {
  switch (p) {
    case Policy::Lowest: return "lowest";
    case Policy::Highest: return "highest";
    case Policy::RoundRobin: return "roundrobin";
    case Policy::Random: return "random";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------
// Errors: the last one, as cudaGetLastError returns it and cudaGetErrorString describes it.
// ---------------------------------------------------------------------------------------
thread_local cudaError_t t_last_error = cudaSuccess;
thread_local cudaError_t t_message_error = cudaSuccess;  // the code t_last_message describes
thread_local std::string t_last_message;

cudaError_t set_error(cudaError_t e, const std::string& msg) {
  t_last_error = e;
  t_message_error = e;
  t_last_message = msg;
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::fflush(stderr);
  return e;
}

// A formatted message in a fixed buffer: messages are built on a fiber's stack, and a fiber
// that breaks a rule is abandoned mid-call (never resumed), so they must not own heap memory.
struct Msg {
  char text[1536];
  const char* c_str() const { return text; }
  operator std::string() const { return text; }
};

Msg format(const char* fmt, ...) {
  Msg m;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(m.text, sizeof m.text, fmt, ap);
  va_end(ap);
  return m;
}

// ---------------------------------------------------------------------------------------
// Fibers
// ---------------------------------------------------------------------------------------
// A stack: mmap'd with an inaccessible guard page below it, so an overflow faults.
struct Stack {
  char* base = nullptr;  // lowest usable byte
  size_t size = 0;
};

#if defined(NK_EMU_ASAN)
constexpr size_t kStackBytes = 512 * 1024;  // ASan's redzones make frames several times larger
#else
constexpr size_t kStackBytes = 128 * 1024;
#endif

Stack new_stack() {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "nk_emu: mmap of a fiber stack failed\n");
    std::abort();
  }
  mprotect(p, page, PROT_NONE);
  return Stack{static_cast<char*>(p) + page, kStackBytes};
}

#if defined(__x86_64__)
// nk_emu_switch(&from_sp, to_sp): saves the callee-saved registers, MXCSR and the x87
// control word on the current stack, stores the stack pointer in *from_sp, and resumes the
// context whose stack pointer is to_sp. A new context starts in nk_emu_start, which calls
// r13(r12) and never returns.
extern "C" void nk_emu_switch(void** from_sp, void* to_sp);
extern "C" void nk_emu_start();
asm(R"(
.text
.globl nk_emu_switch
.hidden nk_emu_switch
.type nk_emu_switch,@function
nk_emu_switch:
  .cfi_startproc
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .cfi_endproc
.size nk_emu_switch,.-nk_emu_switch
.globl nk_emu_start
.hidden nk_emu_start
.type nk_emu_start,@function
nk_emu_start:
  .cfi_startproc
  .cfi_undefined rip
  movq %r12, %rdi
  callq *%r13
  ud2
  .cfi_endproc
.size nk_emu_start,.-nk_emu_start
.section .note.GNU-stack,"",@progbits
.text
)");

struct Context {
  void* sp = nullptr;
};

// Not instrumented: the words written at the top of a reused stack may lie in redzones that
// the previous fiber's never-returning frames left poisoned.
__attribute__((no_sanitize_address)) void make_context(Context& c, const Stack& s,
                                                        void (*fn)(void*), void* arg) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(s.base) + s.size) & ~uintptr_t(15);
  auto* w = reinterpret_cast<uint64_t*>(top);
  // From the top down: return address (nk_emu_start), rbp, rbx, r12, r13, r14, r15, and the
  // MXCSR / x87 control-word slot; 8 words, so that after nk_emu_switch's `ret` the stack
  // pointer is 16-byte aligned, as nk_emu_start's call needs.
  uint32_t mxcsr = 0;
  uint16_t fpcw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpcw));
  w[-1] = reinterpret_cast<uint64_t>(&nk_emu_start);
  w[-2] = 0;                                  // rbp
  w[-3] = 0;                                  // rbx
  w[-4] = reinterpret_cast<uint64_t>(arg);   // r12
  w[-5] = reinterpret_cast<uint64_t>(fn);    // r13
  w[-6] = 0;                                  // r14
  w[-7] = 0;                                  // r15
  w[-8] = uint64_t(mxcsr) | (uint64_t(fpcw) << 32);
  c.sp = &w[-8];
}

inline void switch_context(Context& from, Context& to) { nk_emu_switch(&from.sp, to.sp); }
#else
// Portable fallback (slower: swapcontext saves the signal mask with a system call).
struct Context {
  ucontext_t uc{};
};
void make_context(Context& c, const Stack& s, void (*fn)(void*), void* arg) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = s.base;
  c.uc.uc_stack.ss_size = s.size;
  c.uc.uc_link = nullptr;
  // makecontext passes int arguments: split the pointer in two halves.
  const uintptr_t a = reinterpret_cast<uintptr_t>(arg), f = reinterpret_cast<uintptr_t>(fn);
  makecontext(&c.uc, reinterpret_cast<void (*)()>(+[](unsigned fl, unsigned fh, unsigned al,
                                                       unsigned ah) {
                reinterpret_cast<void (*)(void*)>((uintptr_t(fh) << 32) | fl)(
                    reinterpret_cast<void*>((uintptr_t(ah) << 32) | al));
              }),
              4, unsigned(f), unsigned(f >> 32), unsigned(a), unsigned(a >> 32));
}
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

// ---------------------------------------------------------------------------------------
// Threads and blocks
// ---------------------------------------------------------------------------------------
enum class State { Runnable, Barrier, Warp, Exited };

struct Thread {
  Context ctx;
  Stack stack;
  uint3 tid{};
  int linear = 0;
  State state = State::Runnable;
  const char* file = nullptr;  // where it waits
  int line = 0;
  // Warp collective in progress
  WarpOp op = WarpOp::Sync;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int param = 0, width = 32;
#if defined(NK_EMU_ASAN)
  void* fake_stack = nullptr;
#endif
};

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::Sync: return "__syncwarp";
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::All: return "__all_sync";
  }
  return "?";
}

struct Block {
  std::vector<Thread> threads;  // linear index = x + y·bx + z·bx·by
  std::vector<uint64_t> runnable;  // bit set over threads
  int nthreads = 0, exited = 0, at_barrier = 0;
  const char* barrier_file = nullptr;
  int barrier_line = 0;
  int current = -1;     // running thread
  int last_run = -1;    // for round robin
  Context sched;        // the scheduler's context
  ThreadBody body = nullptr;
  void* body_ctx = nullptr;
  bool failed = false;
  std::string error;
  uint3 block_idx{};
  std::mt19937_64* rng = nullptr;
#if defined(NK_EMU_ASAN)
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
#endif
};

Block* g_block = nullptr;  // the block being run (one at a time)
bool g_stacks_dirty = false;  // a block was abandoned: its fibers' stacks hold stale frames
std::vector<Stack> g_stack_pool;

void set_runnable(Block& b, int i, bool on) {
  uint64_t& w = b.runnable[size_t(i) / 64];
  const uint64_t bit = uint64_t(1) << (i % 64);
  w = on ? (w | bit) : (w & ~bit);
}

Msg where(const Block& b, const Thread& t) {
  return format("block (%u,%u,%u) thread (%u,%u,%u)", b.block_idx.x, b.block_idx.y,
                b.block_idx.z, t.tid.x, t.tid.y, t.tid.z);
}

// ---- switching between the scheduler and the threads ----------------------------------
void enter_thread(Block& b, Thread& t) {
  b.current = t.linear;
  g_coords.thread_idx = t.tid;
#if defined(NK_EMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, t.stack.base, t.stack.size);
  switch_context(b.sched, t.ctx);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  switch_context(b.sched, t.ctx);
#endif
  b.current = -1;
}

// From a thread back to the scheduler; returns when the scheduler resumes this thread.
void leave_thread(Block& b, Thread& t, bool forever) {
#if defined(NK_EMU_ASAN)
  __sanitizer_start_switch_fiber(forever ? nullptr : &t.fake_stack, b.sched_stack_bottom,
                                 b.sched_stack_size);
  switch_context(t.ctx, b.sched);
  __sanitizer_finish_switch_fiber(t.fake_stack, nullptr, nullptr);
#else
  (void)forever;
  switch_context(t.ctx, b.sched);
#endif
}

// Records a rule violation of the running thread and never returns to it.
[[noreturn]] void fail_in_thread(Block& b, Thread& t, const Msg& msg) {
  b.failed = true;
  b.error = msg.c_str();  // owned by the block, which outlives the abandoned fiber
  if (settings().abort_on_error) {
    std::fprintf(stderr, "%s\n", msg.c_str());
    std::abort();
  }
  t.state = State::Exited;  // abandoned: the scheduler stops the block
  leave_thread(b, t, true);
  std::abort();  // unreachable: a failed block is never resumed
}

// A lane of t's warp that waits in a warp collective whose mask names t, or null.
const Thread* collective_naming(const Block& b, const Thread& t) {
  for (int lane = 0; lane < 32; ++lane) {
    const int j = (t.linear / 32) * 32 + lane;
    if (j >= b.nthreads) break;
    const Thread& o = b.threads[size_t(j)];
    if (o.state == State::Warp && ((o.mask >> (t.linear % 32)) & 1)) return &o;
  }
  return nullptr;
}

void thread_main(void* arg) {
  Block& b = *g_block;
  Thread& t = *static_cast<Thread*>(arg);
#if defined(NK_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &b.sched_stack_bottom, &b.sched_stack_size);
#endif
  b.body(b.body_ctx);
  // Returned from the kernel: exited. A barrier that others wait at can never complete, nor
  // can a warp collective of another lane that names this one.
  t.state = State::Exited;
  ++b.exited;
  if (const Thread* o = collective_naming(b, t)) {
    fail_in_thread(b, t,
                   format("nk_emu: %s:%d: %s(mask 0x%08x): lane %d (%s) of the mask exited "
                          "(normkit's rule, stricter than sm_70+: every lane a mask names "
                          "takes part)",
                          o->file, o->line, op_name(o->op), o->mask, t.linear % 32,
                          where(b, t).c_str()));
  }
  if (b.at_barrier > 0) {
    fail_in_thread(b, t,
                   format("nk_emu: %s:%d: __syncthreads(): %s exited while other threads of "
                          "the block wait there (normkit's rule, stricter than sm_70+: every "
                          "thread of the block reaches every barrier)",
                          b.barrier_file, b.barrier_line, where(b, t).c_str()));
  }
  leave_thread(b, t, true);
  std::abort();  // unreachable
}

Thread& self() { return g_block->threads[size_t(g_block->current)]; }

// Two call sites are the same file:line (the same __FILE__ literal is usually one pointer).
inline bool same_site(const char* f1, int l1, const char* f2, int l2) {
  return l1 == l2 && (f1 == f2 || std::strcmp(f1, f2) == 0);
}

void require_in_kernel(const char* what, const char* file, int line) {
  if (g_block == nullptr || g_block->current < 0) {
    std::fprintf(stderr, "nk_emu: %s:%d: %s called outside a kernel\n", file, line, what);
    std::abort();
  }
}

// ---- scheduling ------------------------------------------------------------------------
int pick(Block& b) {
  const size_t words = b.runnable.size();
  const Policy p = settings().policy;
  if (p == Policy::Lowest || (p == Policy::RoundRobin && b.last_run < 0)) {
    for (size_t w = 0; w < words; ++w)
      if (b.runnable[w]) return int(w * 64 + size_t(__builtin_ctzll(b.runnable[w])));
    return -1;
  }
  if (p == Policy::Highest) {
    for (size_t w = words; w-- > 0;)
      if (b.runnable[w]) return int(w * 64 + 63 - size_t(__builtin_clzll(b.runnable[w])));
    return -1;
  }
  if (p == Policy::RoundRobin) {
    // The next runnable thread after the last one run, cyclically.
    const int n = b.nthreads;
    for (int k = 1; k <= n; ++k) {
      const int i = (b.last_run + k) % n;
      if ((b.runnable[size_t(i) / 64] >> (i % 64)) & 1) return i;
    }
    return -1;
  }
  int count = 0;
  for (uint64_t w : b.runnable) count += __builtin_popcountll(w);
  if (count == 0) return -1;
  int k = int((*b.rng)() % uint64_t(count));
  for (size_t w = 0; w < words; ++w) {
    uint64_t bits = b.runnable[w];
    const int c = __builtin_popcountll(bits);
    if (k >= c) {
      k -= c;
      continue;
    }
    while (k-- > 0) bits &= bits - 1;
    return int(w * 64 + size_t(__builtin_ctzll(bits)));
  }
  return -1;
}

// Why no thread can run although some have not exited.
std::string diagnose_deadlock(const Block& b) {
  for (const Thread& t : b.threads) {
    if (t.state != State::Warp) continue;
    const int warp = t.linear / 32;
    std::string missing;
    for (int lane = 0; lane < 32; ++lane) {
      if (!((t.mask >> lane) & 1)) continue;
      const Thread& o = b.threads[size_t(warp * 32 + lane)];
      if (o.state == State::Warp) continue;
      missing += format(" lane %d %s;", lane,
                        o.state == State::Barrier
                            ? format("waits at __syncthreads() at %s:%d", o.file, o.line).c_str()
                            : "has exited")
                     .c_str();
    }
    return format("nk_emu: %s:%d: %s(mask 0x%08x) can never complete (%s):%s", t.file, t.line,
                  op_name(t.op), t.mask, where(b, t).c_str(), missing.c_str());
  }
  return format("nk_emu: block (%u,%u,%u): no thread can run (internal error)", b.block_idx.x,
                b.block_idx.y, b.block_idx.z);
}

// ---- shared memory poison --------------------------------------------------------------
}  // namespace
}  // namespace nk_emu

// Bounds of the section that holds every __shared__ variable (nk_emu.hpp); weak so that a
// program without any __shared__ variable still links.
extern "C" char __start_nk_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_nk_emu_shared[] __attribute__((weak, visibility("hidden")));

namespace nk_emu {
namespace {

// The byte pattern of uninitialized device and shared memory: 0x7fff in every 16-bit word is
// a NaN in float16, bfloat16, float32 (0x7fff7fff) and float64 (0x7fff7fff7fff7fff), and a
// large positive integer in every integer type.
void poison(void* p, size_t n) {
  auto* c = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) c[i] = (reinterpret_cast<uintptr_t>(c + i) & 1) ? 0x7f : 0xff;
}

void poison_shared() {
  char* lo = __start_nk_emu_shared;
  char* hi = __stop_nk_emu_shared;
  if (lo == nullptr || hi <= lo) return;
#if defined(NK_EMU_ASAN)
  // ASan's redzones between the shared arrays are part of the section: skip them.
  for (char* p = lo; p < hi; ++p)
    if (!__asan_address_is_poisoned(p)) poison(p, 1);
#else
  poison(lo, size_t(hi - lo));
#endif
}

std::mutex g_launch_mutex;

cudaError_t run_block(Block& b) {
  poison_shared();
  const int n = b.nthreads;
  const dim3 bd = g_coords.block_dim;
  b.exited = b.at_barrier = 0;
  b.barrier_file = nullptr;
  b.current = b.last_run = -1;
  std::fill(b.runnable.begin(), b.runnable.end(), 0);
  const bool dirty = g_stacks_dirty;
  for (int i = 0; i < n; ++i) {
    Thread& t = b.threads[size_t(i)];
    t.linear = i;
    t.tid = uint3{unsigned(i) % bd.x, (unsigned(i) / bd.x) % bd.y, unsigned(i) / (bd.x * bd.y)};
    t.state = State::Runnable;
#if defined(NK_EMU_ASAN)
    // A stack abandoned mid-kernel (a failed block) keeps the redzones of frames that never
    // returned; clear them before reuse. (A thread that returned from the kernel leaves only
    // thread_main's own frames, which the next thread rebuilds at the same addresses.)
    if (dirty) __asan_unpoison_memory_region(t.stack.base, t.stack.size);
    t.fake_stack = nullptr;
#endif
    make_context(t.ctx, t.stack, &thread_main, &t);
    set_runnable(b, i, true);
  }
  // Only the stacks in use were cleaned; the pool's others are cleaned when next used.
  if (dirty && size_t(n) >= g_stack_pool.size()) g_stacks_dirty = false;
  for (;;) {
    const int i = pick(b);
    if (i < 0) {
      if (b.exited == n) return cudaSuccess;
      b.failed = true;
      b.error = diagnose_deadlock(b);
    } else {
      b.last_run = i;
      Thread& t = b.threads[size_t(i)];
      enter_thread(b, t);
      if (t.state != State::Runnable) set_runnable(b, i, false);
    }
    if (b.failed) {
      g_stacks_dirty = true;
      return set_error(cudaErrorLaunchFailure, b.error);
    }
  }
}

}  // namespace

const char* set_schedule_for_testing(const char* policy) {
  Settings& s = mutable_settings();
  const char* previous = policy_name(s.policy);
  const std::string v = policy;
  if (v == "lowest") s.policy = Policy::Lowest;
  else if (v == "highest") s.policy = Policy::Highest;
  else if (v == "roundrobin") s.policy = Policy::RoundRobin;
  else if (v == "random") s.policy = Policy::Random;
  else {
    std::fprintf(stderr, "nk_emu: set_schedule_for_testing(%s): unknown policy\n", policy);
    std::abort();
  }
  return previous;
}

// ---------------------------------------------------------------------------------------
// Collectives (called from the running thread)
// ---------------------------------------------------------------------------------------
void syncthreads(const char* file, int line) {
  require_in_kernel("__syncthreads()", file, line);
  Block& b = *g_block;
  Thread& t = self();
  if (b.exited > 0) {
    fail_in_thread(b, t,
                   format("nk_emu: %s:%d: __syncthreads() reached by %s after other threads of "
                          "the block exited (%d of %d) (normkit's rule, stricter than sm_70+: "
                          "every thread of the block reaches every barrier)",
                          file, line, where(b, t).c_str(), b.exited, b.nthreads));
  }
  if (b.at_barrier > 0 && !same_site(b.barrier_file, b.barrier_line, file, line)) {
    fail_in_thread(b, t,
                   format("nk_emu: %s:%d: __syncthreads() reached by %s while other threads of "
                          "the block wait at the __syncthreads() at %s:%d",
                          file, line, where(b, t).c_str(), b.barrier_file, b.barrier_line));
  }
  if (const Thread* o = collective_naming(b, t)) {
    // A lane of this warp waits in a warp collective naming this thread: deadlock.
    fail_in_thread(b, t,
                   format("nk_emu: %s:%d: %s(mask 0x%08x) can never complete: lane %d (%s) "
                          "went on to __syncthreads() at %s:%d",
                          o->file, o->line, op_name(o->op), o->mask, t.linear % 32,
                          where(b, t).c_str(), file, line));
  }
  t.state = State::Barrier;
  t.file = file;
  t.line = line;
  b.barrier_file = file;
  b.barrier_line = line;
  if (++b.at_barrier == b.nthreads) {
    // Everyone is here: release the block.
    b.at_barrier = 0;
    b.barrier_file = nullptr;
    for (Thread& o : b.threads) {
      o.state = State::Runnable;
      set_runnable(b, o.linear, true);
    }
    t.state = State::Runnable;
  }
  // Back to the scheduler also when this thread released the barrier: which thread goes on
  // first is the policy's choice, not the last arriver's privilege.
  leave_thread(b, t, false);
}

uint64_t warp_collective(WarpOp op, const char* file, int line, unsigned mask, uint64_t value,
                         int param, int width) {
  require_in_kernel(op_name(op), file, line);
  Block& b = *g_block;
  Thread& t = self();
  const int lane = t.linear % 32, warp0 = (t.linear / 32) * 32;
  if (!((mask >> lane) & 1)) {
    fail_in_thread(b, t, format("nk_emu: %s:%d: %s(mask 0x%08x) called by lane %d (%s), which is "
                                "not in the mask",
                                file, line, op_name(op), mask, lane, where(b, t).c_str()));
  }
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    fail_in_thread(b, t, format("nk_emu: %s:%d: %s: width %d is not a power of 2 in [1, 32]",
                                file, line, op_name(op), width));
  }
  bool all_here = true;
  for (int l = 0; l < 32; ++l) {
    if (!((mask >> l) & 1) || l == lane) continue;
    const int j = warp0 + l;
    if (j >= b.nthreads) {
      fail_in_thread(b, t, format("nk_emu: %s:%d: %s(mask 0x%08x) by %s names lane %d, which "
                                  "does not exist (the block has %d threads)",
                                  file, line, op_name(op), mask, where(b, t).c_str(), l,
                                  b.nthreads));
    }
    const Thread& o = b.threads[size_t(j)];
    if (o.state == State::Exited) {
      fail_in_thread(b, t, format("nk_emu: %s:%d: %s(mask 0x%08x) by %s: lane %d of the mask "
                                  "has exited (normkit's rule, stricter than sm_70+: every lane "
                                  "a mask names takes part)",
                                  file, line, op_name(op), mask, where(b, t).c_str(), l));
    }
    if (o.state == State::Barrier) {
      fail_in_thread(b, t, format("nk_emu: %s:%d: %s(mask 0x%08x) by %s can never complete: "
                                  "lane %d waits at __syncthreads() at %s:%d",
                                  file, line, op_name(op), mask, where(b, t).c_str(), l, o.file,
                                  o.line));
    }
    if (o.state == State::Warp) {
      const bool same = same_site(o.file, o.line, file, line) && o.mask == mask && o.op == op;
      if (!same && !((o.mask >> lane) & 1)) {
        // Lane l waits in a collective of its own that does not name this lane (e.g. the
        // other half-warp's): it completes without us, and l comes here after.
        all_here = false;
        continue;
      }
      if (!same) {
        fail_in_thread(b, t, format("nk_emu: %s:%d: %s(mask 0x%08x) by lane %d (%s) while lane "
                                    "%d waits at %s(mask 0x%08x) at %s:%d: the lanes of one "
                                    "mask must meet at the same call site with the same mask",
                                    file, line, op_name(op), mask, lane, where(b, t).c_str(), l,
                                    op_name(o.op), o.mask, o.file, o.line));
      }
    } else {
      all_here = false;
    }
  }
  t.op = op;
  t.mask = mask;
  t.value = value;
  t.param = param;
  t.width = width;
  t.file = file;
  t.line = line;
  t.state = State::Warp;
  if (!all_here) {
    leave_thread(b, t, false);
    return t.result;
  }
  // Every lane of the mask is here (this one last). Releasing happens below; then, as at a
  // barrier, the scheduler picks who goes on.
  uint64_t ballot = 0;
  for (int l = 0; l < 32; ++l)
    if ((mask >> l) & 1) ballot |= uint64_t(b.threads[size_t(warp0 + l)].value != 0) << l;
  for (int l = 0; l < 32; ++l) {
    if (!((mask >> l) & 1)) continue;
    Thread& o = b.threads[size_t(warp0 + l)];
    // Each lane's own operands (srcLane / delta / laneMask and width may differ per lane),
    // with PTX shfl.sync's rules: the operand's low 5 bits; a segment of `width` lanes
    // starting at `seg`; up may not go below the segment, down and xor not above it (xor
    // may reach an earlier segment); out of range reads the lane's own value.
    const int w = o.width;
    const int seg = l & ~(w - 1);
    const int max_lane = seg + w - 1;
    const int bval = int(unsigned(o.param) & 31u);
    int src = l;
    switch (op) {
      case WarpOp::ShflIdx: src = seg + (bval & (w - 1)); break;
      case WarpOp::ShflUp: src = (l - bval >= seg) ? l - bval : l; break;
      case WarpOp::ShflDown: src = (l + bval <= max_lane) ? l + bval : l; break;
      case WarpOp::ShflXor: {
        const int x = l ^ bval;
        src = (x <= max_lane) ? x : l;
        break;
      }
      default: break;
    }
    if (src < 0 || src > 31) std::abort();  // unreachable: every rule stays in [0, 31]
    if (!((mask >> src) & 1)) {
      fail_in_thread(b, t, format("nk_emu: %s:%d: %s(mask 0x%08x): lane %d reads lane %d, which "
                                  "is not in the mask (undefined on a GPU)",
                                  file, line, op_name(op), mask, l, src));
    }
    switch (op) {
      case WarpOp::Sync: o.result = 0; break;
      case WarpOp::Ballot: o.result = ballot; break;
      case WarpOp::Any: o.result = ballot != 0; break;
      case WarpOp::All: o.result = ballot == (uint64_t(mask) & 0xffffffffu); break;
      default: o.result = b.threads[size_t(warp0 + src)].value; break;
    }
  }
  for (int l = 0; l < 32; ++l) {
    if (!((mask >> l) & 1)) continue;
    Thread& o = b.threads[size_t(warp0 + l)];
    o.state = State::Runnable;
    set_runnable(b, o.linear, true);
  }
  leave_thread(b, t, false);
  return t.result;
}

// ---------------------------------------------------------------------------------------
// Launch
// ---------------------------------------------------------------------------------------
cudaError_t run_grid(const char* kernel_name, dim3 grid, dim3 block, size_t dynamic_smem,
                     cudaStream_t stream, ThreadBody body, void* ctx) {
  (void)stream;  // streams execute eagerly, in call order
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    return set_error(cudaErrorInvalidConfiguration,
                     format("nk_emu: launch of %s: invalid configuration grid (%u,%u,%u) block "
                            "(%u,%u,%u) (a GPU allows ≤ 1024 threads per block, block.z ≤ 64, "
                            "grid.x < 2^31, grid.y and grid.z ≤ 65535)",
                            kernel_name, grid.x, grid.y, grid.z, block.x, block.y, block.z));
  }
  if (dynamic_smem > 48 * 1024) {
    return set_error(cudaErrorInvalidValue,
                     format("nk_emu: launch of %s: %zu bytes of dynamic shared memory (more "
                            "than 48 KiB needs cudaFuncSetAttribute, which is not emulated)",
                            kernel_name, dynamic_smem));
  }
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  static std::mt19937_64 rng(settings().seed);
  Block b;
  b.nthreads = int(threads);
  b.threads.resize(threads);
  b.runnable.assign((threads + 63) / 64, 0);
  b.body = body;
  b.body_ctx = ctx;
  b.rng = &rng;
  while (g_stack_pool.size() < threads) g_stack_pool.push_back(new_stack());
  for (size_t i = 0; i < threads; ++i) b.threads[i].stack = g_stack_pool[i];

  std::vector<uint3> order;
  order.reserve(size_t(grid.x) * grid.y * grid.z);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) order.push_back(uint3{x, y, z});
  if (settings().policy == Policy::Highest) std::reverse(order.begin(), order.end());
  if (settings().policy == Policy::Random) std::shuffle(order.begin(), order.end(), rng);

  const Coords saved = g_coords;
  g_coords.block_dim = block;
  g_coords.grid_dim = grid;
  g_block = &b;
  cudaError_t err = cudaSuccess;
  for (const uint3& bi : order) {
    b.block_idx = bi;
    g_coords.block_idx = bi;
    err = run_block(b);
    if (err != cudaSuccess) {
      t_last_message = format("%s (launch of %s)", t_last_message.c_str(), kernel_name).c_str();
      break;
    }
  }
  g_block = nullptr;
  g_coords = saved;
  return err;
}

namespace {

// ---------------------------------------------------------------------------------------
// Memory: host memory, 256-byte aligned (as cudaMalloc), poisoned, visible to ASan.
// ---------------------------------------------------------------------------------------
std::mutex g_mem_mutex;
std::map<uintptr_t, size_t>& allocations() {
  static std::map<uintptr_t, size_t> m;
  return m;
}

thread_local int g_device = 0;  // the current device is per host thread, as in CUDA

cudaError_t check_device(int d) {
  if (d < 0 || d >= settings().devices)
    return set_error(cudaErrorInvalidDevice,
                     format("nk_emu: device %d does not exist (%d emulated devices)", d,
                            settings().devices));
  return cudaSuccess;
}

cudaError_t not_emulated(const char* what) {
  return set_error(cudaErrorNotSupported, format("nk_emu: %s is not emulated", what));
}

}  // namespace
}  // namespace nk_emu

using namespace nk_emu;

// ---------------------------------------------------------------------------------------
// The runtime API subset (C linkage, as cuda_runtime_api.h declares it). A function the
// backend calls that is missing here is a link error, never a silent success.
// ---------------------------------------------------------------------------------------
extern "C" {

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return t_last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    default: return "cudaError (emulated)";
  }
}

const char* cudaGetErrorString(cudaError_t e) {
  // The emulator's own description of the last failure, file:line included.
  if (e != cudaSuccess && e == t_message_error && !t_last_message.empty())
    return t_last_message.c_str();
  return e == cudaSuccess ? "no error" : cudaGetErrorName(e);
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (settings().driver < CUDART_VERSION) {  // also 0: no driver at all
    *count = 0;
    return set_error(cudaErrorInsufficientDriver,
                     "nk_emu: the emulated driver (NK_EMU_DRIVER) is older than the runtime");
  }
  *count = settings().devices;
  if (settings().devices == 0) return set_error(cudaErrorNoDevice, "nk_emu: no emulated device");
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  *v = settings().driver;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = g_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (const cudaError_t e = check_device(device)) return e;
  g_device = device;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
  if (const cudaError_t e = check_device(device)) return e;
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = settings().sms; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = 2048; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; return cudaSuccess;
    case cudaDevAttrMaxBlockDimX: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxBlockDimY: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxBlockDimZ: *value = 64; return cudaSuccess;
    case cudaDevAttrMaxGridDimX: *value = 0x7fffffff; return cudaSuccess;
    case cudaDevAttrMaxGridDimY: *value = 65535; return cudaSuccess;
    case cudaDevAttrMaxGridDimZ: *value = 65535; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    default:
      return not_emulated(format("cudaDeviceGetAttribute(attribute %d)", int(attr)).c_str());
  }
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* num_blocks, const void* func,
                                                          int block_size,
                                                          size_t dynamic_smem) {
  if (func == nullptr || block_size < 1 || block_size > 1024)
    return set_error(cudaErrorInvalidValue,
                     format("nk_emu: cudaOccupancyMaxActiveBlocksPerMultiprocessor: block size "
                            "%d (expected 1..1024, and a kernel)",
                            block_size));
  (void)dynamic_smem;
  const int fit = std::max(1, 2048 / block_size);
  *num_blocks = std::min(settings().blocks_per_sm, fit);
  return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* num_blocks,
                                                                   const void* func,
                                                                   int block_size,
                                                                   size_t dynamic_smem,
                                                                   unsigned int flags) {
  if (flags != cudaOccupancyDefault && flags != cudaOccupancyDisableCachingOverride)
    return set_error(cudaErrorInvalidValue,
                     format("nk_emu: cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags: "
                            "flags %u",
                            flags));
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(num_blocks, func, block_size,
                                                       dynamic_smem);
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (bytes > (size_t(1) << 48))
    return set_error(cudaErrorMemoryAllocation,
                     format("nk_emu: cudaMalloc of %zu bytes: more than any device has", bytes));
  const size_t rounded = (bytes + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (p == nullptr)
    return set_error(cudaErrorMemoryAllocation,
                     format("nk_emu: cudaMalloc of %zu bytes failed", bytes));
  // Only the bytes asked for: ASan reports an access past them (the rest of the rounded block
  // is inside the allocation, as cudaMalloc's granularity would make it on a GPU, but reading
  // it is a bug all the same). aligned_alloc has no such size: poison the tail by hand.
  poison(p, rounded);
#if defined(NK_EMU_ASAN)
  if (rounded > bytes) __asan_poison_memory_region(static_cast<char*>(p) + bytes, rounded - bytes);
#endif
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  allocations()[reinterpret_cast<uintptr_t>(p)] = bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    auto it = allocations().find(reinterpret_cast<uintptr_t>(ptr));
    if (it == allocations().end())
      return set_error(cudaErrorInvalidDevicePointer,
                       format("nk_emu: cudaFree(%p): not a pointer cudaMalloc returned", ptr));
    bytes = it->second;
    allocations().erase(it);
  }
#if defined(NK_EMU_ASAN)
  const size_t rounded = (bytes + 255) / 256 * 256;
  __asan_unpoison_memory_region(ptr, rounded);
#else
  (void)bytes;
#endif
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t) { return cudaMalloc(ptr, bytes); }
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t) { return cudaFree(ptr); }

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (bytes > 0) std::memset(ptr, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t) {
  return cudaMemset(ptr, value, bytes);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind kind) {
  if (int(kind) < 0 || int(kind) > 4)
    return set_error(cudaErrorInvalidValue, format("nk_emu: cudaMemcpy: kind %d", int(kind)));
  if (bytes > 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}

}  // extern "C"
