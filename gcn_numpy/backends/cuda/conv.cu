// CUDA kernels of the CuPy backend (gcn_numpy/backends/cupy_gpu.py).
//
// A convolution layer is computed as one matrix product by cuBLAS between the filters and a
// "column" matrix of image patches (im2col); these kernels do everything around that product.
// Each is a template instantiated for float and double through RawModule's name_expressions
// ("im2col<float>", ...). No headers are included, so NVRTC compiles this file as it is.
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
// Launch geometry, common to all kernels: blocks of blockDim.x threads along the fastest axis
// (output or input pixels), gridDim.y and gridDim.z index the two leading axes, so a thread
// finds its (channel, image) without any division and its pixel with one.
// Sizes are int (the wrapper checks each fits); offsets into the large arrays are long long.

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
