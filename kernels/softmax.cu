// softmax.cu -- row softmax and log-softmax, forward and backward.
//
//   softmax:      y_i = exp(x_i - m) / s           m = max_j x_j,  s = sum_j exp(x_j - m)
//   log-softmax:  y_i = x_i - m - log(s)
//   backward:     softmax      dx = y * (dy - sum_j dy_j y_j)
//                 log-softmax  dx = dy - exp(y) * sum_j dy_j
//
// Softmax turns attention scores into weights and, as log-softmax, feeds the
// cross-entropy loss.  Subtracting the row maximum m keeps exp() from overflowing and
// changes nothing mathematically.
//
// Each row is `cols` contiguous floats; rows follow each other (pitch = cols).  The
// work is memory-bound: a few FLOPs per 8 bytes moved, so the goal is to read x once
// and write y once, at the speed of a plain copy.  That takes two things: every value
// read once from DRAM (the row stays in registers between the max, the sum and the
// output), and enough loads in flight (each thread issues all its loads before it uses
// any).  Three layouts of the work, by row length:
//
//   *_warp<V>   rows of up to 1024: a group of `lanes` lanes per row, V values per lane
//               (V = 4 (backward only), 8, 16 or 32, the name's suffix; plain _warp is
//               V = 32).  Rows of 128 or fewer share a warp: 8 values per lane forward,
//               4 backward, and as few lanes as hold the row, so forward a 32-value row
//               takes 4 lanes and a warp does 8 rows at once.
//               Launch: block 128, grid ceil(rows / (128 / lanes)).
//   *_block<P>  rows longer than 1024, up to blockDim * P (P = 8, 16, 32 values per
//               thread): one block per row, held in registers across the block.
//               Launch: block ceil(cols / P) rounded up to whole warps, grid rows.
//   *_block     rows longer still: one block per row, streaming.  Each thread sweeps its
//               share once, keeping a running max and a running sum rescaled whenever the
//               max grows ("online softmax"); the partial (max, sum) pairs are merged
//               across the block, then a second sweep writes the output: the one layout
//               that reads the row twice.  Launch: block 1024, grid rows.
//
// kernels/__init__.py picks the kernel and the launch for each row length.  Like
// matmul.cu the file includes no headers, so nvcc and NVRTC both compile it.

#define WARP 32
#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)

// A student copy (`minitl exercises export`) replaces an exercise's code by this line.  On a
// GPU the kernel stops (the Python loader names the exercise before compiling); the CPU
// emulation, kernels/emulation/cuda_emu.h, defines its own that raises NotImplementedError.
#ifndef MINITL_EXERCISE_STUB
#define MINITL_EXERCISE_STUB(message) __trap()
#endif

// exp(x - m) with exp(-inf - anything) = 0.  Masked attention scores are -inf, and a
// row (or a thread's share of one) may be all -inf, where plain expf(-inf - -inf)
// would give NaN.
__device__ __forceinline__ float exp_shifted(float x, float m)
{
    return x == NEG_INF ? 0.0f : expf(x - m);
}

// Merges two partial results of the online softmax, (m1, s1) and (m2, s2), each a max
// and a sum of exp(x - max) over part of a row, into one for both parts.
__device__ __forceinline__ void merge_max_sum(float& m, float& s, float m2, float s2)
{
    const float m_new = fmaxf(m, m2);
    s = s * exp_shifted(m, m_new) + s2 * exp_shifted(m2, m_new);
    m = m_new;
}

// The lanes of the calling thread's group: `lanes` consecutive lanes (a power of 2 up to
// 32) starting at a multiple of `lanes`.  A group's shuffles name only its own lanes, so
// a group whose row lies past the end can leave without stalling the others.
__device__ __forceinline__ unsigned group_mask(int lanes)
{
    const int first = (threadIdx.x % WARP) & ~(lanes - 1);
    return lanes == WARP ? FULL_MASK : ((1u << lanes) - 1) << first;
}

// Butterfly reductions over a group: after log2(lanes) exchanges, in which each lane
// swaps values with the lane whose index differs in one bit, every lane holds the result.
__device__ __forceinline__ float group_max(float v, unsigned mask, int lanes)
{
    for (int o = lanes / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(mask, v, o));
    return v;
}

__device__ __forceinline__ float group_sum(float v, unsigned mask, int lanes)
{
    // BEGIN EXERCISE gpu.softmax_warp_sum
    // hint: as group_max, with + for fmaxf: for o = lanes/2, ..., 1: v += __shfl_xor_sync(mask, v, o); after log2(lanes) steps every lane holds the sum
    for (int o = lanes / 2; o > 0; o /= 2) v += __shfl_xor_sync(mask, v, o);
    return v;
    // END EXERCISE
}

__device__ __forceinline__ void warp_merge_max_sum(float& m, float& s)
{
    #pragma unroll
    for (int o = WARP / 2; o > 0; o /= 2) {
        const float m2 = __shfl_xor_sync(FULL_MASK, m, o);
        const float s2 = __shfl_xor_sync(FULL_MASK, s, o);
        merge_max_sum(m, s, m2, s2);
    }
}

// Block-wide reductions: each warp reduces, lane 0 of each posts to shared memory, warp 0
// reduces those, and everyone reads the answer.  Each function has its own shared slots
// and is called at most once per kernel (the slots are not guarded against a second
// use).  blockDim.x: a multiple of 32.
__device__ __forceinline__ float block_max(float v)
{
    __shared__ float shared_v[WARP];
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    v = group_max(v, FULL_MASK, WARP);
    if (lane == 0) shared_v[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = group_max(lane < blockDim.x / WARP ? shared_v[lane] : NEG_INF, FULL_MASK, WARP);
        if (lane == 0) shared_v[0] = v;
    }
    __syncthreads();
    return shared_v[0];
}

__device__ __forceinline__ float block_sum(float v)
{
    __shared__ float shared_v[WARP];
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    v = group_sum(v, FULL_MASK, WARP);
    if (lane == 0) shared_v[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = group_sum(lane < blockDim.x / WARP ? shared_v[lane] : 0.0f, FULL_MASK, WARP);
        if (lane == 0) shared_v[0] = v;
    }
    __syncthreads();
    return shared_v[0];
}

__device__ __forceinline__ void block_merge_max_sum(float& m, float& s)
{
    __shared__ float shared_m[WARP], shared_s[WARP];
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    warp_merge_max_sum(m, s);
    if (lane == 0) { shared_m[warp] = m; shared_s[warp] = s; }
    __syncthreads();
    if (warp == 0) {
        m = lane < blockDim.x / WARP ? shared_m[lane] : NEG_INF;
        s = lane < blockDim.x / WARP ? shared_s[lane] : 0.0f;
        warp_merge_max_sum(m, s);
        if (lane == 0) { shared_m[0] = m; shared_s[0] = s; }
    }
    __syncthreads();
    m = shared_m[0];
    s = shared_s[0];
}

__device__ __forceinline__ bool aligned16(const void* p)
{
    return (reinterpret_cast<unsigned long long>(p) & 15) == 0;
}

// The output of one value x of the row: softmax or log-softmax, given the row's m, 1/s,
// log(s).  For the streaming kernel, which reads x again to write the output.
__device__ __forceinline__ float softmax_value(float v, float m, float inv_s, float log_s, int log_softmax)
{
    return log_softmax ? v - m - log_s : exp_shifted(v, m) * inv_s;
}

// The sum of exp(v - m) over a thread's values.  For softmax each value is replaced by its
// exp(v - m), which the output then only scales by 1/s: one exp per value, not two.
// Log-softmax keeps v, since its output is v - m - log(s).
template <int N>
__device__ __forceinline__ float sum_exp_shifted(float (&v)[N], float m, int log_softmax)
{
    float s = 0.0f;
    #pragma unroll
    for (int i = 0; i < N; ++i) {
        const float e = exp_shifted(v[i], m);
        s += e;
        if (!log_softmax) v[i] = e;
    }
    return s;
}

// The output of a value after sum_exp_shifted: exp(v - m) / s, or v - m - log(s).
__device__ __forceinline__ float scaled_value(float v, float m, float inv_s, float log_s, int log_softmax)
{
    return log_softmax ? v - m - log_s : v * inv_s;
}

// The softmax-backward value of one element, given the row's sum (see the top).
__device__ __forceinline__ float backward_value(float y, float g, float sum, int log_softmax)
{
    return log_softmax ? g - expf(y) * sum : y * (g - sum);
}


// ---------------------------------------------------------------------------------
// Rows of up to 1024, a group of `lanes` lanes each.  Lane l of a group holds x[l],
// x[l + lanes], ...: for each slot the group reads `lanes` consecutive floats, and the
// V loads of a lane are independent, so they are all in flight at once.  Slots past the
// end of the row are predicated off.  Requires cols <= V * lanes.
// ---------------------------------------------------------------------------------
template <int V>
__device__ __forceinline__ void softmax_forward_rows(const float* __restrict__ x, float* __restrict__ y,
                                                     int rows, int cols, int log_softmax, int lanes)
{
    const int lane = threadIdx.x % lanes;
    const long long row = (long long)blockIdx.x * (blockDim.x / lanes) + threadIdx.x / lanes;
    if (row >= rows) return;  // the whole group leaves; no block-level barrier follows
    const unsigned mask = group_mask(lanes);
    const float* xr = x + row * cols;
    float* yr = y + row * cols;

    float v[V];
    #pragma unroll
    for (int i = 0; i < V; ++i) {
        const int c = lane + i * lanes;
        v[i] = c < cols ? xr[c] : NEG_INF;
    }
    // The row is in registers, so the exact max first and then the sum costs no extra
    // memory traffic (the online form is for when the row streams past, see below).
    float m = NEG_INF;
    #pragma unroll
    for (int i = 0; i < V; ++i) m = fmaxf(m, v[i]);
    m = group_max(m, mask, lanes);
    const float s = group_sum(sum_exp_shifted<V>(v, m, log_softmax), mask, lanes);

    const float inv_s = 1.0f / s, log_s = logf(s);
    #pragma unroll
    for (int i = 0; i < V; ++i) {
        const int c = lane + i * lanes;
        if (c < cols) yr[c] = scaled_value(v[i], m, inv_s, log_s, log_softmax);
    }
}

// Backward, same layout.  y is the forward output (softmax or log-softmax), dy the
// gradient arriving at y; writes dx.  Both need one row sum:
//   softmax:      dot = sum(dy * y),  dx = y * (dy - dot)
//   log-softmax:  tot = sum(dy),      dx = dy - exp(y) * tot
template <int V>
__device__ __forceinline__ void softmax_backward_rows(const float* __restrict__ y, const float* __restrict__ dy,
                                                      float* __restrict__ dx, int rows, int cols,
                                                      int log_softmax, int lanes)
{
    const int lane = threadIdx.x % lanes;
    const long long row = (long long)blockIdx.x * (blockDim.x / lanes) + threadIdx.x / lanes;
    if (row >= rows) return;
    const unsigned mask = group_mask(lanes);
    const float* yr = y + row * cols;
    const float* gr = dy + row * cols;
    float* dxr = dx + row * cols;

    float yv[V], gv[V];
    #pragma unroll
    for (int i = 0; i < V; ++i) {
        const int c = lane + i * lanes;
        yv[i] = c < cols ? yr[c] : 0.0f;
        gv[i] = c < cols ? gr[c] : 0.0f;
    }
    float acc = 0.0f;
    #pragma unroll
    for (int i = 0; i < V; ++i) acc += log_softmax ? gv[i] : gv[i] * yv[i];
    acc = group_sum(acc, mask, lanes);
    #pragma unroll
    for (int i = 0; i < V; ++i) {
        const int c = lane + i * lanes;
        if (c < cols) dxr[c] = backward_value(yv[i], gv[i], acc, log_softmax);
    }
}

// The entry points, one per V and direction.  Rows of up to 128 share a warp, so their
// kernels read `lanes`: the forward keeps 8 values per lane, the backward 4 of y and 4 of
// dy, the same 8 loads in flight per thread (with 4 values the forward reached 0.58-0.66
// of copy bandwidth on an H200, with 8 0.82).  The 8-value kernels also serve rows of up to
// 256 with lanes = 32.  The 16- and 32-value ones take a whole warp per row, and a group
// size known to the compiler turns every slot's address into a constant offset instead
// of a register.
#define SOFTMAX_WARP_FORWARD(NAME, V, LANES)                                                      \
    extern "C" __global__ void __launch_bounds__(128)                                             \
    NAME(const float* __restrict__ x, float* __restrict__ y, int rows, int cols, int log_softmax, \
         int lanes)                                                                               \
    {                                                                                             \
        softmax_forward_rows<V>(x, y, rows, cols, log_softmax, LANES);                            \
    }
#define SOFTMAX_WARP_BACKWARD(NAME, V, LANES)                                                     \
    extern "C" __global__ void __launch_bounds__(128)                                             \
    NAME(const float* __restrict__ y, const float* __restrict__ dy, float* __restrict__ dx,        \
         int rows, int cols, int log_softmax, int lanes)                                          \
    {                                                                                             \
        softmax_backward_rows<V>(y, dy, dx, rows, cols, log_softmax, LANES);                      \
    }

SOFTMAX_WARP_FORWARD(softmax_forward_warp8, 8, lanes)
SOFTMAX_WARP_FORWARD(softmax_forward_warp16, 16, WARP)
SOFTMAX_WARP_FORWARD(softmax_forward_warp, 32, WARP)
SOFTMAX_WARP_BACKWARD(softmax_backward_warp4, 4, lanes)
SOFTMAX_WARP_BACKWARD(softmax_backward_warp8, 8, lanes)
SOFTMAX_WARP_BACKWARD(softmax_backward_warp16, 16, WARP)
SOFTMAX_WARP_BACKWARD(softmax_backward_warp, 32, WARP)


// ---------------------------------------------------------------------------------
// Rows of up to blockDim.x * P, one block each, held in registers: P values per thread.
// With float4 loads when the row allows (cols % 4 == 0, 16-byte aligned rows), thread t
// holds the float4s t, t + blockDim.x, ...; otherwise the floats t, t + blockDim.x, ....
// Either way a warp's load reads consecutive memory, and all P/4 (or P) loads of a
// thread are issued before the first is used.
// ---------------------------------------------------------------------------------
template <int P>
__device__ __forceinline__ void load_row(float (&v)[P], const float* row, int cols, bool vec, float fill)
{
    if (vec) {
        const float4* row4 = reinterpret_cast<const float4*>(row);
        #pragma unroll
        for (int j = 0; j < P / 4; ++j) {
            const int f = threadIdx.x + j * blockDim.x;
            const float4 q = f < cols / 4 ? row4[f] : make_float4(fill, fill, fill, fill);
            v[4 * j] = q.x; v[4 * j + 1] = q.y; v[4 * j + 2] = q.z; v[4 * j + 3] = q.w;
        }
    } else {
        #pragma unroll
        for (int k = 0; k < P; ++k) {
            const int c = threadIdx.x + k * blockDim.x;
            v[k] = c < cols ? row[c] : fill;
        }
    }
}

template <int P>
__device__ __forceinline__ void store_row(float* row, const float (&v)[P], int cols, bool vec)
{
    if (vec) {
        float4* row4 = reinterpret_cast<float4*>(row);
        #pragma unroll
        for (int j = 0; j < P / 4; ++j) {
            const int f = threadIdx.x + j * blockDim.x;
            if (f < cols / 4) row4[f] = make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]);
        }
    } else {
        #pragma unroll
        for (int k = 0; k < P; ++k) {
            const int c = threadIdx.x + k * blockDim.x;
            if (c < cols) row[c] = v[k];
        }
    }
}

template <int P>
__device__ __forceinline__ void softmax_forward_row_in_registers(const float* __restrict__ x, float* __restrict__ y,
                                                                 int cols, int log_softmax)
{
    const long long row = blockIdx.x;
    const float* xr = x + row * cols;
    float* yr = y + row * cols;
    const bool vec = (cols % 4 == 0) && aligned16(xr) && aligned16(yr);

    float v[P];
    load_row<P>(v, xr, cols, vec, NEG_INF);
    float m = NEG_INF;
    #pragma unroll
    for (int k = 0; k < P; ++k) m = fmaxf(m, v[k]);
    m = block_max(m);
    const float s = block_sum(sum_exp_shifted<P>(v, m, log_softmax));
    const float inv_s = 1.0f / s, log_s = logf(s);
    #pragma unroll
    for (int k = 0; k < P; ++k) v[k] = scaled_value(v[k], m, inv_s, log_s, log_softmax);
    store_row<P>(yr, v, cols, vec);
}

template <int P>
__device__ __forceinline__ void softmax_backward_row_in_registers(const float* __restrict__ y,
                                                                  const float* __restrict__ dy,
                                                                  float* __restrict__ dx, int cols,
                                                                  int log_softmax)
{
    const long long row = blockIdx.x;
    const float* yr = y + row * cols;
    const float* gr = dy + row * cols;
    float* dxr = dx + row * cols;
    const bool vec = (cols % 4 == 0) && aligned16(yr) && aligned16(gr) && aligned16(dxr);

    float yv[P], gv[P];
    load_row<P>(yv, yr, cols, vec, 0.0f);
    load_row<P>(gv, gr, cols, vec, 0.0f);
    float acc = 0.0f;
    #pragma unroll
    for (int k = 0; k < P; ++k) acc += log_softmax ? gv[k] : gv[k] * yv[k];
    acc = block_sum(acc);
    #pragma unroll
    for (int k = 0; k < P; ++k) gv[k] = backward_value(yv[k], gv[k], acc, log_softmax);
    store_row<P>(dxr, gv, cols, vec);
}

extern "C" __global__ void __launch_bounds__(1024)
softmax_forward_block8(const float* __restrict__ x, float* __restrict__ y, int rows, int cols, int log_softmax)
{
    softmax_forward_row_in_registers<8>(x, y, cols, log_softmax);
}

extern "C" __global__ void __launch_bounds__(1024)
softmax_forward_block16(const float* __restrict__ x, float* __restrict__ y, int rows, int cols, int log_softmax)
{
    softmax_forward_row_in_registers<16>(x, y, cols, log_softmax);
}

extern "C" __global__ void __launch_bounds__(1024)
softmax_forward_block32(const float* __restrict__ x, float* __restrict__ y, int rows, int cols, int log_softmax)
{
    softmax_forward_row_in_registers<32>(x, y, cols, log_softmax);
}

extern "C" __global__ void __launch_bounds__(1024)
softmax_backward_block8(const float* __restrict__ y, const float* __restrict__ dy, float* __restrict__ dx,
                        int rows, int cols, int log_softmax)
{
    softmax_backward_row_in_registers<8>(y, dy, dx, cols, log_softmax);
}

extern "C" __global__ void __launch_bounds__(1024)
softmax_backward_block16(const float* __restrict__ y, const float* __restrict__ dy, float* __restrict__ dx,
                         int rows, int cols, int log_softmax)
{
    softmax_backward_row_in_registers<16>(y, dy, dx, cols, log_softmax);
}


// ---------------------------------------------------------------------------------
// Rows too long for registers (forward past 32768, backward past 16384), one block per
// row, streaming.  Each iteration of a sweep issues STREAM_BATCH float4 loads (or
// floats, when the row does not allow float4) before it uses any of them.
// ---------------------------------------------------------------------------------
#define STREAM_BATCH 4

// Reads up to STREAM_BATCH elements i, i + stride, ... of a row of n elements (float4 or
// float, as T), `fill` past the end.
template <class T>
__device__ __forceinline__ void load_batch(T (&q)[STREAM_BATCH], const T* row, int i, int stride, int n, T fill)
{
    #pragma unroll
    for (int u = 0; u < STREAM_BATCH; ++u) q[u] = i + u * stride < n ? row[i + u * stride] : fill;
}

extern "C" __global__ void __launch_bounds__(1024)
softmax_forward_block(const float* __restrict__ x, float* __restrict__ y, int rows, int cols, int log_softmax)
{
    const long long row = blockIdx.x;
    const float* xr = x + row * cols;
    float* yr = y + row * cols;
    const bool vec = (cols % 4 == 0) && aligned16(xr) && aligned16(yr);
    const int step = STREAM_BATCH * blockDim.x;

    // Pass 1, online: one sweep gives this thread's max m and sum s of exp(x - m).
    float m = NEG_INF, s = 0.0f;
    if (vec) {
        const float4* x4 = reinterpret_cast<const float4*>(xr);
        const float4 none = make_float4(NEG_INF, NEG_INF, NEG_INF, NEG_INF);
        for (int i = threadIdx.x; i < cols / 4; i += step) {
            float4 q[STREAM_BATCH];
            load_batch(q, x4, i, blockDim.x, cols / 4, none);
            #pragma unroll
            for (int u = 0; u < STREAM_BATCH; ++u) {
                const float m_new = fmaxf(fmaxf(m, fmaxf(q[u].x, q[u].y)), fmaxf(q[u].z, q[u].w));
                s = s * exp_shifted(m, m_new) + exp_shifted(q[u].x, m_new) + exp_shifted(q[u].y, m_new)
                    + exp_shifted(q[u].z, m_new) + exp_shifted(q[u].w, m_new);
                m = m_new;
            }
        }
    } else {
        for (int i = threadIdx.x; i < cols; i += step) {
            float q[STREAM_BATCH];
            load_batch(q, xr, i, blockDim.x, cols, NEG_INF);
            #pragma unroll
            for (int u = 0; u < STREAM_BATCH; ++u) merge_max_sum(m, s, q[u], 1.0f);
        }
    }
    block_merge_max_sum(m, s);

    // Pass 2: write the output.
    const float inv_s = 1.0f / s, log_s = logf(s);
    if (vec) {
        const float4* x4 = reinterpret_cast<const float4*>(xr);
        float4* y4 = reinterpret_cast<float4*>(yr);
        const float4 none = make_float4(NEG_INF, NEG_INF, NEG_INF, NEG_INF);
        for (int i = threadIdx.x; i < cols / 4; i += step) {
            float4 q[STREAM_BATCH];
            load_batch(q, x4, i, blockDim.x, cols / 4, none);
            #pragma unroll
            for (int u = 0; u < STREAM_BATCH; ++u)
                if (i + u * blockDim.x < cols / 4)
                    y4[i + u * blockDim.x] = make_float4(softmax_value(q[u].x, m, inv_s, log_s, log_softmax),
                                                         softmax_value(q[u].y, m, inv_s, log_s, log_softmax),
                                                         softmax_value(q[u].z, m, inv_s, log_s, log_softmax),
                                                         softmax_value(q[u].w, m, inv_s, log_s, log_softmax));
        }
    } else {
        for (int i = threadIdx.x; i < cols; i += step) {
            float q[STREAM_BATCH];
            load_batch(q, xr, i, blockDim.x, cols, NEG_INF);
            #pragma unroll
            for (int u = 0; u < STREAM_BATCH; ++u)
                if (i + u * blockDim.x < cols)
                    yr[i + u * blockDim.x] = softmax_value(q[u], m, inv_s, log_s, log_softmax);
        }
    }
}

extern "C" __global__ void __launch_bounds__(1024)
softmax_backward_block(const float* __restrict__ y, const float* __restrict__ dy,
                       float* __restrict__ dx, int rows, int cols, int log_softmax)
{
    const long long row = blockIdx.x;
    const float* yr = y + row * cols;
    const float* gr = dy + row * cols;
    float* dxr = dx + row * cols;
    const bool vec = (cols % 4 == 0) && aligned16(yr) && aligned16(gr) && aligned16(dxr);
    const int step = STREAM_BATCH * blockDim.x;

    float acc = 0.0f;
    if (vec) {
        const float4* y4 = reinterpret_cast<const float4*>(yr);
        const float4* g4 = reinterpret_cast<const float4*>(gr);
        const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int i = threadIdx.x; i < cols / 4; i += step) {
            float4 g[STREAM_BATCH], q[STREAM_BATCH];
            load_batch(g, g4, i, blockDim.x, cols / 4, zero);
            if (!log_softmax) load_batch(q, y4, i, blockDim.x, cols / 4, zero);
            #pragma unroll
            for (int u = 0; u < STREAM_BATCH; ++u)
                acc += log_softmax ? (g[u].x + g[u].y) + (g[u].z + g[u].w)
                                   : (g[u].x * q[u].x + g[u].y * q[u].y) + (g[u].z * q[u].z + g[u].w * q[u].w);
        }
    } else {
        for (int i = threadIdx.x; i < cols; i += step) {
            float g[STREAM_BATCH], q[STREAM_BATCH];
            load_batch(g, gr, i, blockDim.x, cols, 0.0f);
            if (!log_softmax) load_batch(q, yr, i, blockDim.x, cols, 0.0f);
            #pragma unroll
            for (int u = 0; u < STREAM_BATCH; ++u) acc += log_softmax ? g[u] : g[u] * q[u];
        }
    }
    acc = block_sum(acc);

    if (vec) {
        const float4* y4 = reinterpret_cast<const float4*>(yr);
        const float4* g4 = reinterpret_cast<const float4*>(gr);
        float4* d4 = reinterpret_cast<float4*>(dxr);
        const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int i = threadIdx.x; i < cols / 4; i += step) {
            float4 g[STREAM_BATCH], q[STREAM_BATCH];
            load_batch(g, g4, i, blockDim.x, cols / 4, zero);
            load_batch(q, y4, i, blockDim.x, cols / 4, zero);
            #pragma unroll
            for (int u = 0; u < STREAM_BATCH; ++u)
                if (i + u * blockDim.x < cols / 4)
                    d4[i + u * blockDim.x] = make_float4(backward_value(q[u].x, g[u].x, acc, log_softmax),
                                                         backward_value(q[u].y, g[u].y, acc, log_softmax),
                                                         backward_value(q[u].z, g[u].z, acc, log_softmax),
                                                         backward_value(q[u].w, g[u].w, acc, log_softmax));
        }
    } else {
        for (int i = threadIdx.x; i < cols; i += step) {
            float g[STREAM_BATCH], q[STREAM_BATCH];
            load_batch(g, gr, i, blockDim.x, cols, 0.0f);
            load_batch(q, yr, i, blockDim.x, cols, 0.0f);
            #pragma unroll
            for (int u = 0; u < STREAM_BATCH; ++u)
                if (i + u * blockDim.x < cols)
                    dxr[i + u * blockDim.x] = backward_value(q[u], g[u], acc, log_softmax);
        }
    }
}
