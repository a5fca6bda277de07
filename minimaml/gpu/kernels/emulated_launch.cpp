// emulated_launch.cpp: the C entry points of the CPU build of the kernels (see cuda_emulation.h).
//
// minimaml/gpu/emulated.py compiles this file, with the same -DMM_... configuration flags the
// CUDA build gets, into a shared library and calls these functions through ctypes. Each one is
// the `kernel<<<grid, block>>>(...)` line of a CUDA host program; it returns 0, or 1 after
// writing a message into `error` (a C++ exception must not cross into Python).

#include <cstdio>
#include <exception>

#include "cuda_emulation.h"

#include "batched_update.cu"
#include "maml_fused.cu"

namespace {
template <class F>
int guarded(char* error, int error_size, F body)
{
    try {
        body();
        return 0;
    } catch (const std::exception& e) {
        std::snprintf(error, error_size, "%s", e.what());
    } catch (...) {
        std::snprintf(error, error_size, "unknown C++ exception");
    }
    return 1;
}
}  // namespace

extern "C" {

// The configuration this library was built with, so Python can check it loaded the right one.
int mm_num_params() { return mm::kP; }
int mm_shared_bytes() { return mm::kSharedBytes; }

int mm_launch_batched_update(int grid, int threads, const float* theta, const float* grads,
                             float inner_lr, int num_tasks, int num_params, float* theta_out,
                             char* error, int error_size)
{
    return guarded(error, error_size, [&] {
        cuda_emulation::launch(dim3(grid), dim3(threads), batched_update,
                               theta, grads, inner_lr, num_tasks, num_params, theta_out);
    });
}

int mm_launch_maml_fused(int grid, int threads, const float* theta0, const float* xs, const float* ys,
                         const float* xq, const float* yq, float inner_lr, int steps, int first_order,
                         int num_tasks, float* workspace, float* task_loss, float* meta_loss,
                         float* meta_grad, char* error, int error_size)
{
    return guarded(error, error_size, [&] {
        cuda_emulation::launch(dim3(grid), dim3(threads), maml_fused_meta_grad, theta0, xs, ys, xq, yq,
                               inner_lr, steps, first_order, num_tasks, workspace, task_loss,
                               meta_loss, meta_grad);
    });
}

}  // extern "C"
