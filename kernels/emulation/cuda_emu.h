// cuda_emu.h -- the part of CUDA that kernels/*.cu use, for running them on the CPU.
//
// The emulation compiles an unchanged .cu file with g++ after this header and runs every
// CUDA thread of a block as a fiber (a user-level thread) on one OS thread:
//
//   threadIdx, blockIdx, ...   per-fiber and per-launch values
//   __syncthreads()            a barrier over the block: the fiber waits until every thread
//                              of the block has arrived
//   __shfl_*_sync(), __syncwarp()
//                              a barrier over the lanes named in the mask; the values are
//                              exchanged when the last of them arrives
//   __shared__                 static storage, in one linker section; the blocks run one after
//                              another, so it is per-block storage, and it is filled with NaN
//                              bytes before each block, so reading a value nobody wrote shows
//   float4, dim3, ...          plain structs with CUDA's alignment
//
// A fiber runs until it waits at a barrier or returns, so each thread runs as far ahead of
// the others as the barriers allow: a missing __syncthreads shows as wrong values.  Where a
// GPU would hang (a barrier some threads never reach, a shuffle naming a lane that returned)
// the launch stops with an error that says which threads wait where.
//
// It checks correctness, never speed.  runtime.cpp holds the scheduler; kernels/emulation/
// __init__.py builds both with g++ and launches kernels the way CuPy would.
#pragma once

#ifdef MINITL_EMU_SCAN
// Preprocessing pass that finds the kernels: the markers survive into the output, where
// the Python side reads each extern "C" kernel's name and __launch_bounds__.
#define __global__ MINITL_EMU_GLOBAL
#define __launch_bounds__(...) MINITL_EMU_BOUNDS(__VA_ARGS__)
#define __device__
#define __forceinline__
#define __shared__
#define __align__(n)
#else

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>

// ----------------------------------------------------------------- types
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }

// ----------------------------------------------------------------- qualifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
// No __noinline__: the kernels do not use it, and libstdc++ (GCC 12 and later) spells the
// attribute __attribute__((__noinline__)), which such a macro breaks in any standard header
// included after this one.
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Every __shared__ variable lands in this section; runtime.cpp poisons it before each block.
#define __shared__ static __attribute__((section("minitl_emu_shared")))

// ----------------------------------------------------------------- the runtime's side
namespace minitl_emu {

struct Thread {
    uint3 idx;        // threadIdx
    int linear;       // x + y * blockDim.x + z * blockDim.x * blockDim.y
};

extern Thread* current;           // the fiber running now
extern uint3 block_idx;
extern dim3 block_dim, grid_dim;

void syncthreads();
// One warp-level operation: waits for the lanes in `mask`, then returns the 8-byte value
// `kind` (shfl/up/down/xor) reads from the source lane, or nothing for a __syncwarp.
enum ShuffleKind { SYNC_WARP = 0, SHFL_IDX = 1, SHFL_UP = 2, SHFL_DOWN = 3, SHFL_XOR = 4 };
std::uint64_t warp_op(unsigned mask, int kind, std::uint64_t value, int size, int arg, int width);
[[noreturn]] void abort_launch(int code, const char* message);

template <class T>
inline T shuffle(unsigned mask, T value, int kind, int arg, int width)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "the emulation shuffles values of up to 8 bytes");
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    bits = warp_op(mask, kind, bits, int(sizeof(T)), arg, width);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}

}  // namespace minitl_emu

enum { MINITL_EMU_STUB = 1, MINITL_EMU_TRAP = 2 };

#define threadIdx (static_cast<const uint3&>(::minitl_emu::current->idx))
#define blockIdx (static_cast<const uint3&>(::minitl_emu::block_idx))
#define blockDim (static_cast<const dim3&>(::minitl_emu::block_dim))
#define gridDim (static_cast<const dim3&>(::minitl_emu::grid_dim))
#define warpSize 32

// ----------------------------------------------------------------- intrinsics
inline void __syncthreads() { minitl_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    minitl_emu::warp_op(mask, minitl_emu::SYNC_WARP, 0, 0, 0, 32);
}
template <class T> inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32)
{
    return minitl_emu::shuffle(mask, v, minitl_emu::SHFL_IDX, src_lane, width);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    return minitl_emu::shuffle(mask, v, minitl_emu::SHFL_UP, int(delta), width);
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    return minitl_emu::shuffle(mask, v, minitl_emu::SHFL_DOWN, int(delta), width);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    return minitl_emu::shuffle(mask, v, minitl_emu::SHFL_XOR, lane_mask, width);
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __int_as_float(unsigned int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
template <class T> inline T __ldg(const T* p) { return *p; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
// The fibers of a launch run one at a time, so a plain read-modify-write is atomic.
template <class T> inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <class T> inline T atomicMax(T* p, T v) { T old = *p; *p = old > v ? old : v; return old; }
template <class T> inline T atomicMin(T* p, T v) { T old = *p; *p = old < v ? old : v; return old; }

[[noreturn]] inline void __trap() { minitl_emu::abort_launch(MINITL_EMU_TRAP, "__trap() called"); }

// A student copy replaces an exercise's code by this line (`minitl exercises export`); the
// launch stops and the Python wrapper raises NotImplementedError(message).
#define MINITL_EXERCISE_STUB(message) ::minitl_emu::abort_launch(MINITL_EMU_STUB, message)

#endif  // MINITL_EMU_SCAN
