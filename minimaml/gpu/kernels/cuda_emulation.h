// cuda_emulation.h: run the kernels in kernels/*.cu on a CPU with an ordinary C++20 compiler.
//
// Not a simulator, just CUDA's execution model spelled out in standard C++, so the *same* kernel
// source can be compiled with g++/clang++, called from Python (minimaml/gpu/emulated.py) and
// stepped through in a debugger:
//
//   CUDA                      here
//   one thread                one std::thread (blockDim.x·y·z of them per launch)
//   threadIdx, blockIdx       thread_local values, set by launch() before each block
//   blockDim, gridDim         plain globals, set by launch()
//   __syncthreads()           std::barrier::arrive_and_wait() across the block's threads
//   __shared__                `static`: one copy shared by all threads (see below)
//   atomicAdd(float*, v)      std::atomic_ref<float>::fetch_add
//   __global__, __device__    nothing / inline
//
// Blocks run one after another: each std::thread loops over the blocks of the grid, and a barrier
// at the end of every block keeps any thread from starting block b+1 while another is still in
// block b. That is exactly what makes `#define __shared__ static` right: at any moment the threads
// all work on the same block, so one static copy of each __shared__ array *is* that block's
// shared memory (its contents are left over from the previous block, as uninitialised shared
// memory may be on a GPU; the kernels never read before they write). A mutex serialises launches,
// since the statics belong to the process. Real GPUs run blocks concurrently; a kernel that is
// correct in CUDA (blocks independent, atomics for cross-block sums) is correct here too.
//
// Limits: 1-D, 2-D and 3-D grids/blocks are supported; no warp intrinsics (__shfl*, __ballot*),
// no dynamic shared memory, no cooperative groups; every __syncthreads() must be reached by every
// thread of the block (as in CUDA; here a miss deadlocks instead of being undefined).
#pragma once

#include <atomic>
#include <barrier>
#include <cmath>
#include <latch>
#include <math.h>
#include <mutex>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

namespace cuda_emulation {
inline std::barrier<>* block_barrier = nullptr;   // the running launch's barrier
inline std::mutex launch_mutex;
}  // namespace cuda_emulation

inline void __syncthreads() { cuda_emulation::block_barrier->arrive_and_wait(); }

inline float atomicAdd(float* address, float value)
{
    return std::atomic_ref<float>(*address).fetch_add(value, std::memory_order_relaxed);
}

namespace cuda_emulation {

// kernel<<<grid, block>>>(args...): blocks in order, one std::thread per CUDA thread.
template <class Kernel, class... Args>
void launch(dim3 grid, dim3 block, Kernel kernel, Args... args)
{
    std::lock_guard<std::mutex> lock(launch_mutex);
    const unsigned threads = block.x * block.y * block.z;
    std::barrier<> barrier(threads);
    block_barrier = &barrier;
    gridDim = grid;
    blockDim = block;
    // Threads wait at `start` until all exist: if creating one fails, none has run a kernel yet,
    // so they can all be told to stop instead of waiting forever at a barrier.
    std::latch start(1);
    bool cancelled = false;
    auto cuda_thread = [&](unsigned tid) {
        start.wait();
        if (cancelled) return;
        threadIdx = dim3(tid % block.x, tid / block.x % block.y, tid / (block.x * block.y));
        for (unsigned bz = 0; bz < grid.z; ++bz)
            for (unsigned by = 0; by < grid.y; ++by)
                for (unsigned bx = 0; bx < grid.x; ++bx) {
                    blockIdx = dim3(bx, by, bz);
                    kernel(args...);
                    barrier.arrive_and_wait();   // the block is over for every thread
                }
    };
    std::vector<std::jthread> pool;
    pool.reserve(threads);
    try {
        for (unsigned tid = 0; tid < threads; ++tid) pool.emplace_back(cuda_thread, tid);
    } catch (...) {
        cancelled = true;
        start.count_down();
        pool.clear();   // joins the threads that did start
        block_barrier = nullptr;
        throw;
    }
    start.count_down();
    pool.clear();   // joins: the launch is over when every thread has finished every block
    block_barrier = nullptr;
}

}  // namespace cuda_emulation
