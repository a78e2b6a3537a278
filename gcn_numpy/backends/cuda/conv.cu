// CUDA kernels of the CuPy backend (gcn_numpy/backends/cupy_gpu.py).
//
// A convolution layer is computed as one matrix product by cuBLAS between the filters and a
// "column" matrix of image patches (im2col); these kernels do everything around that product,
// and draw the Gaussian noise of the Langevin steps (normal). Each is a template instantiated
// for float and double through RawModule's name_expressions ("im2col<float>", ...). No headers
// are included, so NVRTC compiles this file as it is; the math functions (log, sqrt, sin, cos)
// are NVRTC built-ins.
//
// Shapes, as in reference.py: input maps x (N, C, H, W), filters (K, C, kh, kw), output maps
// (N, K, Ho, Wo), Ho = (H + 2 pad - kh) / stride + 1. With P = Ho * Wo the column matrix is
//
//     col[r][n * P + p] = xpad[n][c][i * stride + u][j * stride + v],
//     r = (c * kh + u) * kw + v,  p = i * Wo + j,
//
// shape (C * kh * kw, N * P): the batch is folded into the columns, so that each layer costs
// one large GEMM rather than N small ones. The filters, viewed as a (K, C * kh * kw) matrix,
// then give the responses of eq. (12) as a (K, N * P) matrix, channel-major.
//
// Row order (c, u, v). Row r pairs with W[k][c][u][v] of the C-order filter array, so the
// filter matrix is W.reshape(K, -1), with no copy, and one im2col thread (one channel of one
// position) writes a run of kh * kw consecutive rows. reference.py computes the same sum
// sum_{c,u,v} W[k][c][u][v] xpad[n][c][i s + u][j s + v] with its loops over the taps (u, v)
// outside and the channels c inside each einsum; the Numba backend orders its rows (u, v, c)
// instead, because it copies the image channels-last so that a window row is contiguous.
//
// Launch geometry, common to the convolution kernels: blocks of blockDim.x threads along the fastest axis
// (output or input pixels), gridDim.y and gridDim.z index the two leading axes, so a thread
// finds its (channel, image) without any division and its pixel with one. A map of more than
// blockDim.x pixels takes several blocks, the last one partly idle.
// Sizes are int (the wrapper checks each fits, with room for the last block's idle threads);
// offsets into the large arrays are long long.

// im2col: the patches of eq. (12). Thread (n, c, p) writes the kh * kw rows of channel c at
// column n * P + p; for a fixed tap (u, v) neighbouring threads write neighbouring addresses.
// grid = (ceil(Ho * Wo / blockDim.x), C, N)
template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ col, int N, int C, int H, int W,
                       int kh, int kw, int stride, int pad, int Ho, int Wo)
{
    const int P = Ho * Wo;
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= P) return;
    const int c = blockIdx.y, n = blockIdx.z;
    const int i = p / Wo, j = p - i * Wo;
    const int y0 = i * stride - pad, x0 = j * stride - pad;
    const T* xc = x + ((long long)n * C + c) * H * W;
    const long long NP = (long long)N * P;
    T* out = col + (long long)c * kh * kw * NP + (long long)n * P + p;
    for (int u = 0; u < kh; ++u) {
        const int y = y0 + u;
        const bool row_inside = 0 <= y && y < H;
        for (int v = 0; v < kw; ++v) {
            const int xx = x0 + v;
            *out = (row_inside && 0 <= xx && xx < W) ? xc[y * W + xx] : T(0);
            out += NP;
        }
    }
}

// col2im: the top-down deconvolution of eq. (16) after its GEMM. Each input pixel gathers
// the column entries of every (filter copy, tap) that covers it, so no two threads write the
// same address and no atomics are needed. Tap u covers row y from output row
// i = (y + pad - u) / stride when that division is exact: u runs over one residue class
// modulo stride, and i decreases as u grows.
// grid = (ceil(H * W / blockDim.x), C, N)
template <typename T>
__global__ void col2im(const T* __restrict__ col, T* __restrict__ x, int N, int C, int H, int W,
                       int kh, int kw, int stride, int pad, int Ho, int Wo)
{
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= H * W) return;
    const int c = blockIdx.y, n = blockIdx.z;
    const int y = q / W, xx = q - y * W;
    const int yp = y + pad, xp = xx + pad;
    const int P = Ho * Wo;
    const long long NP = (long long)N * P;
    const T* col_n = col + (long long)n * P;
    T acc = T(0);
    for (int u = yp % stride; u < kh; u += stride) {
        const int i = (yp - u) / stride;
        if (i < 0) break;
        if (i >= Ho) continue;
        for (int v = xp % stride; v < kw; v += stride) {
            const int j = (xp - v) / stride;
            if (j < 0) break;
            if (j >= Wo) continue;
            acc += col_n[((long long)(c * kh + u) * kw + v) * NP + i * Wo + j];
        }
    }
    x[((long long)n * C + c) * H * W + q] = acc;
}

// bias_relu: the end of one bottom-up layer, eqs. (13)-(14). Reads the channel-major GEMM
// output Y (K, N * P), adds the bias and writes the ReLU response F and the activation
// pattern delta, both batch-major (N, K, P) like every array the model sees.
// grid = (ceil(P / blockDim.x), K, N)
template <typename T>
__global__ void bias_relu(const T* __restrict__ Y, const T* __restrict__ b, T* __restrict__ F,
                          bool* __restrict__ delta, int N, int K, int P)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= P) return;
    const int k = blockIdx.y, n = blockIdx.z;
    const T pre = Y[((long long)k * N + n) * P + p] + b[k];
    const bool active = pre > T(0);
    const long long o = ((long long)n * K + k) * P + p;
    delta[o] = active;
    F[o] = active ? pre : T(0);
}

// swap_leading_axes: dst[b][a][p] = src[a][b][p] for src of shape (A, B, P). Moves the
// top-down coefficients G (N, K, P) into the channel-major layout of the GEMMs and the plain
// responses of conv2d back again.
// grid = (ceil(P / blockDim.x), B, A)
template <typename T>
__global__ void swap_leading_axes(const T* __restrict__ src, T* __restrict__ dst, int A, int B,
                                  int P)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= P) return;
    const int b = blockIdx.y, a = blockIdx.z;
    dst[((long long)b * A + a) * P + p] = src[((long long)a * B + b) * P + p];
}

// ----------------------------------------------------------------------------- the noise
//
// normal: Gaussian white noise Z ~ N(0, 1) for the Langevin step of eq. (19), a function of a
// 64-bit seed and the element index alone, so that a run's noise is fixed by the seeds the
// caller draws from its NumPy Generator: no generator state lives on the device.
//
// Element pair t (elements 2t and 2t + 1 of the C-order output) comes from one call of the
// counter-based generator Philox4x32-10 (Salmon et al., SC 2011) with counter
// (t mod 2^32, t / 2^32, 0, 0) and key (seed mod 2^32, seed / 2^32): its four 32-bit words
// a, b, c, d give two 53-bit uniforms
//
//     u1 = ((a >> 5) * 2^26 + (b >> 6) + 1) / 2^53  in (0, 1],
//     u2 = ((c >> 5) * 2^26 + (d >> 6)) / 2^53      in [0, 1),
//
// and the Box-Muller transform, in double for both output types,
//
//     Z[2t] = sqrt(-2 log u1) cos(2 pi u2),  Z[2t + 1] = sqrt(-2 log u1) sin(2 pi u2).
//
// A float output is the double value rounded, so the two types share one stream.

#define GCN_PHILOX_M0 0xD2511F53u
#define GCN_PHILOX_M1 0xCD9E8D57u
#define GCN_PHILOX_W0 0x9E3779B9u
#define GCN_PHILOX_W1 0xBB67AE85u

// Philox4x32-10: ten rounds of two 32 x 32 -> 64-bit products, the key bumped by the Weyl
// constants between rounds. The product is written in plain C++ (NVCC makes it one mul.wide)
// so that the CPU test harness runs the same lines.
__device__ inline void philox4x32_10(unsigned int ctr[4], unsigned int k0, unsigned int k1)
{
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += GCN_PHILOX_W0;
            k1 += GCN_PHILOX_W1;
        }
        const unsigned long long p0 = (unsigned long long)GCN_PHILOX_M0 * ctr[0];
        const unsigned long long p1 = (unsigned long long)GCN_PHILOX_M1 * ctr[2];
        const unsigned int hi0 = (unsigned int)(p0 >> 32), lo0 = (unsigned int)p0;
        const unsigned int hi1 = (unsigned int)(p1 >> 32), lo1 = (unsigned int)p1;
        ctr[0] = hi1 ^ ctr[1] ^ k0;
        ctr[1] = lo1;
        ctr[2] = hi0 ^ ctr[3] ^ k1;
        ctr[3] = lo0;
    }
}

// grid = (ceil(ceil(n / 2) / blockDim.x), 1, 1): one thread per element pair
template <typename T>
__global__ void normal(T* __restrict__ out, long long n, unsigned int key0, unsigned int key1)
{
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (2 * t >= n) return;
    unsigned int r[4] = {(unsigned int)t, (unsigned int)(t >> 32), 0u, 0u};
    philox4x32_10(r, key0, key1);
    const double two_pow_26 = 67108864.0, two_pow_minus_53 = 1.0 / 9007199254740992.0;
    const double u1 = ((r[0] >> 5) * two_pow_26 + (r[1] >> 6) + 1.0) * two_pow_minus_53;
    const double u2 = ((r[2] >> 5) * two_pow_26 + (r[3] >> 6)) * two_pow_minus_53;
    const double radius = sqrt(-2.0 * log(u1));
    const double angle = 6.283185307179586 * u2;
    out[2 * t] = T(radius * cos(angle));
    if (2 * t + 1 < n) out[2 * t + 1] = T(radius * sin(angle));
}
