/*
 * The registry of kernels the library can compile, and how a configuration becomes the
 * template instance NVRTC compiles.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static int reserved_zero(const mrt_config *cfg)
{
    return cfg->reserved[0] == 0 && cfg->reserved[1] == 0;
}

/* dequant_w4<THREADS, GROUP_BLOCKS>: reads threads and group_blocks only. */
static int dequant_name_expression(const mrt_config *cfg, char *buf, size_t size)
{
    return snprintf(buf, size, "dequant_w4<%d, %d>", cfg->threads, cfg->group_blocks);
}

static mrt_status dequant_validate(const mrt_config *cfg, mrt__err *err)
{
    if (cfg->threads != 64 && cfg->threads != 128 && cfg->threads != 256 && cfg->threads != 512)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "dequant_w4: threads = %d; must be 64, 128, 256 or 512",
                         cfg->threads);
    if (cfg->group_blocks != -1 && cfg->group_blocks != 2 && cfg->group_blocks != 4 && cfg->group_blocks != 8)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "dequant_w4: group_blocks = %d; must be -1 (per channel), 2, 4 or 8 (group 32, 64, 128)",
                         cfg->group_blocks);
    if (cfg->thread_m_blocks || cfg->thread_n_blocks || cfg->thread_k_blocks || cfg->stages || !reserved_zero(cfg))
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "dequant_w4: only threads and group_blocks are used; the other fields must be 0");
    return MRT_OK;
}

/* mrt_dequant_w4 launches 256 threads; one instance per group size. */
static mrt_status dequant_default_configs(mrt_config *configs, size_t capacity, size_t *count)
{
    static const int group_blocks[] = {-1, 2, 4, 8};
    *count = sizeof group_blocks / sizeof group_blocks[0];
    for (size_t i = 0; i < *count && i < capacity; i++)
        configs[i] = (mrt_config){.threads = 256, .group_blocks = group_blocks[i]};
    return MRT_OK;
}

/* Every configuration mrt_gemm may pick, over all group sizes, each once. */
static mrt_status marlin_default_configs(mrt_config *configs, size_t capacity, size_t *count)
{
    static const int group_sizes[] = {-1, 32, 64, 128};
    mrt_config all[256];
    size_t total = 0;
    for (size_t g = 0; g < sizeof group_sizes / sizeof group_sizes[0]; g++) {
        size_t n = 0;
        mrt_status rc = mrt_gemm_candidates(group_sizes[g], NULL, 0, &n);
        if (rc != MRT_OK)
            return rc;
        mrt_config *batch = calloc(n ? n : 1, sizeof *batch);
        if (!batch)
            return mrt__fail(mrt__thread_err(), MRT_ERR_OUT_OF_MEMORY, "out of memory listing configurations");
        rc = mrt_gemm_candidates(group_sizes[g], batch, n, &n);
        for (size_t i = 0; rc == MRT_OK && i < n; i++) {
            size_t j = 0;
            while (j < total && memcmp(&all[j], &batch[i], sizeof batch[i]) != 0)
                j++;
            if (j < total)
                continue;
            if (total == sizeof all / sizeof all[0])
                rc = mrt__fail(mrt__thread_err(), MRT_ERR_INTERNAL, "more than %zu GEMM configurations", total);
            else
                all[total++] = batch[i];
        }
        free(batch);
        if (rc != MRT_OK)
            return rc;
    }
    for (size_t i = 0; i < total && i < capacity; i++)
        configs[i] = all[i];
    *count = total;
    return MRT_OK;
}

static const mrt__kernel kernels[] = {
    {MRT_KERNEL_DEQUANT_W4, "dequant_w4.cu", dequant_name_expression, dequant_validate, dequant_default_configs,
     NULL},
    {MRT_KERNEL_MARLIN_W4A16, "marlin_w4a16.cu", mrt__marlin_name_expression, mrt__marlin_validate,
     marlin_default_configs, mrt__marlin_arch_check},
    {MRT_KERNEL_MARLIN_W4A16_SK, "marlin_w4a16.cu", mrt__marlin_sk_name_expression, mrt__marlin_sk_validate,
     mrt__marlin_sk_default_configs, mrt__marlin_arch_check},
};

const mrt__kernel *mrt__kernel_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (strcmp(kernels[i].name, name) == 0)
            return &kernels[i];
    return NULL;
}

const char *mrt_kernel_name(int index)
{
    if (index < 0 || (size_t)index >= sizeof kernels / sizeof kernels[0])
        return NULL;
    return kernels[index].name;
}

const mrt__source *mrt__kernel_source(const mrt__kernel *kernel)
{
    for (size_t i = 0; i < mrt__source_count; i++)
        if (strcmp(mrt__sources[i].file_name, kernel->source_file) == 0)
            return &mrt__sources[i];
    return NULL;
}

void mrt__config_format(const mrt_config *cfg, char *buf, size_t size)
{
    snprintf(buf, size, "t%d.m%d.n%d.k%d.s%d.g%d", cfg->threads, cfg->thread_m_blocks, cfg->thread_n_blocks,
             cfg->thread_k_blocks, cfg->stages, cfg->group_blocks);
}

mrt_status mrt_kernel_default_configs(const char *kernel, mrt_config *configs, size_t capacity, size_t *count)
{
    mrt__err *err = mrt__thread_err();
    if (!count || (capacity && !configs))
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_kernel_default_configs: count is NULL, or configs is "
                                                        "NULL with a non-zero capacity");
    const mrt__kernel *k = mrt__kernel_find(kernel);
    if (!k)
        return mrt__fail(err, MRT_ERR_NOT_FOUND, "unknown kernel \"%s\"", kernel ? kernel : "(null)");
    return k->default_configs(configs, capacity, count);
}

mrt_status mrt__kernel_arch_check(const mrt__kernel *kernel, const mrt_config *cfg, int arch, int *arch_specific,
                                  mrt__err *err)
{
    *arch_specific = 0;
    return kernel->arch_check ? kernel->arch_check(cfg, arch, arch_specific, err) : MRT_OK;
}

mrt_status mrt_config_supports_arch(const char *kernel, const mrt_config *cfg, int arch)
{
    mrt__err *err = mrt__thread_err();
    if (!cfg)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_config_supports_arch: cfg is NULL");
    const mrt__kernel *k = mrt__kernel_find(kernel);
    if (!k)
        return mrt__fail(err, MRT_ERR_NOT_FOUND, "unknown kernel \"%s\"", kernel ? kernel : "(null)");
    mrt_status rc = k->validate(cfg, err);
    if (rc != MRT_OK)
        return rc;
    int arch_specific;
    return mrt__kernel_arch_check(k, cfg, arch, &arch_specific, err);
}
