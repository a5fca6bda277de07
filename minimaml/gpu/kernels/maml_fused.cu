// maml_fused.cu: the MAML loss and second-order meta-gradient of a whole meta-batch in one launch.
//
// This is minimaml's "hvp" route for an MLP with MSE written for a GPU, in the same order and with
// the same names: inner_loop and walk_back (minimaml/meta/inner.py) over the dense and activation
// layers' four passes (minimaml/fastpath/layers.py). Read them side by side. For one task (K points, layers l = 0..L−1):
//
//     forward      z_l = h_l W_l + b_l,   h_{l+1} = σ(z_l),   out = z_{L−1},   h_0 = x
//     loss         L = 1/(K m) Σ (out − y)²                       (m = output size)
//     backward     δ_{L−1} = 2/(K m) (out − y)
//                  ∇W_l = h_lᵀ δ_l,   ∇b_l = Σ_k δ_l,   dh_l = δ_l W_lᵀ,   δ_{l−1} = σ'(z_{l−1}) ⊙ dh_l
//     R-forward    R{z_l} = R{h_l} W_l + h_l V_l + v_l,   R{h_{l+1}} = σ'(z_l) ⊙ R{z_l},   R{h_0} = 0
//     R-backward   R{δ_{L−1}} = 2/(K m) R{out}
//                  R{∇W_l} = h_lᵀ R{δ_l} + R{h_l}ᵀ δ_l,   R{∇b_l} = Σ_k R{δ_l}
//                  R{dh_l} = R{δ_l} W_lᵀ + δ_l V_lᵀ
//                  R{δ_{l−1}} = σ'(z_{l−1}) ⊙ R{dh_l} + σ''(z_{l−1}) ⊙ R{z_{l−1}} ⊙ dh_l
//
// and the meta-gradient (H_k = ∇²L_support(θ_k), R{∇L} along v = g is H_k g):
//
//     θ_0 = θ;   θ_{k+1} = θ_k − α ∇L_support(θ_k),  k = 0..S−1
//     g ← ∇L_query(θ_S);   for k = S−1..0:  g ← g − α H_k g;     meta-grad = 1/T Σ_t g_t
//
// GPU layout: ONE THREAD BLOCK PER TASK. Each block copies θ and its task's support and query
// points into shared memory, runs the S inner steps (forward, backward, update), takes the query
// loss and gradient, walks back through the steps with one R-operator pass per step, and adds
// g / T and L_query / T into the outputs with atomicAdd (the reduction over tasks). The meta-batch
// is one launch; the caller zeroes meta_grad and meta_loss first.
//
// Memory: θ_k is kept, not recomputed. The walk back needs θ_0..θ_{S−1}; the block writes θ_k to
// its own slice of a global workspace before step k updates θ in place, and reloads it on the way
// back (one coalesced P-float copy per step; workspace (T, S·P) floats, no limit on S). The
// working copies of θ and g (2P floats) live in shared memory when they fit the 48 KB static
// budget (MM_PARAMS_IN_SHARED=1, e.g. 1-40-40-1: 2·1761 floats = 14 KB), otherwise in two more
// workspace slices (MM_PARAMS_IN_SHARED=0). Activations, deltas and their R-versions for the
// K points always live in shared memory; their size is what limits K for a given network.
//
// Every loop below hands out work as "element idx to thread idx mod blockDim.x", and every pass
// ends with __syncthreads(), so any block size up to MM_THREADS works.
// No warp intrinsics: the same source runs on a CPU through kernels/cuda_emulation.h.
//
// Configuration (compile-time; minimaml/gpu/_source.py sets and checks all of them; these
// defaults are the MAML paper's sinusoid network, so `nvcc -ptx kernels/maml_fused.cu` works):
//   MM_LAYERS       number of weight layers L, 1..4
//   MM_SIZE0..4     layer widths sizes[0..L], each 1..64 (unused ones 0)
//   MM_TANH         1: σ = tanh, 0: σ = ReLU
//   MM_K_SUPPORT    support points per task K
//   MM_K_QUERY      query points per task Kq
//   MM_THREADS      threads per block (for __launch_bounds__)
//   MM_PARAMS_IN_SHARED  1: θ and g in shared memory, 0: in the global workspace

#ifndef MM_LAYERS
#define MM_LAYERS 3
#define MM_SIZE0 1
#define MM_SIZE1 40
#define MM_SIZE2 40
#define MM_SIZE3 1
#endif
#ifndef MM_SIZE1
#define MM_SIZE1 0
#endif
#ifndef MM_SIZE2
#define MM_SIZE2 0
#endif
#ifndef MM_SIZE3
#define MM_SIZE3 0
#endif
#ifndef MM_SIZE4
#define MM_SIZE4 0
#endif
#ifndef MM_TANH
#define MM_TANH 0
#endif
#ifndef MM_K_SUPPORT
#define MM_K_SUPPORT 10
#endif
#ifndef MM_K_QUERY
#define MM_K_QUERY 10
#endif
#ifndef MM_THREADS
#define MM_THREADS 256
#endif
#ifndef MM_PARAMS_IN_SHARED
#define MM_PARAMS_IN_SHARED 1
#endif

namespace mm {

// ---- Sizes and the flat θ layout: θ = concat(W_0.ravel(), b_0, W_1.ravel(), b_1, ...) -------------
constexpr int kLayers = MM_LAYERS;

__host__ __device__ constexpr int width(int l)   // sizes[l]
{
    return l == 0 ? MM_SIZE0 : l == 1 ? MM_SIZE1 : l == 2 ? MM_SIZE2 : l == 3 ? MM_SIZE3 : MM_SIZE4;
}

__host__ __device__ constexpr int param_offset(int l)   // where W_l starts; b_l follows W_l
{
    int p = 0;
    for (int j = 0; j < l; ++j) p += width(j) * width(j + 1) + width(j + 1);
    return p;
}

__host__ __device__ constexpr int width_sum(int l)   // sizes[0] + ... + sizes[l−1]
{
    int s = 0;
    for (int j = 0; j < l; ++j) s += width(j);
    return s;
}

constexpr int kP = param_offset(kLayers);                        // number of parameters P
constexpr int kIn = width(0);
constexpr int kOut = width(kLayers);
constexpr int kKs = MM_K_SUPPORT;
constexpr int kKq = MM_K_QUERY;
constexpr int kK = kKs > kKq ? kKs : kKq;                        // rows of the activation buffers
constexpr int kActs = kK * width_sum(kLayers + 1);                 // h_0..h_L for kK points
constexpr bool kParamsInShared = MM_PARAMS_IN_SHARED != 0;

static_assert(kLayers >= 1 && kLayers <= 4, "MM_LAYERS must be 1..4");
static_assert(width(0) >= 1 && width(0) <= 64 && width(1) >= 1 && width(1) <= 64 &&
              (kLayers < 2 || (width(2) >= 1 && width(2) <= 64)) &&
              (kLayers < 3 || (width(3) >= 1 && width(3) <= 64)) &&
              (kLayers < 4 || (width(4) >= 1 && width(4) <= 64)),
              "layer widths MM_SIZE0..MM_SIZE<L> must be 1..64");
static_assert(kKs >= 1 && kKq >= 1, "MM_K_SUPPORT and MM_K_QUERY must be >= 1");

// ---- Shared memory of the block (one task) ----------------------------------------------------
// s_h holds h_0..h_L back to back, h_l as a (K, sizes[l]) row-major matrix; h_L is `out`.
// s_delta holds δ_l = ∂L/∂z_l in the slot of z_l's result h_{l+1} (slot 0 unused), so δ_l and
// h_{l+1} share offsets. s_rh, s_rdelta: R{h_l} (R{h_L} = R{out}) and R{δ_l}, same layout.
__shared__ float s_h[kActs];
__shared__ float s_rh[kActs];
__shared__ float s_delta[kActs];
__shared__ float s_rdelta[kActs];
__shared__ float s_xs[kKs * kIn], s_ys[kKs * kOut];   // this task's support set
__shared__ float s_xq[kKq * kIn], s_yq[kKq * kOut];   // and query set
__shared__ float s_params[kParamsInShared ? 2 * kP : 1];   // θ then g, when they fit (else unused)
__shared__ float s_loss;

// What ptxas reports as "smem" (an unused s_params placeholder is dropped by the compiler).
constexpr int kSharedBytes =
    4 * (4 * kActs + kKs * (kIn + kOut) + kKq * (kIn + kOut) + (kParamsInShared ? 2 * kP : 0) + 1);
static_assert(kSharedBytes <= 48 * 1024, "over the 48 KB of static shared memory per block");

__device__ __forceinline__ float* h(int l) { return s_h + kK * width_sum(l); }
__device__ __forceinline__ float* rh(int l) { return s_rh + kK * width_sum(l); }
__device__ __forceinline__ float* delta(int l) { return s_delta + kK * width_sum(l + 1); }
__device__ __forceinline__ float* rdelta(int l) { return s_rdelta + kK * width_sum(l + 1); }

// ---- The activation, written in terms of its output h = σ(z), which is what we keep ---------------
// ReLU is z · [z > 0], exactly as fastpath/layers.py's Activation computes it, and not fmaxf(z, 0): fmaxf
// returns 0 for a NaN z, so a NaN in the data would vanish here (finite loss, NaN gradient) while
// the NumPy routes return NaN. With the product, NaN stays NaN and −inf gives NaN, as in NumPy.
__device__ __forceinline__ float sigma(float z) { return MM_TANH ? tanhf(z) : z * (z > 0.0f ? 1.0f : 0.0f); }
// σ'(z): ReLU [z > 0] = [h > 0] (also for NaN and ±inf z); tanh 1 − h².
__device__ __forceinline__ float sigma_slope(float h) { return MM_TANH ? 1.0f - h * h : (h > 0.0f ? 1.0f : 0.0f); }
// σ''(z) R{z} for tanh: −2 h σ'(z) R{z} = −2 h R{h}. (ReLU has σ'' = 0: its callers add no term at
// all, as fastpath/layers.py does, since 0 · dh would turn an infinite dh into NaN.)
__device__ __forceinline__ float tanh_curve(float h, float Rh) { return -2.0f * h * Rh; }

// ---- Passes. Called by every thread of the block; each ends with __syncthreads() -----------------
// (except block_copy, whose callers sync). How they map onto the NumPy route (fastpath/, meta/inner.py):
//   forward<false>            Network.forward (Dense.forward, Activation.forward per layer)
//   forward<true>             forward + Network.r_forward (the R-forward rides along in the same loops)
//   output_delta              MSEHead.loss_and_delta: δ_{L−1} = 2/(K m) (out − y)  (and R{δ_{L−1}}, the loss)
//   backward<kInnerStep>      Network.backward, then θ_k − α grad  (one step of inner_loop)
//   backward<kQueryGrad>      Network.backward at θ_S on the query set: g = ∇L_query(θ_S)
//   backward<kWalkBack>       backward + Network.r_backward = TaskLosses.hvp, then g −= α H g (walk_back)

// Copy n floats src -> dst with the whole block (θ in and out of the workspace, the task's points).
__device__ void block_copy(float* dst, const float* src, int n)
{
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

// Forward pass over n points x (n, sizes[0]) at θ: fills h_0..h_L. With kR, the R-forward pass
// along v rides along in the same loops and fills R{h_0..h_L}.
template <bool kR>
__device__ void forward(const float* theta, const float* v, const float* x, int n)
{
    // R{h_0} = 0 (the data do not move), so R{h_0} is never stored and no pass multiplies by it:
    // 0 · W would turn an infinite weight into NaN, where the NumPy route adds no such term at all.
    for (int i = threadIdx.x; i < n * kIn; i += blockDim.x) h(0)[i] = x[i];
    __syncthreads();
#pragma unroll
    for (int l = 0; l < kLayers; ++l) {
        const int fan_in = width(l), fan_out = width(l + 1);
        const float* W = theta + param_offset(l);
        const float* b = W + fan_in * fan_out;
        const float* V = kR ? v + param_offset(l) : nullptr;  // v's blocks (V_l, v_l)
        const float* vb = kR ? V + fan_in * fan_out : nullptr;
        const bool last = l == kLayers - 1;
        for (int idx = threadIdx.x; idx < n * fan_out; idx += blockDim.x) {
            const int k = idx / fan_out, j = idx % fan_out;   // point k, unit j
            const float* hk = h(l) + k * fan_in;
            const float* Rhk = rh(l) + k * fan_in;
            float z = b[j];                                   // z_l = h_l W_l + b_l
            float Rz = kR ? vb[j] : 0.0f;                     // R{z_l} = R{h_l} W_l + h_l V_l + v_l
            for (int i = 0; i < fan_in; ++i) {
                const float w = W[i * fan_out + j];
                z += hk[i] * w;
                if (kR) Rz += hk[i] * V[i * fan_out + j];
                if (kR && l > 0) Rz += Rhk[i] * w;            // R{h_0} = 0
            }
            const float h_next = last ? z : sigma(z);         // out = z_{L−1}: no σ on the last layer
            h(l + 1)[idx] = h_next;
            if (kR) rh(l + 1)[idx] = last ? Rz : sigma_slope(h_next) * Rz;   // R{h_{l+1}} = σ'(z_l) R{z_l}
        }
        __syncthreads();
    }
}

// δ_{L−1} = 2/(n m) (out − y) and, with kR, R{δ_{L−1}} = 2/(n m) R{out}. With want_loss,
// s_loss = L = 1/(n m) Σ (out − y)² as well (one thread adds n·m numbers: small next to the rest).
template <bool kR>
__device__ void output_delta(const float* y, int n, bool want_loss)
{
    const float scale = 2.0f / (n * kOut);
    const float* out = h(kLayers);
    for (int i = threadIdx.x; i < n * kOut; i += blockDim.x) {
        delta(kLayers - 1)[i] = scale * (out[i] - y[i]);
        if (kR) rdelta(kLayers - 1)[i] = scale * rh(kLayers)[i];
    }
    if (want_loss && threadIdx.x == 0) {
        float sum = 0.0f;
        for (int i = 0; i < n * kOut; ++i) sum += (out[i] - y[i]) * (out[i] - y[i]);
        s_loss = sum / (n * kOut);
    }
    __syncthreads();
}

// What the backward pass does with each entry of ∇L (or R{∇L} = H v) as soon as it has it:
enum class Use {
    kInnerStep,   // θ ← θ − α ∇L            (the inner loop's update, in place)
    kQueryGrad,   // g ← ∇L                   (the query gradient that starts the walk back)
    kWalkBack,    // g ← g − α H g = g − α R{∇L} along v = g
};

// Backward pass from δ_{L−1} (and R-backward from R{δ_{L−1}} when use == kWalkBack), layer by
// layer from the top. Per layer: first dh_l and δ_{l−1} (they read W_l and V_l), then, after a
// barrier, ∇W_l, ∇b_l. The barrier is what makes the in-place update safe: once δ_{l−1} is known
// nothing reads W_l (or V_l = g_l) again, so θ_l (or g_l) can be overwritten.
template <Use use>
__device__ void backward(float* theta, float* g, int n, float inner_lr)
{
    constexpr bool kR = use == Use::kWalkBack;
    const float* v = g;   // the direction of the R pass
#pragma unroll
    for (int l = kLayers - 1; l >= 0; --l) {
        const int fan_in = width(l), fan_out = width(l + 1);
        float* W = theta + param_offset(l);
        const float* V = v + param_offset(l);
        if (l > 0) {   // dh_l = δ_l W_lᵀ,  δ_{l−1} = σ'(z_{l−1}) ⊙ dh_l   (and their R-versions)
            for (int idx = threadIdx.x; idx < n * fan_in; idx += blockDim.x) {
                const int k = idx / fan_in, i = idx % fan_in;   // point k, input unit i
                const float* dk = delta(l) + k * fan_out;
                const float* Rdk = rdelta(l) + k * fan_out;
                float dh = 0.0f, Rdh = 0.0f;               // R{dh_l} = R{δ_l} W_lᵀ + δ_l V_lᵀ
                for (int j = 0; j < fan_out; ++j) {
                    const float w = W[i * fan_out + j];
                    dh += dk[j] * w;
                    if (kR) Rdh += Rdk[j] * w + dk[j] * V[i * fan_out + j];
                }
                const float hl = h(l)[idx];
                delta(l - 1)[idx] = sigma_slope(hl) * dh;
                if (kR) {
                    float Rd = sigma_slope(hl) * Rdh;
                    if (MM_TANH) Rd += tanh_curve(hl, rh(l)[idx]) * dh;   // ReLU: σ'' = 0, no term
                    rdelta(l - 1)[idx] = Rd;
                }
            }
            __syncthreads();
        }
        // ∇W_l = h_lᵀ δ_l (entry i, j) and ∇b_l = Σ_k δ_l (entry j): W_l and b_l are adjacent in θ,
        // so entry idx of this layer's block is θ[param_offset(l) + idx].
        for (int idx = threadIdx.x; idx < (fan_in + 1) * fan_out; idx += blockDim.x) {
            const bool is_bias = idx >= fan_in * fan_out;
            const int i = idx / fan_out, j = idx % fan_out;   // for a bias, i == fan_in
            float grad = 0.0f;
            for (int k = 0; k < n; ++k) {
                const float hki = is_bias ? 1.0f : h(l)[k * fan_in + i];
                if (kR) {                                  // R{∇W_l} = h_lᵀ R{δ_l} + R{h_l}ᵀ δ_l
                    grad += hki * rdelta(l)[k * fan_out + j];
                    // R{h_0} = 0, and a bias's input 1 does not move: no second term for those.
                    if (l > 0 && !is_bias) grad += rh(l)[k * fan_in + i] * delta(l)[k * fan_out + j];
                } else {
                    grad += hki * delta(l)[k * fan_out + j];
                }
            }
            const int p = param_offset(l) + idx;
            if (use == Use::kInnerStep) theta[p] -= inner_lr * grad;
            if (use == Use::kQueryGrad) g[p] = grad;
            if (use == Use::kWalkBack) g[p] -= inner_lr * grad;
        }
        __syncthreads();
    }
}

}  // namespace mm

// ---- The kernel: grid = T blocks (one per task), block = MM_THREADS threads -----------------------
//
// theta0 (P,); xs (T, K, in), ys (T, K, out), xq (T, Kq, in), yq (T, Kq, out), all float32,
// C-contiguous. workspace: T·(S + (MM_PARAMS_IN_SHARED ? 0 : 2))·P floats, uninitialised.
// Outputs: task_loss (T,) query loss per task; meta_loss (1,) += mean over tasks;
// meta_grad (P,) += mean over tasks of g (zero both before the launch).
extern "C" __global__ void __launch_bounds__(MM_THREADS)
maml_fused_meta_grad(const float* __restrict__ theta0,
                     const float* __restrict__ xs, const float* __restrict__ ys,
                     const float* __restrict__ xq, const float* __restrict__ yq,
                     float inner_lr, int steps, int first_order, int num_tasks,
                     float* __restrict__ workspace,
                     float* __restrict__ task_loss, float* __restrict__ meta_loss,
                     float* __restrict__ meta_grad)
{
    using namespace mm;
    const int t = blockIdx.x;   // this block's task
    const long long slots = steps + (kParamsInShared ? 0 : 2);
    float* path = workspace + (long long)t * slots * kP;   // θ_0..θ_{S−1}, one P-slot each
    float* theta = kParamsInShared ? s_params : path + (long long)steps * kP;   // θ_k, updated in place
    float* g = theta + kP;                                                    // the meta-gradient g

    block_copy(s_xs, xs + (long long)t * kKs * kIn, kKs * kIn);
    block_copy(s_ys, ys + (long long)t * kKs * kOut, kKs * kOut);
    block_copy(s_xq, xq + (long long)t * kKq * kIn, kKq * kIn);
    block_copy(s_yq, yq + (long long)t * kKq * kOut, kKq * kOut);
    block_copy(theta, theta0, kP);                            // θ_0 = θ
    __syncthreads();

    // Inner loop: forward, backward, update. θ_{k+1} = θ_k − α ∇L_support(θ_k).
    for (int k = 0; k < steps; ++k) {
        if (!first_order) block_copy(path + (long long)k * kP, theta, kP);   // keep θ_k for the way back
        forward<false>(theta, nullptr, s_xs, kKs);
        output_delta<false>(s_ys, kKs, false);
        backward<Use::kInnerStep>(theta, g, kKs, inner_lr);
    }

    // Query loss at the adapted parameters and its gradient: g ← ∇L_query(θ_S).
    forward<false>(theta, nullptr, s_xq, kKq);
    output_delta<false>(s_yq, kKq, true);
    backward<Use::kQueryGrad>(theta, g, kKq, inner_lr);

    // Back through the inner steps: g ← (I − α H_k) g, H_k g by one R pass at θ_k along v = g.
    if (!first_order) {
        for (int k = steps - 1; k >= 0; --k) {
            block_copy(theta, path + (long long)k * kP, kP);
            __syncthreads();
            forward<true>(theta, g, s_xs, kKs);
            output_delta<true>(s_ys, kKs, false);
            backward<Use::kWalkBack>(theta, g, kKs, inner_lr);
        }
    }

    // Reduce over tasks: meta-loss and meta-grad are means over the T blocks.
    const float inv_tasks = 1.0f / num_tasks;
    for (int i = threadIdx.x; i < kP; i += blockDim.x) atomicAdd(meta_grad + i, g[i] * inv_tasks);
    if (threadIdx.x == 0) {
        task_loss[t] = s_loss;
        atomicAdd(meta_loss, s_loss * inv_tasks);
    }
}
