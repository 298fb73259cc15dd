// matmul.cu -- float32 matrix multiply (SGEMM) in four rungs, from naive to warp-tiled.
//
//     C[b] = op(A[b]) @ op(B[b])          op(X) = X, or X transposed
//
// This is the product behind every Linear layer, every attention score and, through
// dW = x^T @ dy and dx = dy @ W^T, behind their backward passes: that is why the
// kernels take transposed operands directly instead of asking for a transposed copy.
//
// All matrices are stored row-major, as NumPy and CuPy store them.  Every kernel has
// the same parameters, so the Python wrapper, the tests and the benchmark can swap one
// rung for another:
//
//   A, B, C          device pointers to the first matrix of each operand
//   M, N, K          op(A) is M x K, op(B) is K x N, C is M x N
//   lda, ldb, ldc    row pitch, in elements, of each matrix *as stored*: A is stored
//                    M x K (lda >= K), or K x M when trans_a (lda >= M); likewise B
//   trans_a, trans_b 0 or 1
//   stride_a/b/c     elements from one matrix of a batch to the next; 0 repeats the
//                    same matrix for every batch entry (broadcasting)
//   batch            number of products; blockIdx.z walks them (grid-stride, so a
//                    batch larger than the 65535 limit of gridDim.z still works)
//
// gridDim.y counts tiles of rows and is limited to 65535 too: the Python wrapper
// launches taller matrices in slices of rows.  It also cuts K into slices for products
// too small to fill the GPU (split-K), passing them as a batch.
//
// The file compiles both with nvcc (the tests run `nvcc --cubin`) and with NVRTC
// (cupy.RawModule at run time), so it includes no headers.

// A student copy (`minitl exercises export`) replaces an exercise's code by this line.  On a
// GPU the kernel stops (the Python loader names the exercise before compiling); the CPU
// emulation, kernels/emulation/cuda_emu.h, defines its own that raises NotImplementedError.
#ifndef MINITL_EXERCISE_STUB
#define MINITL_EXERCISE_STUB(message) __trap()
#endif

#define SGEMM_PARAMS                                                          \
    const float* __restrict__ A, const float* __restrict__ B,                 \
    float* __restrict__ C, int M, int N, int K, int lda, int ldb, int ldc,    \
    int trans_a, int trans_b, long long stride_a, long long stride_b,         \
    long long stride_c, int batch

// op(X)[row][col] for a row-major matrix X with pitch ld, transposed or not.
__device__ __forceinline__ float load_op(const float* X, int ld, int trans, int row, int col)
{
    return trans ? X[(long long)col * ld + row] : X[(long long)row * ld + col];
}


// ---------------------------------------------------------------------------------
// Rung 1: naive.  One thread per element of C, reading its row of op(A) and its
// column of op(B) straight from global memory: 2 loads of 4 bytes for every 2 FLOPs.
//
// threadIdx.x runs along a row of C, so the 32 threads of a warp read 32 neighbouring
// elements of B and write 32 neighbouring elements of C -- one coalesced 128-byte
// transaction each -- and all read the same element of A (a broadcast).
// Launch: block (32, 8), grid (ceil(N/32), ceil(M/8), batch).
// ---------------------------------------------------------------------------------
extern "C" __global__ void sgemm_naive(SGEMM_PARAMS)
{
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= M || col >= N) return;  // no __syncthreads below, so leaving early is safe
    for (int b = blockIdx.z; b < batch; b += gridDim.z) {
        const float* Ab = A + b * stride_a;
        const float* Bb = B + b * stride_b;
        float acc = 0.0f;
        for (int k = 0; k < K; ++k)
            acc += load_op(Ab, lda, trans_a, row, k) * load_op(Bb, ldb, trans_b, k, col);
        C[b * stride_c + (long long)row * ldc + col] = acc;
    }
}


// ---------------------------------------------------------------------------------
// Rung 2: shared-memory tiling.  A 32 x 32 block of threads computes a 32 x 32 tile
// of C.  It walks K in steps of 32: each thread copies one element of op(A) and one
// of op(B) into shared memory, then every thread reads 32 of each from there.  Each
// value fetched from global memory is now used 32 times instead of once.
// Launch: block (32, 32), grid (ceil(N/32), ceil(M/32), batch).
// ---------------------------------------------------------------------------------
#define TILE 32

// Copies the tiles at k0 into shared memory, each thread one element of each:
// As[i][k] = op(A)[row0 + i][k0 + k] and Bs[k][j] = op(B)[k0 + k][col0 + j], with 0 for
// elements outside the matrices, so the product loop needs no guards.  Tiles are read
// along the *stored* rows, so a warp's loads stay coalesced when an operand is
// transposed too; the transposed ones are written across the shared tile, and the +1
// padding keeps those column writes on 32 different banks.
__device__ __forceinline__ void load_tiles(float (&As)[TILE][TILE + 1], float (&Bs)[TILE][TILE + 1],
                                           const float* Ab, const float* Bb, int lda, int ldb,
                                           int trans_a, int trans_b, int M, int N, int K,
                                           int row0, int col0, int k0)
{
    const int tx = threadIdx.x, ty = threadIdx.y;
    if (!trans_a)  // A stored M x K: a warp reads 32 consecutive k of one row
        As[ty][tx] = (row0 + ty < M && k0 + tx < K) ? Ab[(long long)(row0 + ty) * lda + k0 + tx] : 0.0f;
    else           // A stored K x M: a warp reads 32 consecutive m of one k
        As[tx][ty] = (row0 + tx < M && k0 + ty < K) ? Ab[(long long)(k0 + ty) * lda + row0 + tx] : 0.0f;
    if (!trans_b)  // B stored K x N
        Bs[ty][tx] = (k0 + ty < K && col0 + tx < N) ? Bb[(long long)(k0 + ty) * ldb + col0 + tx] : 0.0f;
    else           // B stored N x K
        Bs[tx][ty] = (k0 + tx < K && col0 + ty < N) ? Bb[(long long)(col0 + ty) * ldb + k0 + tx] : 0.0f;
}

extern "C" __global__ void __launch_bounds__(TILE * TILE) sgemm_tiled(SGEMM_PARAMS)
{
    __shared__ float As[TILE][TILE + 1];  // As[i][k] = op(A)[row0 + i][k0 + k]
    __shared__ float Bs[TILE][TILE + 1];  // Bs[k][j] = op(B)[k0 + k][col0 + j]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row0 = blockIdx.y * TILE, col0 = blockIdx.x * TILE;

    for (int b = blockIdx.z; b < batch; b += gridDim.z) {
        const float* Ab = A + b * stride_a;
        const float* Bb = B + b * stride_b;
        float acc = 0.0f;  // C[row0 + ty][col0 + tx]
        // BEGIN EXERCISE gpu.sgemm_tiled
        // hint: acc = sum over tiles k0 = 0, TILE, ... < K of sum_k As[ty][k] Bs[k][tx]; per tile: load_tiles(..., k0), __syncthreads(), add, __syncthreads() before the next load
        for (int k0 = 0; k0 < K; k0 += TILE) {
            load_tiles(As, Bs, Ab, Bb, lda, ldb, trans_a, trans_b, M, N, K, row0, col0, k0);
            __syncthreads();  // the tiles are complete before anyone reads them
            #pragma unroll
            for (int k = 0; k < TILE; ++k)
                acc += As[ty][k] * Bs[k][tx];
            __syncthreads();  // everyone is done reading before the next tiles overwrite them
        }
        // END EXERCISE
        if (row0 + ty < M && col0 + tx < N)
            C[b * stride_c + (long long)(row0 + ty) * ldc + col0 + tx] = acc;
    }
}


// ---------------------------------------------------------------------------------
// Both blocked rungs below see A and B the same way: as a "panel" of MN x K values,
// where MN is M for A and N for B (op(B) transposed is N x K).  A panel is stored
// either k-contiguous (A as it is, or B transposed) or mn-contiguous (A transposed,
// or B as it is).  In shared memory a panel is always kept k-major, S[k][mn], so that
// for a fixed k the values a thread needs along M (or N) sit next to each other.
// ---------------------------------------------------------------------------------

// Rung 3: 2-D register blocking.  256 threads compute a 128 x 128 tile of C; each
// thread keeps an 8 x 8 block of it in registers.  Per step k a thread reads 8 values
// of A and 8 of B from shared memory and does 64 multiply-adds with them: 8 FLOPs per
// shared-memory read instead of rung 2's 1.  Loads are scalar and there is no
// prefetching; rung 4 adds both.
// Launch: block 256, grid (ceil(N/128), ceil(M/128), batch).
#define RB_BM 128
#define RB_BN 128
#define RB_BK 8
#define RB_TM 8
#define RB_TN 8
#define RB_THREADS 256

// Copies panel rows mn0 .. mn0+BMN-1, columns k0 .. k0+BK-1 of X into S[BK][BMN],
// zero-filling whatever lies outside the MN x K matrix.  Consecutive threads take
// consecutive *stored* elements, so global reads are coalesced either way.
template <int BMN, int BK, int THREADS>
__device__ __forceinline__ void load_panel_scalar(float* S, const float* X, int ld,
                                                  int k_contig, int MN, int K, int mn0, int k0)
{
    static_assert((BMN * BK) % THREADS == 0, "panel must split evenly over the threads");
    #pragma unroll
    for (int i = 0; i < BMN * BK / THREADS; ++i) {
        const int e = threadIdx.x + i * THREADS;
        const int mn = k_contig ? e / BK : e % BMN;
        const int k = k_contig ? e % BK : e / BMN;
        const int g_mn = mn0 + mn, g_k = k0 + k;
        float v = 0.0f;
        if (g_mn < MN && g_k < K)
            v = k_contig ? X[(long long)g_mn * ld + g_k] : X[(long long)g_k * ld + g_mn];
        S[k * BMN + mn] = v;
    }
}

extern "C" __global__ void __launch_bounds__(RB_THREADS) sgemm_blocktile(SGEMM_PARAMS)
{
    __shared__ float As[RB_BK * RB_BM];  // As[k][m]
    __shared__ float Bs[RB_BK * RB_BN];  // Bs[k][n]
    // A 16 x 16 grid of threads; thread (ty, tx) owns rows ty*8.. and columns tx*8.. .
    const int ty = threadIdx.x / (RB_BN / RB_TN), tx = threadIdx.x % (RB_BN / RB_TN);
    const int row0 = blockIdx.y * RB_BM, col0 = blockIdx.x * RB_BN;

    for (int b = blockIdx.z; b < batch; b += gridDim.z) {
        const float* Ab = A + b * stride_a;
        const float* Bb = B + b * stride_b;
        float acc[RB_TM][RB_TN] = {};
        float a[RB_TM], bv[RB_TN];
        for (int k0 = 0; k0 < K; k0 += RB_BK) {
            load_panel_scalar<RB_BM, RB_BK, RB_THREADS>(As, Ab, lda, !trans_a, M, K, row0, k0);
            load_panel_scalar<RB_BN, RB_BK, RB_THREADS>(Bs, Bb, ldb, trans_b, N, K, col0, k0);
            __syncthreads();
            #pragma unroll
            for (int k = 0; k < RB_BK; ++k) {
                #pragma unroll
                for (int i = 0; i < RB_TM; ++i) a[i] = As[k * RB_BM + ty * RB_TM + i];
                #pragma unroll
                for (int j = 0; j < RB_TN; ++j) bv[j] = Bs[k * RB_BN + tx * RB_TN + j];
                #pragma unroll
                for (int i = 0; i < RB_TM; ++i)
                    #pragma unroll
                    for (int j = 0; j < RB_TN; ++j)
                        acc[i][j] += a[i] * bv[j];
            }
            __syncthreads();
        }
        float* Cb = C + b * stride_c;
        #pragma unroll
        for (int i = 0; i < RB_TM; ++i) {
            const int row = row0 + ty * RB_TM + i;
            #pragma unroll
            for (int j = 0; j < RB_TN; ++j) {
                const int col = col0 + tx * RB_TN + j;
                if (row < M && col < N) Cb[(long long)row * ldc + col] = acc[i][j];
            }
        }
    }
}


// ---------------------------------------------------------------------------------
// Rung 4: warp tiling, float4 loads, register prefetch.  This is the kernel
// kernels.matmul() uses.  Same 128 x 128 tile and 8 x 8 outputs per thread as rung 3,
// three changes:
//
//  * float4 loads.  A panel is read 16 bytes per thread per load, when the matrix
//    allows it (pitch a multiple of 4, 16-byte aligned base and batch stride, the 4
//    values inside the matrix); otherwise 4 guarded scalar loads take their place.
//  * Warp tiling.  The 8 warps split the block tile 2 x 4 into 64 x 32 warp tiles, and
//    a thread's 8 x 8 outputs are four 4 x 4 pieces 32 rows / 16 columns apart.  For
//    one k a warp then reads only 32 consecutive floats of As and 16 of Bs (broadcast
//    to the lanes that share them): no bank conflicts, fewer shared-memory wavefronts,
//    and every read is a float4.
//  * Double buffering.  While the block multiplies the tile in one shared buffer, each
//    thread has already issued the global loads of the next tile into registers; they
//    go to the other buffer afterwards, so memory latency hides behind arithmetic and
//    one __syncthreads per tile is enough.
//
// Launch: block 256, grid (ceil(N/128), ceil(M/128), batch).
// ---------------------------------------------------------------------------------
#define WT_BM 128
#define WT_BN 128
#define WT_BK 8
#define WT_THREADS 256
#define WT_WARPS_N 4        // warps along N; 8 warps = 2 along M x 4 along N
#define WT_WM 64            // warp tile: 64 rows ...
#define WT_WN 32            // ... x 32 columns
#define WT_LANES_N 4        // lanes along N inside a warp tile; 8 along M
#define WT_LOADS ((WT_BM * WT_BK) / (4 * WT_THREADS))  // float4 loads per panel per thread = 1
#define WT_K4 (WT_BK / 4)   // float4 per stored row of a k-contiguous panel (2)
#define WT_MN4 (WT_BM / 4)  // float4 per stored row of an mn-contiguous panel (32)
// Row pitch of a shared panel.  A k-contiguous panel is written down columns of S: a
// warp writes 16 mn at k and 16 at k + 4.  With a pitch of 128 both halves land on the
// same 16 banks (2-way conflicts); 132 moves the second half 16 banks along, so the
// writes are conflict-free, and keeps every row 16-byte aligned for the float4 reads.
#define WT_PITCH (WT_BM + 4)

static_assert(WT_BM == WT_BN, "one panel loader serves A and B");
static_assert(WT_LOADS * 4 * WT_THREADS == WT_BM * WT_BK, "a panel must split evenly into float4 per thread");

// True when a matrix can be read with aligned float4 loads along its stored rows.
__device__ __forceinline__ bool float4_ok(const void* p, int ld, long long stride)
{
    return (reinterpret_cast<unsigned long long>(p) & 15) == 0 && (ld & 3) == 0 && (stride & 3) == 0;
}

// Reads this thread's share of a 128 x 16 panel (rows mn0.., columns k0.. in panel
// terms) into registers: WT_LOADS groups of 4 values, each along the stored row.
__device__ __forceinline__ void load_panel_regs(float4 (&r)[WT_LOADS], const float* X, int ld,
                                                int k_contig, bool vec, int MN, int K,
                                                int mn0, int k0)
{
    #pragma unroll
    for (int i = 0; i < WT_LOADS; ++i) {
        const int f = threadIdx.x + i * WT_THREADS;  // which float4 of the panel
        // k-contiguous: a stored row holds 8 k = 2 float4; mn-contiguous: 128 mn = 32 float4
        const int row = k_contig ? mn0 + f / WT_K4 : k0 + f / WT_MN4;
        const int col = k_contig ? k0 + (f % WT_K4) * 4 : mn0 + (f % WT_MN4) * 4;
        const int rows = k_contig ? MN : K, cols = k_contig ? K : MN;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (row < rows) {
            const float* p = X + (long long)row * ld + col;
            if (vec && col + 3 < cols) {
                v = *reinterpret_cast<const float4*>(p);
            } else {
                if (col + 0 < cols) v.x = p[0];
                if (col + 1 < cols) v.y = p[1];
                if (col + 2 < cols) v.z = p[2];
                if (col + 3 < cols) v.w = p[3];
            }
        }
        r[i] = v;
    }
}

// Writes what load_panel_regs read into the k-major shared panel S[WT_BK][WT_PITCH].
__device__ __forceinline__ void store_panel(float* S, const float4 (&r)[WT_LOADS], int k_contig)
{
    #pragma unroll
    for (int i = 0; i < WT_LOADS; ++i) {
        const int f = threadIdx.x + i * WT_THREADS;
        if (k_contig) {  // 4 consecutive k of one mn: a column of S
            const int mn = f / WT_K4, k = (f % WT_K4) * 4;
            S[(k + 0) * WT_PITCH + mn] = r[i].x;
            S[(k + 1) * WT_PITCH + mn] = r[i].y;
            S[(k + 2) * WT_PITCH + mn] = r[i].z;
            S[(k + 3) * WT_PITCH + mn] = r[i].w;
        } else {         // 4 consecutive mn of one k: already a row of S
            const int k = f / WT_MN4, mn = (f % WT_MN4) * 4;
            *reinterpret_cast<float4*>(&S[k * WT_PITCH + mn]) = r[i];
        }
    }
}

// The body is a template on the two transpose flags, so each of the four variants is
// compiled with its own address arithmetic and no run-time branches on the flags: with
// 64 accumulators, 8 prefetched values and 16 operands per thread, the registers saved
// matter (see WT_MIN_BLOCKS below).
template <int TRANS_A, int TRANS_B>
__device__ __forceinline__ void sgemm_warptile_body(float (&As)[2][WT_BK * WT_PITCH],
                                                    float (&Bs)[2][WT_BK * WT_PITCH],
                                                    SGEMM_PARAMS)
{

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    // Where this thread's outputs start inside the block tile: warp tile corner plus
    // lane position; its rows are m_base + {0..3} and m_base + 32 + {0..3}, its
    // columns n_base + {0..3} and n_base + 16 + {0..3}.
    const int m_base = (warp / WT_WARPS_N) * WT_WM + (lane / WT_LANES_N) * 4;
    const int n_base = (warp % WT_WARPS_N) * WT_WN + (lane % WT_LANES_N) * 4;
    const int row0 = blockIdx.y * WT_BM, col0 = blockIdx.x * WT_BN;
    const int a_kc = !TRANS_A, b_kc = TRANS_B;  // which panels are k-contiguous
    const bool vec_a = float4_ok(A, lda, stride_a);
    const bool vec_b = float4_ok(B, ldb, stride_b);
    const bool vec_c = float4_ok(C, ldc, stride_c);
    const int tiles = (K + WT_BK - 1) / WT_BK;

    for (int b = blockIdx.z; b < batch; b += gridDim.z) {
        const float* Ab = A + b * stride_a;
        const float* Bb = B + b * stride_b;
        float acc[8][8] = {};   // acc[i][j]: row m_base + (i/4)*32 + i%4, col n_base + (j/4)*16 + j%4
        float4 ra[WT_LOADS], rb[WT_LOADS];

        load_panel_regs(ra, Ab, lda, a_kc, vec_a, M, K, row0, 0);
        load_panel_regs(rb, Bb, ldb, b_kc, vec_b, N, K, col0, 0);
        store_panel(As[0], ra, a_kc);
        store_panel(Bs[0], rb, b_kc);
        __syncthreads();

        for (int t = 0; t < tiles; ++t) {
            const int cur = t & 1;
            // Issue the next tile's global loads now; their values are first needed
            // after the arithmetic below, so their latency is hidden behind it.
            if (t + 1 < tiles) {
                load_panel_regs(ra, Ab, lda, a_kc, vec_a, M, K, row0, (t + 1) * WT_BK);
                load_panel_regs(rb, Bb, ldb, b_kc, vec_b, N, K, col0, (t + 1) * WT_BK);
            }
            #pragma unroll
            for (int k = 0; k < WT_BK; ++k) {
                const float* as = &As[cur][k * WT_PITCH + m_base];
                const float* bs = &Bs[cur][k * WT_PITCH + n_base];
                const float4 a0 = *reinterpret_cast<const float4*>(as);
                const float4 a1 = *reinterpret_cast<const float4*>(as + 32);
                const float4 b0 = *reinterpret_cast<const float4*>(bs);
                const float4 b1 = *reinterpret_cast<const float4*>(bs + 16);
                const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
                const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
                #pragma unroll
                for (int i = 0; i < 8; ++i)
                    #pragma unroll
                    for (int j = 0; j < 8; ++j)
                        acc[i][j] += a[i] * bv[j];
            }
            // The other buffer was last read in iteration t-1, and every thread has
            // passed that iteration's __syncthreads, so it is free to overwrite.
            if (t + 1 < tiles) {
                store_panel(As[cur ^ 1], ra, a_kc);
                store_panel(Bs[cur ^ 1], rb, b_kc);
            }
            __syncthreads();  // next buffer complete; this one no longer being read
        }

        float* Cb = C + b * stride_c;
        #pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int row = row0 + m_base + (i / 4) * 32 + (i % 4);
            if (row >= M) continue;
            #pragma unroll
            for (int jh = 0; jh < 2; ++jh) {
                const int col = col0 + n_base + jh * 16;
                float* p = Cb + (long long)row * ldc + col;
                if (vec_c && col + 3 < N) {
                    *reinterpret_cast<float4*>(p) =
                        make_float4(acc[i][jh * 4 + 0], acc[i][jh * 4 + 1],
                                    acc[i][jh * 4 + 2], acc[i][jh * 4 + 3]);
                } else {
                    #pragma unroll
                    for (int j = 0; j < 4; ++j)
                        if (col + j < N) p[j] = acc[i][jh * 4 + j];
                }
            }
        }
        // Before the next batch entry reuses buffer 0, every thread must be done with
        // the last tile: the loop's final __syncthreads already guarantees that.
    }
}

// Blocks per SM the compiler must leave room for.  With 2 it caps registers at 128 and
// ptxas (CUDA 13) spills 20-36 bytes per thread in some variants; with 1 it uses about
// 167 registers (sm_90) and spills nothing, at 8 warps per SM.  Which is faster is a
// question for the GPU: compile with -DWT_MIN_BLOCKS=2 to try the other one.
#ifndef WT_MIN_BLOCKS
#define WT_MIN_BLOCKS 1
#endif

// Four entry points, one per pair of transpose flags: sgemm_warptile_nn (op(A) = A,
// op(B) = B), _nt, _tn and _tt.  (One kernel branching to the four bodies was tried
// first: ptxas then spills ~190 bytes per thread; each variant alone needs 128 registers
// and spills nothing.)  They keep the common parameter list; the trans_a and trans_b
// values passed are ignored, the name decides.
#define SGEMM_WARPTILE_ENTRY(NAME, TA, TB)                                                        \
    extern "C" __global__ void __launch_bounds__(WT_THREADS, WT_MIN_BLOCKS) NAME(SGEMM_PARAMS)    \
    {                                                                                  \
        /* Two buffers of each panel: 2 * 2 * 8 * 132 * 4 bytes = 16.5 KiB. */       \
        __shared__ __align__(16) float As[2][WT_BK * WT_PITCH];                        \
        __shared__ __align__(16) float Bs[2][WT_BK * WT_PITCH];                        \
        sgemm_warptile_body<TA, TB>(As, Bs, A, B, C, M, N, K, lda, ldb, ldc, TA, TB,   \
                                    stride_a, stride_b, stride_c, batch);              \
    }

SGEMM_WARPTILE_ENTRY(sgemm_warptile_nn, 0, 0)
SGEMM_WARPTILE_ENTRY(sgemm_warptile_nt, 0, 1)
SGEMM_WARPTILE_ENTRY(sgemm_warptile_tn, 1, 0)
SGEMM_WARPTILE_ENTRY(sgemm_warptile_tt, 1, 1)
