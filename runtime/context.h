/*
 * The context object, shared by context.c, compile.c and device.c. Private.
 */
#ifndef MRT_RUNTIME_CONTEXT_H
#define MRT_RUNTIME_CONTEXT_H

#include "../cache/store.h"
#include "loader.h"
#include "runtime.h"

struct mrt_context {
    mrt_context_options opts;
    char store_path[4096];
    mrt__store *store;
    /* The writable overlay (runtime/overlay.c), NULL without one: lookups read the base store
     * first, then the overlay; every write goes to the overlay. */
    char overlay_path[4096];
    mrt__store *overlay;
    /* XXH64 of the cubins the driver refused during the current load (runtime/overlay.c):
     * lookups pass over them and evict them. Empty outside mrt__module_load_checked. */
    uint64_t refused[4];
    size_t refused_count;
    /* The row the last store hit came from, to explain a refusal. */
    mrt__row_meta last_hit;
    mrt__err err;
    char errbuf[MRT_ERRMSG_SIZE];
    mrt_stats stats;

    /* Device side, opened on first GPU use. device_status is the outcome of that first try;
     * a failure is kept with its message so later calls answer the same. */
    int device_tried;
    mrt_status device_status;
    char device_errmsg[MRT_ERRMSG_SIZE];
    const mrt__driver_api *driver;
    CUdevice cu_device;
    CUcontext cu_context; /* the device's primary context, retained */
    /* Identity of that context for the module table. The driver may hand out the same
     * CUcontext handle again after the primary context was destroyed (every retain released)
     * and recreated, so the process-unique cuCtxGetId value is used where the driver has it. */
    unsigned long long cu_context_id;
    mrt_device_info info;

    /* Configurations whose stream-K cubin was neither in the store nor compilable (no
     * NVRTC), and when that was found (mrt__now_ms): their tail launches take the plain
     * kernel without asking the store again for a while (mrt__marlin_sk_function). */
    struct {
        mrt_config config;
        double since_ms;
    } sk_absent[8];
    int sk_absent_count;

    /* The autotuner's winner cache and statistics (runtime/tune.c), made on first use. */
    struct mrt__tune_state *tune;
};

/* Fetch the cubin for kernel+cfg on sm_<arch>: store first, NVRTC on a miss.
 * *blob and *entry are malloc'd. */
mrt_status mrt__cubin_fetch(mrt_context *ctx, int arch, const mrt__kernel *kernel, const mrt_config *cfg,
                            void **blob, size_t *size, char **entry, mrt_cubin_origin *origin);

/* The stores lookups read, base first then overlay; returns how many (0 to 2). */
int mrt__ctx_read_stores(mrt_context *ctx, mrt__store *stores[2]);

/* The store new rows go to: the overlay when there is one, else the base store unless it is
 * read-only; NULL when nothing is writable (the caller keeps its result in memory and counts
 * that). Tuning records follow the same rule as cubins. */
mrt__store *mrt__ctx_write_store(mrt_context *ctx);

/* Look a cubin up by exact key (by_variant 0) or by variant (1) in the base store, then in the
 * overlay, passing over (and evicting) blobs in ctx->refused. Same outputs as mrt__store_get;
 * CORRUPT only when no store had a good row and one had a damaged one. */
mrt_status mrt__ctx_store_get(mrt_context *ctx, const uint8_t id[16], int by_variant, void **blob, size_t *size,
                              char **entry, mrt__lookup *result, mrt__err *err);

/* Insert a compiled cubin into mrt__ctx_write_store(ctx); with no writable store it is only
 * counted (mrt_stats.store_writes_skipped), which is not an error. */
mrt_status mrt__ctx_store_put(mrt_context *ctx, const uint8_t key[16], const uint8_t variant[16],
                              const mrt__key_inputs *in, const char *entry, double compile_ms, const void *blob,
                              size_t size, mrt__err *err);

/* cuModuleLoadData of *blob into the current CUDA context. When the driver refuses the image
 * (CUDA_ERROR_INVALID_IMAGE, NO_BINARY_FOR_GPU, UNSUPPORTED_PTX_VERSION, INVALID_PTX) the cubin
 * is evicted from the store and fetched again (another stored row, or an NVRTC compile), and
 * *blob, *size and *entry replaced; without NVRTC the error says what to install or warm. The
 * caller has pushed the device's context. */
mrt_status mrt__module_load_checked(mrt_context *ctx, int arch, const mrt__kernel *kernel, const mrt_config *cfg,
                                    void **blob, size_t *size, char **entry, CUmodule *module);

/* Make the device's primary context current on this thread for a sequence of driver calls. */
mrt_status mrt__ctx_push(mrt_context *ctx);
void mrt__ctx_pop(mrt_context *ctx);

#endif /* MRT_RUNTIME_CONTEXT_H */
