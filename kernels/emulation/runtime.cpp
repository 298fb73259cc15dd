// runtime.cpp -- the scheduler behind cuda_emu.h: launches, blocks, fibers and barriers.
//
// A launch runs its blocks one after another.  Each CUDA thread of a block is a fiber with
// its own stack; one OS thread switches between them.  A fiber runs until it reaches a
// barrier (__syncthreads, a warp shuffle, __syncwarp) or returns; the scheduler resumes the
// waiting fibers when the last one a barrier waits for arrives, and reports a deadlock when
// no fiber can go on although some have not returned (where a GPU would hang).
//
// The C functions at the bottom are what the Python launcher (kernels/emulation/__init__.py)
// calls through ctypes.
#include "cuda_emu.h"
#include "registry.h"

#include <algorithm>
#include <csetjmp>
#include <cstdarg>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define MINITL_EMU_ASAN 1
#else
#define MINITL_EMU_ASAN 0
#endif

// The __shared__ variables of the .cu file, placed in one section by cuda_emu.h.  Weak: a
// file without __shared__ variables has no such section.
extern "C" __attribute__((weak, visibility("hidden"))) char __start_minitl_emu_shared[];
extern "C" __attribute__((weak, visibility("hidden"))) char __stop_minitl_emu_shared[];

namespace minitl_emu {

extern const KernelEntry kernels[];   // defined by the generated translation unit
extern const int kernel_count;

Thread* current = nullptr;
uint3 block_idx;
dim3 block_dim, grid_dim;

namespace {

// ----------------------------------------------------------------- context switching
#if defined(__x86_64__)
// Saves the callee-saved registers and the FPU control words on the current stack, stores
// the stack pointer in *save, and continues on the stack `load` (saved the same way).
extern "C" void minitl_emu_switch(void** save, void* load);
asm(R"(
    .text
    .p2align 4
    .type minitl_emu_switch, @function
minitl_emu_switch:
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
    .size minitl_emu_switch, .-minitl_emu_switch
)");

struct Context { void* sp = nullptr; };

// A fresh stack that "returns" into entry() on the first switch to it.
void make_context(Context& c, char* stack, std::size_t size, void (*entry)())
{
    auto top = reinterpret_cast<std::uintptr_t>(stack + size) & ~std::uintptr_t(15);
    auto* p = reinterpret_cast<std::uint64_t*>(top);
    *--p = 0;                                          // entry()'s caller: none
    *--p = reinterpret_cast<std::uint64_t>(entry);     // the `ret` of minitl_emu_switch
    for (int i = 0; i < 6; ++i) *--p = 0;              // rbp rbx r12 r13 r14 r15
    std::uint32_t mxcsr;
    std::uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    *--p = std::uint64_t(mxcsr) | (std::uint64_t(fpucw) << 32);
    c.sp = p;
}
void switch_context(Context& from, Context& to) { minitl_emu_switch(&from.sp, to.sp); }
#else
struct Context { ucontext_t uc; };
void make_context(Context& c, char* stack, std::size_t size, void (*entry)())
{
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

// ----------------------------------------------------------------- state of a launch
enum State { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_OP, DONE };

struct WarpOp {
    unsigned mask;
    int kind, size, arg, width;
    std::uint64_t value, result;
};

struct Fiber {
    Thread thread;
    Context context;
    State state = RUNNABLE;
    WarpOp op{};
    void* asan_fake_stack = nullptr;
};

struct Stacks {
    std::vector<char*> bases;
    std::size_t size = 0;   // usable bytes per stack, below which one guard page sits
};

struct Launch {
    const KernelEntry* kernel = nullptr;
    void** args = nullptr;
    std::vector<Fiber> fibers;
    Context scheduler;
    std::deque<int> queue;
    std::vector<unsigned> warp_waiting;   // per warp: lanes waiting at a warp operation
    int block_waiting = 0, done = 0, barriers = 0, running = -1;
    int error_code = 0;
    std::string error;
    const void* scheduler_stack_bottom = nullptr;
    std::size_t scheduler_stack_size = 0;
};

Launch* launch = nullptr;
Stacks stacks;
std::mutex launch_mutex;   // one launch at a time: the fibers share the __shared__ section

std::size_t stack_bytes()
{
    const char* env = std::getenv("MINITL_EMU_STACK_KB");
    long kb = env ? std::atol(env) : (MINITL_EMU_ASAN ? 512 : 64);
    return std::size_t(std::max(16L, kb)) * 1024;
}

bool ensure_stacks(std::size_t count, std::string& error)
{
    const std::size_t page = std::size_t(sysconf(_SC_PAGESIZE));
    if (stacks.size == 0) stacks.size = (stack_bytes() + page - 1) / page * page;
    while (stacks.bases.size() < count) {
        void* p = mmap(nullptr, stacks.size + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            error = "cannot map a fiber stack";
            return false;
        }
        mprotect(p, page, PROT_NONE);   // a stack overflow faults instead of corrupting
        stacks.bases.push_back(static_cast<char*>(p) + page);
    }
    return true;
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

std::string where(const Fiber& f)
{
    return format("block (%u, %u, %u), thread (%u, %u, %u)", block_idx.x, block_idx.y, block_idx.z,
                  f.thread.idx.x, f.thread.idx.y, f.thread.idx.z);
}

// "0-31, 64, 70-71": the linear thread ids in `ids`, as ranges.
std::string ranges(const std::vector<int>& ids)
{
    std::string s;
    for (std::size_t i = 0; i < ids.size();) {
        std::size_t j = i;
        while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
        if (!s.empty()) s += ", ";
        s += j == i ? format("%d", ids[i]) : format("%d-%d", ids[i], ids[j]);
        i = j + 1;
    }
    return s;
}

// ----------------------------------------------------------------- switching in and out
void run_fiber(int i)
{
    Launch& L = *launch;
    Fiber& f = L.fibers[i];
    L.running = i;
    current = &f.thread;
#if MINITL_EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, stacks.bases[i], stacks.size);
    switch_context(L.scheduler, f.context);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    switch_context(L.scheduler, f.context);
#endif
    current = nullptr;
}

// From a fiber back to the scheduler; returns when the scheduler resumes this fiber.
void yield(bool final)
{
    Launch& L = *launch;
    Fiber& f = L.fibers[L.running];
#if MINITL_EMU_ASAN
    __sanitizer_start_switch_fiber(final ? nullptr : &f.asan_fake_stack,
                                   L.scheduler_stack_bottom, L.scheduler_stack_size);
    switch_context(f.context, L.scheduler);
    __sanitizer_finish_switch_fiber(f.asan_fake_stack, &L.scheduler_stack_bottom,
                                    &L.scheduler_stack_size);
#else
    (void)final;
    switch_context(f.context, L.scheduler);
#endif
}

void fiber_main()
{
    Launch& L = *launch;
#if MINITL_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &L.scheduler_stack_bottom, &L.scheduler_stack_size);
#endif
    L.kernel->call(L.kernel->fn, L.args);
    L.fibers[L.running].state = DONE;
    yield(true);
    std::abort();   // a finished fiber is never resumed
}

// ----------------------------------------------------------------- barriers
void fail(int code, const std::string& message)
{
    Launch& L = *launch;
    if (!L.error_code) {
        L.error_code = code;
        L.error = message;
    }
}

unsigned existing_lanes(int warp)
{
    const int n = int(launch->fibers.size()) - warp * 32;
    return n >= 32 ? 0xffffffffu : (1u << n) - 1;
}

int source_lane(const WarpOp& op, int lane)
{
    const int w = op.width, base = lane / w * w;
    switch (op.kind) {
    case SHFL_IDX: return base + ((op.arg % w) + w) % w;
    case SHFL_UP: return lane - op.arg < base ? lane : lane - op.arg;
    case SHFL_DOWN: return lane + op.arg >= base + w ? lane : lane + op.arg;
    case SHFL_XOR: return (lane ^ op.arg) >= base + w ? lane : (lane ^ op.arg);
    default: return lane;
    }
}

const char* op_name(int kind)
{
    static const char* names[] = {"__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync",
                                  "__shfl_xor_sync"};
    return names[kind];
}

// Fiber i has arrived at a warp operation: when every lane of its mask is there, compute
// each lane's result and let them all go on.
void arrive_at_warp_op(int i)
{
    Launch& L = *launch;
    const Fiber& f = L.fibers[i];
    const int warp = i / 32, lane = i % 32;
    const WarpOp& op = f.op;
    if (!(op.mask >> lane & 1u))
        return fail(3, format("%s in %s: lane %d is not in its own mask 0x%08x", op_name(op.kind),
                              where(f).c_str(), lane, op.mask));
    if (op.width < 1 || op.width > 32 || (op.width & (op.width - 1)))
        return fail(3, format("%s in %s: width %d is not a power of 2 from 1 to 32",
                              op_name(op.kind), where(f).c_str(), op.width));
    const unsigned mask = op.mask & existing_lanes(warp);
    L.warp_waiting[warp] |= 1u << lane;
    if ((L.warp_waiting[warp] & mask) != mask) return;

    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        const Fiber& g = L.fibers[warp * 32 + l];
        if (g.op.mask != op.mask || g.op.kind != op.kind || g.op.size != op.size)
            return fail(3, format("warp %d of block (%u, %u, %u): lanes %d and %d meet at different "
                                  "warp operations (%s, mask 0x%08x / %s, mask 0x%08x)", warp,
                                  block_idx.x, block_idx.y, block_idx.z, lane, l, op_name(op.kind),
                                  op.mask, op_name(g.op.kind), g.op.mask));
    }
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        Fiber& g = L.fibers[warp * 32 + l];
        if (op.kind != SYNC_WARP) {
            const int src = source_lane(g.op, l);
            if (!(mask >> src & 1u))
                return fail(3, format("%s in %s: lane %d reads lane %d, which is not in the mask "
                                      "0x%08x (undefined in CUDA)", op_name(op.kind),
                                      where(g).c_str(), l, src, op.mask));
            g.op.result = L.fibers[warp * 32 + src].op.value;
        }
        g.state = RUNNABLE;
        L.queue.push_back(warp * 32 + l);
    }
    L.warp_waiting[warp] &= ~mask;
}

void arrive_at_block_barrier()
{
    Launch& L = *launch;
    const int n = int(L.fibers.size());
    if (++L.block_waiting < n) return;
    // Alternate the order the threads go on in, so that a thread that relies on another
    // having run first is caught one way or the other.
    const bool reverse = (++L.barriers & 1) != 0;
    for (int k = 0; k < n; ++k) {
        const int i = reverse ? n - 1 - k : k;
        L.fibers[i].state = RUNNABLE;
        L.queue.push_back(i);
    }
    L.block_waiting = 0;
}

std::string deadlock_report()
{
    Launch& L = *launch;
    std::vector<int> at_block, returned;
    std::string warps;
    for (int i = 0; i < int(L.fibers.size()); ++i) {
        const Fiber& f = L.fibers[i];
        if (f.state == AT_BLOCK_BARRIER) at_block.push_back(i);
        if (f.state == DONE) returned.push_back(i);
    }
    for (int w = 0; w < int(L.warp_waiting.size()); ++w) {
        if (!L.warp_waiting[w]) continue;
        std::vector<int> lanes;
        for (int l = 0; l < 32; ++l)
            if (L.warp_waiting[w] >> l & 1u) lanes.push_back(l);
        const WarpOp& op = L.fibers[w * 32 + lanes[0]].op;
        warps += format("; warp %d, lanes %s, wait at %s with mask 0x%08x", w, ranges(lanes).c_str(),
                        op_name(op.kind), op.mask);
    }
    std::string s = format("deadlock in block (%u, %u, %u) of %s: a GPU would hang here. Threads "
                           "(linear ids) ", block_idx.x, block_idx.y, block_idx.z, L.kernel->name);
    s += at_block.empty() ? "" : "waiting at __syncthreads: " + ranges(at_block) + "; ";
    s += returned.empty() ? "" : "already returned: " + ranges(returned);
    s += warps;
    return s;
}

void run_block()
{
    Launch& L = *launch;
    const int n = int(L.fibers.size());
    if (__start_minitl_emu_shared != nullptr)   // values no thread of this block wrote read as NaN
        std::memset(__start_minitl_emu_shared, 0xff,
                    std::size_t(__stop_minitl_emu_shared - __start_minitl_emu_shared));
    for (int i = 0; i < n; ++i) {
        Fiber& f = L.fibers[i];
        const unsigned bx = block_dim.x, by = block_dim.y;
        f.thread.idx = uint3{unsigned(i) % bx, unsigned(i) / bx % by, unsigned(i) / (bx * by)};
        f.thread.linear = i;
        f.state = RUNNABLE;
        make_context(f.context, stacks.bases[i], stacks.size, &fiber_main);
        L.queue.push_back(i);
    }
    std::fill(L.warp_waiting.begin(), L.warp_waiting.end(), 0u);
    L.block_waiting = L.done = 0;
    while (!L.queue.empty() && !L.error_code) {
        const int i = L.queue.front();
        L.queue.pop_front();
        run_fiber(i);
        switch (L.fibers[i].state) {
        case DONE: ++L.done; break;
        case AT_BLOCK_BARRIER: arrive_at_block_barrier(); break;
        case AT_WARP_OP: arrive_at_warp_op(i); break;
        case RUNNABLE: break;   // stopped by abort_launch
        }
    }
    L.queue.clear();
    if (!L.error_code && L.done != n) fail(3, deadlock_report());
}

// ----------------------------------------------------------------- faults
sigjmp_buf fault_jump;
volatile sig_atomic_t fault_signal = 0;
void* volatile fault_address = nullptr;

void on_fault(int sig, siginfo_t* info, void*)
{
    fault_signal = sig;
    fault_address = info->si_addr;
    siglongjmp(fault_jump, 1);
}

}  // namespace

// ----------------------------------------------------------------- called by kernels
void syncthreads()
{
    launch->fibers[launch->running].state = AT_BLOCK_BARRIER;
    yield(false);
}

std::uint64_t warp_op(unsigned mask, int kind, std::uint64_t value, int size, int arg, int width)
{
    Fiber& f = launch->fibers[launch->running];
    f.op = WarpOp{mask, kind, size, arg, width, value, 0};
    f.state = AT_WARP_OP;
    yield(false);
    return f.op.result;
}

void abort_launch(int code, const char* message)
{
    Launch& L = *launch;
    std::string text = message;
    if (code == MINITL_EMU_TRAP) text += " in " + where(L.fibers[L.running]);
    fail(code, text);
    yield(true);
    std::abort();
}

}  // namespace minitl_emu

// ----------------------------------------------------------------- the C interface
using namespace minitl_emu;

extern "C" {

int minitl_emu_kernel_count() { return kernel_count; }
const char* minitl_emu_kernel_name(int i) { return kernels[i].name; }
const char* minitl_emu_kernel_signature(int i) { return kernels[i].signature(); }
unsigned long long minitl_emu_shared_bytes()
{
    return __start_minitl_emu_shared ? (unsigned long long)(__stop_minitl_emu_shared - __start_minitl_emu_shared) : 0;
}

// Runs kernel `index` on grid x block with the argument pointers `args`.  Returns 0, or
// 1 (an exercise stub was reached), 2 (__trap), 3 (deadlock, bad shuffle, or a memory fault)
// with a message in `message`.  The Python side has checked the launch configuration.
int minitl_emu_launch(int index, const unsigned* grid, const unsigned* block, void** args,
                      char* message, int message_size)
{
    std::lock_guard<std::mutex> lock(launch_mutex);
    Launch L;
    L.kernel = &kernels[index];
    L.args = args;
    const std::size_t n = std::size_t(block[0]) * block[1] * block[2];
    std::string error;
    if (!ensure_stacks(n, error)) {
        snprintf(message, message_size, "%s", error.c_str());
        return 3;
    }
    L.fibers.resize(n);
    L.warp_waiting.assign((n + 31) / 32, 0u);
    launch = &L;
    block_dim = dim3(block[0], block[1], block[2]);
    grid_dim = dim3(grid[0], grid[1], grid[2]);

#if !MINITL_EMU_ASAN
    // A wild or misaligned access, a stack overflow or an integer division by zero in a
    // kernel ends the launch with an error, as CUDA reports an illegal address, instead of
    // ending the Python process.  (Under AddressSanitizer its own report is more useful.)
    static char alt_stack_memory[64 * 1024];
    stack_t alt{}, old_alt{};
    alt.ss_sp = alt_stack_memory;
    alt.ss_size = sizeof alt_stack_memory;
    sigaltstack(nullptr, &old_alt);
    const bool own_alt = (old_alt.ss_flags & SS_DISABLE) != 0;
    if (own_alt) sigaltstack(&alt, nullptr);
    struct sigaction action{}, old_segv{}, old_bus{}, old_fpe{};
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &old_segv);
    sigaction(SIGBUS, &action, &old_bus);
    sigaction(SIGFPE, &action, &old_fpe);
    fault_signal = 0;
    if (sigsetjmp(fault_jump, 1) == 0) {
#endif
        for (unsigned z = 0; z < grid[2] && !L.error_code; ++z)
            for (unsigned y = 0; y < grid[1] && !L.error_code; ++y)
                for (unsigned x = 0; x < grid[0] && !L.error_code; ++x) {
                    block_idx = uint3{x, y, z};
                    run_block();
                }
#if !MINITL_EMU_ASAN
    } else {
        const char* what = fault_signal == SIGFPE ? "arithmetic fault (integer division by zero?)"
                         : "invalid memory access (out of bounds, misaligned, or a stack overflow)";
        const Fiber* f = L.running >= 0 ? &L.fibers[L.running] : nullptr;
        L.error_code = 3;
        L.error = format("%s at address %p in %s of %s", what, fault_address,
                         f ? where(*f).c_str() : "the scheduler", L.kernel->name);
    }
    sigaction(SIGSEGV, &old_segv, nullptr);
    sigaction(SIGBUS, &old_bus, nullptr);
    sigaction(SIGFPE, &old_fpe, nullptr);
    if (own_alt) sigaltstack(&old_alt, nullptr);
#endif
#if MINITL_EMU_ASAN
    // A launch that stopped early left its fibers' frames on their stacks, with their
    // redzones still marked; the next launch reuses the stacks.
    if (L.error_code)
        for (std::size_t i = 0; i < n; ++i) __asan_unpoison_memory_region(stacks.bases[i], stacks.size);
#endif
    launch = nullptr;
    current = nullptr;
    if (L.error_code) snprintf(message, message_size, "%s", L.error.c_str());
    return L.error_code;
}

}  // extern "C"
