// batched_update.cu: the first, teaching-size kernel. One inner-loop update for T tasks at once,
//
//     θ'_t = θ − α g_t        θ (P,) shared by all tasks, g (T, P) one gradient per task,
//
// with one CUDA thread per element of the (T, P) result. Thread i of the grid handles row
// t = i / P, column j = i % P, so neighbouring threads touch neighbouring addresses (coalesced)
// and every thread of a task reads the same θ_j row-to-row (served from cache).
//
// Compiles standalone (`nvcc -ptx kernels/batched_update.cu`), through CuPy's RawModule
// (minimaml/gpu/cuda.py) and, with kernels/cuda_emulation.h, with an ordinary C++20 compiler
// (minimaml/gpu/emulated.py). Launch: grid = ceil(T·P / threads) blocks of `threads` threads.

extern "C" __global__ void batched_update(const float* __restrict__ theta,   // (P,)
                                          const float* __restrict__ grads,   // (T, P)
                                          float inner_lr,                    // α
                                          int num_tasks,                     // T
                                          int num_params,                    // P
                                          float* __restrict__ theta_out)     // (T, P)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)num_tasks * num_params) return;   // the last block may be partly idle
    theta_out[i] = theta[i % num_params] - inner_lr * grads[i];
}
