/*
 * The public store calls behind `marlinrt cache`: listing with staleness, verify, export,
 * import and prune, over the context's base store and its overlay.
 *
 * A row is stale when this library would never use it: made from another text of its
 * kernel's source, for another cubin format, for a kernel it does not have, or (known only
 * where NVRTC loads) by another NVRTC version, whose key the lookup never forms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "context.h"

/* ------------------------------------------------------------------------- */
/* Staleness                                                                  */
/* ------------------------------------------------------------------------- */

typedef struct stale_check {
    int have_nvrtc;
    int nvrtc_major, nvrtc_minor;
} stale_check;

/* NVRTC is optional here: without it a row's NVRTC version cannot be judged, and is not. */
static void stale_check_init(stale_check *check)
{
    const mrt__nvrtc_api *nvrtc = NULL;
    memset(check, 0, sizeof *check);
    if (mrt__nvrtc_load(NULL, &nvrtc) == MRT_OK) {
        check->have_nvrtc = 1;
        check->nvrtc_major = nvrtc->major;
        check->nvrtc_minor = nvrtc->minor;
    }
}

/* MRT_STALE_KERNEL or MRT_STALE_SOURCE for a row made from kernel with source_hash. */
static int source_stale(const char *kernel_name, uint64_t source_hash)
{
    const mrt__kernel *kernel = mrt__kernel_find(kernel_name);
    if (!kernel)
        return MRT_STALE_KERNEL;
    const mrt__source *source = mrt__kernel_source(kernel);
    return source && source->hash == source_hash ? 0 : MRT_STALE_SOURCE;
}

static int cubin_stale(const stale_check *check, const mrt_cubin_row *row)
{
    int stale = source_stale(row->kernel, row->source_hash);
    if (row->format_version != MRT_CUBIN_FORMAT_VERSION)
        stale |= MRT_STALE_FORMAT;
    if (check->have_nvrtc && (row->nvrtc_major != check->nvrtc_major || row->nvrtc_minor != check->nvrtc_minor))
        stale |= MRT_STALE_NVRTC;
    return stale;
}

/* ------------------------------------------------------------------------- */
/* Listing and summary                                                        */
/* ------------------------------------------------------------------------- */

const char *mrt_store_overlay_path(const mrt_context *ctx)
{
    return ctx && ctx->overlay ? ctx->overlay_path : NULL;
}

int mrt_store_read_only(const mrt_context *ctx)
{
    return ctx && ctx->store ? mrt__store_read_only(ctx->store) : 0;
}

const char *mrt_store_read_only_reason(const mrt_context *ctx)
{
    return ctx && ctx->store ? mrt__store_read_only_reason(ctx->store) : "";
}

typedef struct cubin_walk {
    mrt_cubin_row_fn fn;
    void *user;
    stale_check check;
    int in_overlay;
    int stopped;
} cubin_walk;

static int walk_cubin(const mrt_cubin_row *row, void *user)
{
    cubin_walk *walk = user;
    mrt_cubin_row marked = *row;
    marked.stale = cubin_stale(&walk->check, row);
    marked.in_overlay = walk->in_overlay;
    walk->stopped = walk->fn(&marked, walk->user) != 0;
    return walk->stopped;
}

mrt_status mrt_store_foreach_cubin(mrt_context *ctx, mrt_cubin_row_fn fn, void *user)
{
    mrt_status rc = MRT_OK;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!fn)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_store_foreach_cubin: fn is NULL");
    cubin_walk walk = {.fn = fn, .user = user};
    stale_check_init(&walk.check);
    mrt__store *stores[2];
    int count = mrt__ctx_read_stores(ctx, stores);
    for (int i = 0; i < count && !walk.stopped; i++) {
        walk.in_overlay = stores[i] == ctx->overlay;
        MRT_CHECK(mrt__store_foreach(stores[i], walk_cubin, &walk, err));
    }
done:
    return rc;
}

typedef struct winner_walk {
    mrt_tuning_winner_row_fn fn;
    void *user;
    int in_overlay;
    int stopped;
} winner_walk;

static int walk_winner(const mrt_tuning_winner_row *row, void *user)
{
    winner_walk *walk = user;
    mrt_tuning_winner_row marked = *row;
    marked.stale = source_stale(row->kernel, row->source_hash);
    marked.in_overlay = walk->in_overlay;
    walk->stopped = walk->fn(&marked, walk->user) != 0;
    return walk->stopped;
}

mrt_status mrt_store_foreach_tuning_winner(mrt_context *ctx, mrt_tuning_winner_row_fn fn, void *user)
{
    mrt_status rc = MRT_OK;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!fn)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_store_foreach_tuning_winner: fn is NULL");
    winner_walk walk = {.fn = fn, .user = user};
    mrt__store *stores[2];
    int count = mrt__ctx_read_stores(ctx, stores);
    for (int i = 0; i < count && !walk.stopped; i++) {
        walk.in_overlay = stores[i] == ctx->overlay;
        MRT_CHECK(mrt__store_foreach_winner(stores[i], walk_winner, &walk, err));
    }
done:
    return rc;
}

static int count_stale(const mrt_cubin_row *row, void *user)
{
    const stale_check *check = ((void **)user)[0];
    uint64_t *stale_rows = ((void **)user)[1];
    if (cubin_stale(check, row))
        (*stale_rows)++;
    return 0;
}

mrt_status mrt_store_summary_get(mrt_context *ctx, mrt_store_summary *summary)
{
    mrt_status rc = MRT_OK;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!summary)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_store_summary_get: summary is NULL");
    memset(summary, 0, sizeof *summary);
    MRT_CHECK(mrt__store_summary(ctx->store, summary, err));
    MRT_CHECK(mrt__store_tuning_counts(ctx->store, &summary->tuning_device_rows, &summary->tuning_timing_rows,
                                       &summary->tuning_winner_rows, err));
    stale_check check;
    stale_check_init(&check);
    void *state[2] = {&check, &summary->stale_cubin_rows};
    MRT_CHECK(mrt__store_foreach(ctx->store, count_stale, state, err));
done:
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Verify                                                                     */
/* ------------------------------------------------------------------------- */

typedef struct verify_walk {
    mrt_context *ctx;
    mrt_verify_fn fn;
    void *user;
    mrt_store_verify_report *report;
    stale_check check;
    int in_overlay;
    int gpu_arch;              /* 0: nothing is loaded */
    const char *no_gpu_reason; /* why, when gpu_arch is 0 */
    int stopped;
    mrt_status failure;        /* an error that must end the walk (out of memory) */
} verify_walk;

/* Load a checked cubin on the GPU and find its entry; "" on success, else the reason. */
static void test_load(verify_walk *walk, const mrt__blob_row *r, char *detail, size_t size)
{
    mrt_context *ctx = walk->ctx;
    const mrt__driver_api *d = ctx->driver;
    /* The driver reads the image as a whole ELF object: hand it a malloc'd (aligned) copy
     * rather than SQLite's buffer. */
    void *image = malloc(r->size);
    if (!image) {
        walk->failure = mrt__fail(&ctx->err, MRT_ERR_OUT_OF_MEMORY, "out of memory for a cubin of %zu bytes", r->size);
        snprintf(detail, size, "out of memory");
        return;
    }
    memcpy(image, r->blob, r->size);
    if (mrt__ctx_push(ctx) != MRT_OK) {
        snprintf(detail, size, "%s", ctx->errbuf);
        free(image);
        return;
    }
    CUmodule module = NULL;
    CUfunction function = NULL;
    CUresult res = d->module_load_data(&module, image);
    if (res != CUDA_SUCCESS) {
        mrt__err sink = {detail, size};
        mrt__cuda_fail(&sink, MRT_ERR_CUDA, "cuModuleLoadData", res);
    } else {
        res = d->module_get_function(&function, module, r->entry);
        if (res != CUDA_SUCCESS) {
            char call[320];
            snprintf(call, sizeof call, "cuModuleGetFunction(%.256s)", r->entry);
            mrt__err sink = {detail, size};
            mrt__cuda_fail(&sink, MRT_ERR_CUDA, call, res);
        }
        /* Unloading a module nothing uses cannot fail in a way that matters to the verdict. */
        (void)d->module_unload(module);
    }
    mrt__ctx_pop(ctx);
    free(image);
}

static int verify_row(const mrt__blob_row *r, void *user)
{
    verify_walk *walk = user;
    mrt_store_verify_report *report = walk->report;
    char detail[MRT_ERRMSG_SIZE] = "";
    mrt_verify_outcome outcome;
    mrt_cubin_row row = r->row;
    row.stale = cubin_stale(&walk->check, &r->row);
    row.in_overlay = walk->in_overlay;

    report->cubin_rows++;
    if (!r->checksum_ok) {
        outcome = MRT_VERIFY_BAD_CHECKSUM;
        report->bad_checksum++;
        snprintf(detail, sizeof detail, "the blob (%zu bytes) fails its stored length or XXH64, or has no entry",
                 r->size);
    } else if (walk->gpu_arch && row.arch == walk->gpu_arch) {
        test_load(walk, r, detail, sizeof detail);
        if (walk->failure != MRT_OK)
            return 1;
        outcome = detail[0] ? MRT_VERIFY_LOAD_FAILED : MRT_VERIFY_LOADED;
        if (detail[0])
            report->load_failed++;
        else
            report->loaded++;
    } else {
        outcome = MRT_VERIFY_CHECKED;
        report->not_loaded++;
        if (walk->gpu_arch)
            snprintf(detail, sizeof detail, "made for sm_%d; the GPU is sm_%d", row.arch, walk->gpu_arch);
        else
            snprintf(detail, sizeof detail, "not loaded: %s", walk->no_gpu_reason);
    }
    if (walk->fn && walk->fn(&row, outcome, detail, walk->user) != 0)
        walk->stopped = 1;
    return walk->stopped;
}

static int verify_winner(const mrt_tuning_winner_row *row, void *user)
{
    verify_walk *walk = user;
    walk->report->tuning_winner_rows++;
    const mrt__kernel *kernel = mrt__kernel_find(row->kernel);
    if (!kernel || kernel->validate(&row->config, NULL) != MRT_OK)
        walk->report->bad_tuning_rows++;
    return 0;
}

mrt_status mrt_store_verify(mrt_context *ctx, mrt_verify_fn fn, void *user, mrt_store_verify_report *report)
{
    mrt_status rc = MRT_OK;
    char no_gpu[MRT_ERRMSG_SIZE + 16] = "MRT_CTX_OFFLINE context";
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!report)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_store_verify: report is NULL");
    memset(report, 0, sizeof *report);

    verify_walk walk = {.ctx = ctx, .fn = fn, .user = user, .report = report, .no_gpu_reason = no_gpu};
    stale_check_init(&walk.check);
    /* Test loads need the GPU; without one every checksum is still checked. */
    if (!(ctx->opts.flags & MRT_CTX_OFFLINE)) {
        if (mrt__device_open(ctx) == MRT_OK)
            walk.gpu_arch = ctx->info.cc_major * 10 + ctx->info.cc_minor;
        else
            snprintf(no_gpu, sizeof no_gpu, "no GPU: %s", ctx->errbuf);
        mrt__ctx_err(ctx); /* the missing GPU is not this call's failure */
    }
    report->gpu_arch = walk.gpu_arch;

    mrt__store *stores[2];
    int count = mrt__ctx_read_stores(ctx, stores);
    for (int i = 0; i < count && !walk.stopped; i++) {
        walk.in_overlay = stores[i] == ctx->overlay;
        MRT_CHECK(mrt__store_quick_check(stores[i], err));
        MRT_CHECK(mrt__store_foreach_blob(stores[i], verify_row, &walk, err));
        MRT_CHECK(walk.failure);
    }
    for (int i = 0; i < count && !walk.stopped; i++)
        MRT_CHECK(mrt__store_foreach_winner(stores[i], verify_winner, &walk, err));
done:
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Export and import                                                          */
/* ------------------------------------------------------------------------- */

/* Whether path names the same file as one of the context's stores: merging a store into
 * itself would hold a write transaction against its own reads. */
static int is_context_store(mrt_context *ctx, const char *path)
{
    struct stat target;
    if (stat(path, &target) != 0)
        return 0; /* not there yet: cannot be one of ours */
    mrt__store *stores[2];
    int count = mrt__ctx_read_stores(ctx, stores);
    for (int i = 0; i < count; i++) {
        struct stat existing;
        if (stat(mrt__store_path(stores[i]), &existing) == 0 && existing.st_dev == target.st_dev &&
            existing.st_ino == target.st_ino)
            return 1;
    }
    return 0;
}

/* Remove a store file this call created and could not finish, with SQLite's side files. */
static void remove_store_files(const char *path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char name[4200];
        snprintf(name, sizeof name, "%s%s", path, suffixes[i]);
        (void)unlink(name); /* a missing side file is the normal case */
    }
}

mrt_status mrt_store_export(mrt_context *ctx, const char *path, mrt_store_merge_report *report)
{
    mrt_status rc = MRT_OK;
    mrt__store *destination = NULL;
    int created = 0;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!path || !*path || !report)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_store_export: path and report must be given");
    memset(report, 0, sizeof *report);
    if (is_context_store(ctx, path))
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_store_export: %s is this context's own store", path);

    created = access(path, F_OK) != 0;
    MRT_CHECK(mrt__store_open_mode(path, MRT_STORE_OPEN_WRITABLE, err, &destination));
    mrt__store *stores[2];
    int count = mrt__ctx_read_stores(ctx, stores);
    for (int i = 0; i < count; i++)
        MRT_CHECK(mrt__store_merge(stores[i], destination, report, err));
    /* A new file leaves as one self-contained file that a read-only reader opens without
     * creating -wal / -shm files beside it. */
    if (created)
        MRT_CHECK(mrt__store_set_journal_delete(destination, err));

done:
    mrt__store_close(destination);
    if (rc != MRT_OK && created)
        remove_store_files(path);
    return rc;
}

mrt_status mrt_store_import(mrt_context *ctx, const char *path, mrt_store_merge_report *report)
{
    mrt_status rc = MRT_OK;
    mrt__store *source = NULL;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!path || !*path || !report)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_store_import: path and report must be given");
    memset(report, 0, sizeof *report);
    mrt__store *target = mrt__ctx_write_store(ctx);
    if (!target)
        MRT_FAIL(err, MRT_ERR_STORE,
                 "mrt_store_import: the store %s is read-only (%s) and there is no overlay to import into (set "
                 "MARLINRT_CACHE_OVERLAY)",
                 ctx->store_path, mrt__store_read_only_reason(ctx->store));
    if (is_context_store(ctx, path))
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_store_import: %s is this context's own store", path);
    MRT_CHECK(mrt__store_open_mode(path, MRT_STORE_OPEN_READONLY, err, &source));
    MRT_CHECK(mrt__store_merge(source, target, report, err));
done:
    mrt__store_close(source);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Prune                                                                      */
/* ------------------------------------------------------------------------- */

void mrt_prune_options_init(mrt_prune_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->max_bytes = -1;
    opts->unused_seconds = -1;
}

typedef struct prune_row {
    uint8_t key[16];
    uint64_t size;
    int64_t last_used_at, created_at, hit_count;
    int stale;
    int remove;
} prune_row;

typedef struct prune_rows {
    prune_row *rows;
    size_t count, capacity;
    stale_check check;
    int out_of_memory;
} prune_rows;

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int collect_row(const mrt_cubin_row *row, void *user)
{
    prune_rows *all = user;
    if (all->count == all->capacity) {
        size_t capacity = all->capacity ? 2 * all->capacity : 256;
        prune_row *grown = realloc(all->rows, capacity * sizeof *grown);
        if (!grown) {
            all->out_of_memory = 1;
            return 1;
        }
        all->rows = grown;
        all->capacity = capacity;
    }
    prune_row *r = &all->rows[all->count++];
    memset(r, 0, sizeof *r);
    for (int i = 0; i < 16; i++)
        r->key[i] = (uint8_t)(hex_digit(row->key_hex[2 * i]) << 4 | hex_digit(row->key_hex[2 * i + 1]));
    r->size = row->size;
    r->last_used_at = row->last_used_at;
    r->created_at = row->created_at;
    r->hit_count = row->hit_count;
    r->stale = cubin_stale(&all->check, row);
    return 0;
}

/* Least recently used first; among equals the least used, then the oldest. */
static int by_least_recent_use(const void *a, const void *b)
{
    const prune_row *x = a, *y = b;
    if (x->last_used_at != y->last_used_at)
        return x->last_used_at < y->last_used_at ? -1 : 1;
    if (x->hit_count != y->hit_count)
        return x->hit_count < y->hit_count ? -1 : 1;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return memcmp(x->key, y->key, sizeof x->key);
}

/* The stale (table, kernel, source hash) groups of tuning rows, gathered before any delete so
 * that no row is deleted under the open grouping query. */
typedef struct tuning_group {
    char *table;
    char *kernel;
    uint64_t source_hash;
} tuning_group;

typedef struct tuning_prune {
    tuning_group *groups;
    size_t count, capacity;
    uint64_t rows;
    int out_of_memory;
} tuning_prune;

static void tuning_prune_free(tuning_prune *prune)
{
    for (size_t i = 0; i < prune->count; i++) {
        free(prune->groups[i].table);
        free(prune->groups[i].kernel);
    }
    free(prune->groups);
}

static int gather_stale_group(const char *table, const char *kernel, uint64_t source_hash, uint64_t rows,
                              void *user)
{
    tuning_prune *prune = user;
    if (!source_stale(kernel, source_hash))
        return 0;
    if (prune->count == prune->capacity) {
        size_t capacity = prune->capacity ? 2 * prune->capacity : 16;
        tuning_group *grown = realloc(prune->groups, capacity * sizeof *grown);
        if (!grown) {
            prune->out_of_memory = 1;
            return 1;
        }
        prune->groups = grown;
        prune->capacity = capacity;
    }
    tuning_group *group = &prune->groups[prune->count];
    group->table = strdup(table);
    group->kernel = strdup(kernel);
    group->source_hash = source_hash;
    if (!group->table || !group->kernel) {
        free(group->table);
        free(group->kernel);
        prune->out_of_memory = 1;
        return 1;
    }
    prune->count++;
    prune->rows += rows;
    return 0;
}

mrt_status mrt_store_prune(mrt_context *ctx, const mrt_prune_options *opts, mrt_prune_report *report)
{
    mrt_status rc = MRT_OK;
    prune_rows all = {0};
    tuning_prune stale_groups = {0};
    int in_transaction = 0;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!opts || !report)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_store_prune: opts and report must not be NULL");
    memset(report, 0, sizeof *report);
    if (opts->max_bytes < -1 || opts->unused_seconds < -1)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT,
                         "mrt_store_prune: max_bytes = %lld and unused_seconds = %lld must be -1 (off) or >= 0",
                         (long long)opts->max_bytes, (long long)opts->unused_seconds);
    mrt__store *target = mrt__ctx_write_store(ctx);
    if (!target)
        return mrt__fail(err, MRT_ERR_STORE,
                         "mrt_store_prune: the store %s is read-only (%s) and there is no overlay to prune",
                         ctx->store_path, mrt__store_read_only_reason(ctx->store));
    const int dry_run = (opts->flags & MRT_PRUNE_DRY_RUN) != 0;
    stale_check_init(&all.check);

    /* One transaction: the rows chosen are the rows deleted, whatever other processes do. */
    MRT_CHECK(mrt__store_begin(target, err));
    in_transaction = 1;
    MRT_CHECK(mrt__store_foreach(target, collect_row, &all, err));
    if (all.out_of_memory)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "mrt_store_prune: out of memory listing %zu rows", all.count);

    const int64_t now = (int64_t)time(NULL);
    uint64_t kept_bytes = 0;
    for (size_t i = 0; i < all.count; i++) {
        prune_row *r = &all.rows[i];
        if ((opts->flags & MRT_PRUNE_STALE) && r->stale)
            r->remove = 1;
        if (opts->unused_seconds >= 0 && r->last_used_at < now - opts->unused_seconds)
            r->remove = 1;
        if (!r->remove)
            kept_bytes += r->size;
    }
    if (opts->max_bytes >= 0 && kept_bytes > (uint64_t)opts->max_bytes) {
        qsort(all.rows, all.count, sizeof *all.rows, by_least_recent_use);
        for (size_t i = 0; i < all.count && kept_bytes > (uint64_t)opts->max_bytes; i++) {
            if (all.rows[i].remove)
                continue;
            all.rows[i].remove = 1;
            kept_bytes -= all.rows[i].size;
        }
    }
    for (size_t i = 0; i < all.count; i++) {
        prune_row *r = &all.rows[i];
        if (!r->remove) {
            report->cubins_kept++;
            report->bytes_kept += r->size;
            continue;
        }
        report->cubins_removed++;
        report->bytes_removed += r->size;
        if (!dry_run)
            MRT_CHECK(mrt__store_delete_cubin(target, r->key, err));
    }
    if (opts->flags & MRT_PRUNE_STALE) {
        MRT_CHECK(mrt__store_foreach_tuning_group(target, gather_stale_group, &stale_groups, err));
        if (stale_groups.out_of_memory)
            MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "mrt_store_prune: out of memory listing tuning rows");
        for (size_t i = 0; i < stale_groups.count && !dry_run; i++)
            MRT_CHECK(mrt__store_delete_tuning_group(target, stale_groups.groups[i].table,
                                                     stale_groups.groups[i].kernel, stale_groups.groups[i].source_hash,
                                                     NULL, err));
        report->tuning_removed = stale_groups.rows;
    }
    if (dry_run) {
        mrt__store_rollback(target, err);
        in_transaction = 0;
        goto done;
    }
    MRT_CHECK(mrt__store_commit(target, err));
    in_transaction = 0;
    if ((opts->flags & MRT_PRUNE_VACUUM) && (report->cubins_removed || report->tuning_removed))
        MRT_CHECK(mrt__store_vacuum(target, err));

done:
    if (in_transaction)
        mrt__store_rollback(target, err);
    free(all.rows);
    tuning_prune_free(&stale_groups);
    return rc;
}
