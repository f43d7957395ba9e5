/*
 * From (arch, kernel, configuration) to a cubin: the store first, NVRTC on a miss.
 *
 * The store key covers everything that changes the cubin's bytes (see cache/store.h). When
 * NVRTC is absent the exact key cannot be formed (it includes NVRTC's version), so the lookup
 * falls back to the variant hash: the same source, options and configuration made by any
 * NVRTC. That is what lets a deployment image run from a preloaded store with only the driver.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "context.h"

/* Options given to NVRTC, joined by spaces into the key. No include path on purpose: the
 * kernels must compile on machines that have no CUDA headers. */
#define MRT_NVRTC_OPTION_COUNT 2

static void nvrtc_options(int arch, int arch_specific, char arch_option[32],
                          const char *options[MRT_NVRTC_OPTION_COUNT], char *joined, size_t size)
{
    snprintf(arch_option, 32, "--gpu-architecture=sm_%d%s", arch, arch_specific ? "a" : "");
    options[0] = arch_option;
    options[1] = "-std=c++17";
    snprintf(joined, size, "%s %s", options[0], options[1]);
}

static mrt_status check_arch(const mrt__nvrtc_api *nvrtc, int arch, mrt__err *err)
{
    int count = 0;
    nvrtcResult res = nvrtc->get_num_supported_archs(&count);
    if (res != NVRTC_SUCCESS || count <= 0 || count > 256)
        return mrt__fail(err, MRT_ERR_NO_NVRTC, "nvrtcGetNumSupportedArchs failed: %s",
                         nvrtc->get_error_string(res));
    int archs[256];
    res = nvrtc->get_supported_archs(archs);
    if (res != NVRTC_SUCCESS)
        return mrt__fail(err, MRT_ERR_NO_NVRTC, "nvrtcGetSupportedArchs failed: %s", nvrtc->get_error_string(res));
    for (int i = 0; i < count; i++)
        if (archs[i] == arch)
            return MRT_OK;
    return mrt__fail(err, MRT_ERR_UNSUPPORTED, "NVRTC %d.%d cannot target sm_%d (it supports sm_%d to sm_%d)",
                     nvrtc->major, nvrtc->minor, arch, archs[0], archs[count - 1]);
}

/* Compile one instance. On success *cubin and *entry are malloc'd. */
static mrt_status nvrtc_compile(const mrt__nvrtc_api *nvrtc, const mrt__source *source, const char *expression,
                                int arch, int arch_specific, void **cubin, size_t *size, char **entry, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    nvrtcProgram prog = NULL;
    char arch_option[32], joined[256];
    const char *options[MRT_NVRTC_OPTION_COUNT];
    char *log = NULL;
    nvrtc_options(arch, arch_specific, arch_option, options, joined, sizeof joined);

    nvrtcResult res = nvrtc->create_program(&prog, source->text, source->file_name, 0, NULL, NULL);
    if (res != NVRTC_SUCCESS)
        MRT_FAIL(err, MRT_ERR_COMPILE, "nvrtcCreateProgram(%s): %s", source->file_name, nvrtc->get_error_string(res));
    res = nvrtc->add_name_expression(prog, expression);
    if (res != NVRTC_SUCCESS)
        MRT_FAIL(err, MRT_ERR_COMPILE, "nvrtcAddNameExpression(%s): %s", expression, nvrtc->get_error_string(res));
    res = nvrtc->compile_program(prog, MRT_NVRTC_OPTION_COUNT, options);
    mrt__nvrtc_count_compile();
    if (res != NVRTC_SUCCESS) {
        size_t log_size = 0;
        if (nvrtc->get_program_log_size(prog, &log_size) == NVRTC_SUCCESS && log_size > 0 &&
            (log = malloc(log_size)) != NULL && nvrtc->get_program_log(prog, log) != NVRTC_SUCCESS)
            log[0] = '\0';
        MRT_FAIL(err, MRT_ERR_COMPILE, "nvrtcCompileProgram(%s, %s, %s): %s\n%s", source->file_name, expression,
                 joined, nvrtc->get_error_string(res), log ? log : "(no log)");
    }
    const char *lowered = NULL;
    res = nvrtc->get_lowered_name(prog, expression, &lowered);
    if (res != NVRTC_SUCCESS || !lowered)
        MRT_FAIL(err, MRT_ERR_COMPILE, "nvrtcGetLoweredName(%s): %s", expression, nvrtc->get_error_string(res));
    res = nvrtc->get_cubin_size(prog, size);
    if (res != NVRTC_SUCCESS || *size == 0)
        MRT_FAIL(err, MRT_ERR_COMPILE, "nvrtcGetCUBINSize(%s): %s", expression, nvrtc->get_error_string(res));
    *cubin = malloc(*size);
    *entry = strdup(lowered);
    if (!*cubin || !*entry)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory for a cubin of %zu bytes", *size);
    res = nvrtc->get_cubin(prog, *cubin);
    if (res != NVRTC_SUCCESS)
        MRT_FAIL(err, MRT_ERR_COMPILE, "nvrtcGetCUBIN(%s): %s", expression, nvrtc->get_error_string(res));
done:
    if (rc != MRT_OK) {
        free(*cubin);
        free(*entry);
        *cubin = NULL;
        *entry = NULL;
    }
    free(log);
    if (prog)
        nvrtc->destroy_program(&prog);
    return rc;
}

mrt_status mrt__cubin_fetch(mrt_context *ctx, int arch, const mrt__kernel *kernel, const mrt_config *cfg,
                            void **blob, size_t *size, char **entry, mrt_cubin_origin *origin)
{
    mrt__err *err = &ctx->err;
    mrt_status rc = MRT_OK;
    char expression[256], config_text[128], arch_option[32], joined[256];
    const char *options[MRT_NVRTC_OPTION_COUNT];
    uint8_t key[16], variant[16];
    mrt__lookup found = MRT_LOOKUP_MISS;
    *blob = NULL;
    *entry = NULL;
    *size = 0;

    if (arch < 10 || arch > 1000)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "arch %d is not an sm_XX number such as 80 or 90", arch);
    MRT_CHECK(kernel->validate(cfg, err));
    int arch_specific = 0;
    MRT_CHECK(mrt__kernel_arch_check(kernel, cfg, arch, &arch_specific, err));
    const mrt__source *source = mrt__kernel_source(kernel);
    if (!source)
        MRT_FAIL(err, MRT_ERR_INTERNAL, "kernel %s: source %s was not embedded at build time", kernel->name,
                 kernel->source_file);
    int expression_length = kernel->name_expression(cfg, expression, sizeof expression);
    if (expression_length < 0 || expression_length >= (int)sizeof expression)
        MRT_FAIL(err, MRT_ERR_INTERNAL, "kernel %s: cannot form the name expression", kernel->name);
    mrt__config_format(cfg, config_text, sizeof config_text);
    nvrtc_options(arch, arch_specific, arch_option, options, joined, sizeof joined);

    /* NVRTC is optional here: without it only the store can answer. Its message is kept for
     * the error that follows a miss. */
    char nvrtc_why[MRT_ERRMSG_SIZE] = "";
    mrt__err nvrtc_err = {nvrtc_why, sizeof nvrtc_why};
    const mrt__nvrtc_api *nvrtc = NULL;
    if (mrt__nvrtc_load(&nvrtc_err, &nvrtc) != MRT_OK)
        nvrtc = NULL;

    mrt__key_inputs in = {
        .source_hash = source->hash,
        .kernel = kernel->name,
        .arch = arch,
        .config = *cfg,
        .nvrtc_major = nvrtc ? nvrtc->major : 0,
        .nvrtc_minor = nvrtc ? nvrtc->minor : 0,
        .options = joined,
        .format_version = MRT_CUBIN_FORMAT_VERSION,
    };
    mrt__cubin_key(&in, key, variant);
    /* The base store, then the overlay (runtime/overlay.c). */
    MRT_CHECK(mrt__ctx_store_get(ctx, nvrtc ? key : variant, !nvrtc, blob, size, entry, &found, err));
    if (found == MRT_LOOKUP_HIT) {
        ctx->stats.store_hits++;
        if (origin)
            *origin = MRT_CUBIN_FROM_STORE;
        return MRT_OK;
    }
    ctx->stats.store_misses++;
    if (!nvrtc) {
        char key_hex[33];
        mrt__key_hex(variant, key_hex);
        MRT_FAIL(err, MRT_ERR_NO_NVRTC,
                 "%s %s for sm_%d is %s the store %s (variant %s) and NVRTC is unavailable to compile it; "
                 "run `marlinrt warm --arch sm_%d --kernel %s --config %s` where NVRTC is installed, with --db "
                 "naming the store you ship, or install NVRTC. %s",
                 kernel->name, config_text, arch, found == MRT_LOOKUP_CORRUPT ? "corrupt in" : "not in",
                 ctx->store_path, key_hex, arch, kernel->name, config_text, nvrtc_why);
    }
    MRT_CHECK(check_arch(nvrtc, arch, err));

    double start = mrt__now_ms();
    MRT_CHECK(nvrtc_compile(nvrtc, source, expression, arch, arch_specific, blob, size, entry, err));
    double compile_ms = mrt__now_ms() - start;
    ctx->stats.nvrtc_compiles++;
    MRT_CHECK(mrt__ctx_store_put(ctx, key, variant, &in, *entry, compile_ms, *blob, *size, err));
    /* Counted, not printed: a library must not write to stderr; tools read mrt_get_stats. */
    if (found == MRT_LOOKUP_CORRUPT)
        ctx->stats.corrupt_recompiled++;
    if (origin)
        *origin = found == MRT_LOOKUP_CORRUPT ? MRT_CUBIN_RECOMPILED : MRT_CUBIN_COMPILED;
done:
    if (rc != MRT_OK) {
        free(*blob);
        free(*entry);
        *blob = NULL;
        *entry = NULL;
        *size = 0;
    }
    return rc;
}

mrt_status mrt_get_cubin(mrt_context *ctx, int arch, const char *kernel, const mrt_config *cfg, void **cubin,
                         size_t *size, mrt_cubin_origin *origin)
{
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!kernel || !cfg || !cubin || !size)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_get_cubin: kernel, cfg, cubin and size must be non-NULL");
    *cubin = NULL;
    *size = 0;
    const mrt__kernel *k = mrt__kernel_find(kernel);
    if (!k)
        return mrt__fail(err, MRT_ERR_NOT_FOUND, "mrt_get_cubin: unknown kernel \"%s\"", kernel);
    char *entry = NULL;
    mrt_status rc = mrt__cubin_fetch(ctx, arch, k, cfg, cubin, size, &entry, origin);
    free(entry);
    return rc;
}
