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
// and write y once, at the speed of a plain copy.  Two layouts of the work:
//
//   *_warp   one warp per row, rows of at most 1024 values.  The row is held in
//            registers (32 per lane), so the max, the sum and the output all come from
//            one read of global memory.  Launch: block 128 (4 rows), grid ceil(rows/4).
//   *_block  one block per row, for longer rows.  Each thread streams its share of the
//            row once, keeping a running max and a running sum rescaled whenever the
//            max grows ("online softmax"); the partial (max, sum) pairs are merged
//            across the block, then a second sweep writes the output (that re-read of
//            the row mostly hits L2).  Launch: block 256, grid rows.
//
// Like matmul.cu the file includes no headers, so nvcc and NVRTC both compile it.

#define WARP 32
#define MAX_PER_LANE 32          // 32 lanes x 32 values = rows of up to 1024
#define NEG_INF __int_as_float(0xff800000)

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

// Butterfly reductions: after log2(32) = 5 exchanges every lane holds the result.
__device__ __forceinline__ float warp_max(float v)
{
    #pragma unroll
    for (int o = WARP / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v)
{
    #pragma unroll
    for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ void warp_merge_max_sum(float& m, float& s)
{
    #pragma unroll
    for (int o = WARP / 2; o > 0; o /= 2) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        merge_max_sum(m, s, m2, s2);
    }
}

// Block-wide merge of (m, s): warps merge, lane 0 of each posts to shared memory, warp
// 0 merges those, and everyone reads the answer.  Call at most once per kernel (the
// shared slots are not guarded against a second use).  blockDim.x: multiple of 32.
__device__ __forceinline__ void block_merge_max_sum(float& m, float& s)
{
    __shared__ float shared_m[32], shared_s[32];
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    const int warps = blockDim.x / WARP;
    warp_merge_max_sum(m, s);
    if (lane == 0) { shared_m[warp] = m; shared_s[warp] = s; }
    __syncthreads();
    if (warp == 0) {
        m = lane < warps ? shared_m[lane] : NEG_INF;
        s = lane < warps ? shared_s[lane] : 0.0f;
        warp_merge_max_sum(m, s);
        if (lane == 0) { shared_m[0] = m; shared_s[0] = s; }
    }
    __syncthreads();
    m = shared_m[0];
    s = shared_s[0];
}

// Block-wide sum, same pattern and the same once-per-kernel rule.
__device__ __forceinline__ float block_sum(float v)
{
    __shared__ float shared_v[32];
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    const int warps = blockDim.x / WARP;
    v = warp_sum(v);
    if (lane == 0) shared_v[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = warp_sum(lane < warps ? shared_v[lane] : 0.0f);
        if (lane == 0) shared_v[0] = v;
    }
    __syncthreads();
    return shared_v[0];
}

__device__ __forceinline__ bool aligned16(const void* p)
{
    return (reinterpret_cast<unsigned long long>(p) & 15) == 0;
}


// ---------------------------------------------------------------------------------
// Forward, one warp per row (cols <= 1024).  log_softmax = 0: softmax, 1: log-softmax.
// Lane l holds x[l], x[l + 32], ...: each load instruction of the warp reads 128
// consecutive bytes.  The loads of all 32 slots are independent, so they are all in
// flight at once; slots past the end of the row are predicated off.
// ---------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(128)
softmax_forward_warp(const float* __restrict__ x, float* __restrict__ y,
                     int rows, int cols, int log_softmax)
{
    const int lane = threadIdx.x % WARP;
    const long long row = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;  // a whole warp leaves; no block-level barrier follows
    const float* xr = x + row * cols;
    float* yr = y + row * cols;

    float v[MAX_PER_LANE];
    #pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) {
        const int c = lane + i * WARP;
        v[i] = c < cols ? xr[c] : NEG_INF;
    }
    // The row is in registers, so the exact max first and then the sum costs no extra
    // memory traffic (the online form is for when the row streams past, see below).
    float m = NEG_INF;
    #pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) m = fmaxf(m, v[i]);
    m = warp_max(m);
    float s = 0.0f;
    #pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) s += exp_shifted(v[i], m);
    s = warp_sum(s);

    const float inv_s = 1.0f / s, log_s = logf(s);
    #pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) {
        const int c = lane + i * WARP;
        if (c < cols) yr[c] = log_softmax ? v[i] - m - log_s : exp_shifted(v[i], m) * inv_s;
    }
}


// ---------------------------------------------------------------------------------
// Forward, one block per row (any cols; used above 1024).  Reads float4 when the row
// allows it: 16 bytes per load keeps enough bytes in flight per SM to approach DRAM
// bandwidth with few instructions.
// ---------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(1024)
softmax_forward_block(const float* __restrict__ x, float* __restrict__ y,
                      int rows, int cols, int log_softmax)
{
    const long long row = blockIdx.x;
    const float* xr = x + row * cols;
    float* yr = y + row * cols;
    const bool vec = (cols % 4 == 0) && aligned16(xr) && aligned16(yr);

    // Pass 1, online: one sweep gives this thread's max m and sum s of exp(x - m).
    float m = NEG_INF, s = 0.0f;
    if (vec) {
        const float4* x4 = reinterpret_cast<const float4*>(xr);
        #pragma unroll 4
        for (int i = threadIdx.x; i < cols / 4; i += blockDim.x) {
            const float4 q = x4[i];
            const float m_new = fmaxf(fmaxf(m, fmaxf(q.x, q.y)), fmaxf(q.z, q.w));
            s = s * exp_shifted(m, m_new) + exp_shifted(q.x, m_new) + exp_shifted(q.y, m_new)
                + exp_shifted(q.z, m_new) + exp_shifted(q.w, m_new);
            m = m_new;
        }
    } else {
        #pragma unroll 4
        for (int c = threadIdx.x; c < cols; c += blockDim.x) merge_max_sum(m, s, xr[c], 1.0f);
    }
    block_merge_max_sum(m, s);

    // Pass 2: write the output.
    const float inv_s = 1.0f / s, log_s = logf(s);
    if (vec) {
        const float4* x4 = reinterpret_cast<const float4*>(xr);
        float4* y4 = reinterpret_cast<float4*>(yr);
        for (int i = threadIdx.x; i < cols / 4; i += blockDim.x) {
            const float4 q = x4[i];
            y4[i] = log_softmax
                ? make_float4(q.x - m - log_s, q.y - m - log_s, q.z - m - log_s, q.w - m - log_s)
                : make_float4(exp_shifted(q.x, m) * inv_s, exp_shifted(q.y, m) * inv_s,
                              exp_shifted(q.z, m) * inv_s, exp_shifted(q.w, m) * inv_s);
        }
    } else {
        for (int c = threadIdx.x; c < cols; c += blockDim.x)
            yr[c] = log_softmax ? xr[c] - m - log_s : exp_shifted(xr[c], m) * inv_s;
    }
}


// ---------------------------------------------------------------------------------
// Backward, one warp per row.  y is the forward output (softmax or log-softmax), dy
// the gradient arriving at y; writes dx.  Both need one row sum:
//   softmax:      dot = sum(dy * y),  dx = y * (dy - dot)
//   log-softmax:  tot = sum(dy),      dx = dy - exp(y) * tot
// ---------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(128)
softmax_backward_warp(const float* __restrict__ y, const float* __restrict__ dy,
                      float* __restrict__ dx, int rows, int cols, int log_softmax)
{
    const int lane = threadIdx.x % WARP;
    const long long row = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    const float* yr = y + row * cols;
    const float* gr = dy + row * cols;
    float* dxr = dx + row * cols;

    float yv[MAX_PER_LANE], gv[MAX_PER_LANE];
    #pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) {
        const int c = lane + i * WARP;
        yv[i] = c < cols ? yr[c] : 0.0f;
        gv[i] = c < cols ? gr[c] : 0.0f;
    }
    float acc = 0.0f;
    #pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) acc += log_softmax ? gv[i] : gv[i] * yv[i];
    acc = warp_sum(acc);
    #pragma unroll
    for (int i = 0; i < MAX_PER_LANE; ++i) {
        const int c = lane + i * WARP;
        if (c < cols) dxr[c] = log_softmax ? gv[i] - expf(yv[i]) * acc : yv[i] * (gv[i] - acc);
    }
}


// ---------------------------------------------------------------------------------
// Backward, one block per row: a streaming sweep for the sum, a second for dx.
// ---------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(1024)
softmax_backward_block(const float* __restrict__ y, const float* __restrict__ dy,
                       float* __restrict__ dx, int rows, int cols, int log_softmax)
{
    const long long row = blockIdx.x;
    const float* yr = y + row * cols;
    const float* gr = dy + row * cols;
    float* dxr = dx + row * cols;
    const bool vec = (cols % 4 == 0) && aligned16(yr) && aligned16(gr) && aligned16(dxr);

    float acc = 0.0f;
    if (vec) {
        const float4* y4 = reinterpret_cast<const float4*>(yr);
        const float4* g4 = reinterpret_cast<const float4*>(gr);
        #pragma unroll 4
        for (int i = threadIdx.x; i < cols / 4; i += blockDim.x) {
            const float4 g = g4[i];
            if (log_softmax) {
                acc += (g.x + g.y) + (g.z + g.w);
            } else {
                const float4 q = y4[i];
                acc += (g.x * q.x + g.y * q.y) + (g.z * q.z + g.w * q.w);
            }
        }
    } else {
        #pragma unroll 4
        for (int c = threadIdx.x; c < cols; c += blockDim.x)
            acc += log_softmax ? gr[c] : gr[c] * yr[c];
    }
    acc = block_sum(acc);

    if (vec) {
        const float4* y4 = reinterpret_cast<const float4*>(yr);
        const float4* g4 = reinterpret_cast<const float4*>(gr);
        float4* d4 = reinterpret_cast<float4*>(dxr);
        for (int i = threadIdx.x; i < cols / 4; i += blockDim.x) {
            const float4 q = y4[i], g = g4[i];
            d4[i] = log_softmax
                ? make_float4(g.x - expf(q.x) * acc, g.y - expf(q.y) * acc,
                              g.z - expf(q.z) * acc, g.w - expf(q.w) * acc)
                : make_float4(q.x * (g.x - acc), q.y * (g.y - acc),
                              q.z * (g.z - acc), q.w * (g.w - acc));
        }
    } else {
        for (int c = threadIdx.x; c < cols; c += blockDim.x)
            dxr[c] = log_softmax ? gr[c] - expf(yr[c]) * acc : yr[c] * (gr[c] - acc);
    }
}
