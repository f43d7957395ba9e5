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
};

/* Fetch the cubin for kernel+cfg on sm_<arch>: store first, NVRTC on a miss.
 * *blob and *entry are malloc'd. */
mrt_status mrt__cubin_fetch(mrt_context *ctx, int arch, const mrt__kernel *kernel, const mrt_config *cfg,
                            void **blob, size_t *size, char **entry, mrt_cubin_origin *origin);

/* Make the device's primary context current on this thread for a sequence of driver calls. */
mrt_status mrt__ctx_push(mrt_context *ctx);
void mrt__ctx_pop(mrt_context *ctx);

#endif /* MRT_RUNTIME_CONTEXT_H */
