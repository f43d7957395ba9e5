/*
 * marlinrt tune: tune the GEMM for a list of shapes and M values and record the winners in the
 * store, so that mrt_gemm (and `marlinrt bench`) use them.
 *
 * Progress goes to stderr: on a terminal one line that keeps being rewritten, otherwise one
 * line per problem (every candidate with --verbose). The table (or --json) goes to stdout: per
 * shape and M, the winner and its time, the heuristic's pick and its time, and how many
 * candidates were timed, reused from the store, or left out.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define TUNE_MAX_JOBS 64

/* The shapes and M values `marlinrt bench` measures by default, so `tune` then `bench` shows
 * the tuned kernel on every row. */
static const char *const default_shapes = "4096x4096,4096x28672,14336x4096,8192x8192,8192x57344,28672x8192";
static const char *const default_ms = "1,2,4,8,16,32,64,128,256,512";

typedef struct progress_state {
    const char *label; /* "4096x4096 m=1" */
    int verbose;
    int terminal;
    size_t failed;
} progress_state;

static int on_progress(const mrt_tune_event *event, void *user)
{
    progress_state *p = user;
    char cfg[64];
    cli_format_config(&event->result.config, cfg, sizeof cfg);
    if (event->status != MRT_OK) {
        p->failed++;
        fprintf(stderr, "%s[tune] %s: %s left out: %s: %s\n", p->terminal ? "\r\033[K" : "", p->label, cfg,
                mrt_status_str(event->status), event->message);
        return 0;
    }
    if (p->verbose)
        fprintf(stderr, "[tune] %s: %zu/%zu %-20s %9.2f us (spread %.2f)%s\n", p->label, event->index + 1,
                event->total, cfg, event->result.median_us, event->result.spread_us,
                event->result.reused ? " stored" : "");
    else if (p->terminal)
        fprintf(stderr, "\r\033[K[tune] %s: %zu/%zu %s %.2f us", p->label, event->index + 1, event->total, cfg,
                event->result.median_us);
    return 0;
}


/* Parse "4096x4096,8192x57344" into shapes[][2] = {K, N}; returns the count or -1. */
static int parse_shapes(const char *list, int64_t shapes[][2], int capacity)
{
    int count = 0;
    for (const char *p = list; *p;) {
        char *end = NULL;
        long long k = strtoll(p, &end, 10);
        if (end == p || *end != 'x' || count == capacity)
            return -1;
        p = end + 1;
        long long n = strtoll(p, &end, 10);
        if (end == p || (*end && *end != ',') || k < 1 || n < 1)
            return -1;
        shapes[count][0] = k;
        shapes[count][1] = n;
        count++;
        p = *end ? end + 1 : end;
    }
    return count;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Compiling every candidate of every problem into the store before any timing, on several
 * threads: each worker has its own offline context on the same store file (a context is used
 * by one thread at a time; NVRTC compiles different programs in parallel; SQLite serialises
 * the inserts). The tuner then finds each cubin in the store instead of compiling it in turn. */
typedef struct precompile {
    const char *store_path;
    int arch;
    const mrt_config *configs;
    size_t count;
    pthread_mutex_t lock;
    size_t next, compiled, found, failed;
    char first_failure[512];
} precompile;

static void *precompile_worker(void *arg)
{
    precompile *job = arg;
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.store_path = job->store_path;
    opts.flags = MRT_CTX_OFFLINE;
    mrt_context *ctx = NULL;
    mrt_status rc = mrt_context_create(&opts, &ctx);
    for (;;) {
        pthread_mutex_lock(&job->lock);
        size_t i = job->next++;
        pthread_mutex_unlock(&job->lock);
        if (i >= job->count)
            break;
        void *cubin = NULL;
        size_t size = 0;
        mrt_cubin_origin origin = MRT_CUBIN_FROM_STORE;
        if (rc == MRT_OK)
            rc = mrt_get_cubin(ctx, job->arch, MRT_KERNEL_MARLIN_W4A16, &job->configs[i], &cubin, &size, &origin);
        pthread_mutex_lock(&job->lock);
        if (rc == MRT_OK && origin == MRT_CUBIN_FROM_STORE)
            job->found++;
        else if (rc == MRT_OK)
            job->compiled++;
        else {
            job->failed++;
            if (!job->first_failure[0]) {
                char cfg[64];
                cli_format_config(&job->configs[i], cfg, sizeof cfg);
                snprintf(job->first_failure, sizeof job->first_failure, "%s: %s: %.400s", cfg, mrt_status_str(rc),
                         ctx ? mrt_errmsg(ctx) : mrt_thread_errmsg());
            }
        }
        pthread_mutex_unlock(&job->lock);
        mrt_free(cubin);
        /* A failed context stays failed; a failed compile does not stop the others. */
        if (ctx)
            rc = MRT_OK;
    }
    mrt_context_destroy(ctx);
    return NULL;
}

/* Add configs[0..count) to *all (deduplicated). Returns 0, or -1 without memory. */
static int add_unique(mrt_config **all, size_t *used, size_t *capacity, const mrt_config *configs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        size_t j = 0;
        while (j < *used && memcmp(&(*all)[j], &configs[i], sizeof configs[i]) != 0)
            j++;
        if (j < *used)
            continue;
        if (*used == *capacity) {
            size_t grown = *capacity ? 2 * *capacity : 256;
            mrt_config *bigger = realloc(*all, grown * sizeof *bigger);
            if (!bigger)
                return -1;
            *all = bigger;
            *capacity = grown;
        }
        (*all)[(*used)++] = configs[i];
    }
    return 0;
}

static void precompile_run(const char *store_path, int arch, const mrt_config *configs, size_t count, int jobs)
{
    precompile job;
    memset(&job, 0, sizeof job);
    job.store_path = store_path;
    job.arch = arch;
    job.configs = configs;
    job.count = count;
    pthread_mutex_init(&job.lock, NULL);
    pthread_t threads[TUNE_MAX_JOBS];
    int started = 0;
    const double start = now_s();
    fprintf(stderr, "[tune] compiling the %zu candidate configurations into the store on %d threads\n", count, jobs);
    for (int i = 0; i < jobs && i < TUNE_MAX_JOBS; i++) {
        if (pthread_create(&threads[i], NULL, precompile_worker, &job) != 0)
            break;
        started++;
    }
    if (started == 0)
        precompile_worker(&job); /* no thread could start: compile here */
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&job.lock);
    fprintf(stderr, "[tune] %zu compiled, %zu already in the store, %zu failed, %.1f s%s%s\n", job.compiled, job.found,
            job.failed, now_s() - start, job.failed ? "; first failure: " : "", job.first_failure);
}

int cmd_tune(const char *db, int argc, char **argv)
{
    const char *shape_list = default_shapes, *m_list = default_ms;
    int json = 0, verbose = 0, group = 128, exit_code = 1;
    long jobs = sysconf(_SC_NPROCESSORS_ONLN);
    if (jobs < 1)
        jobs = 1;
    if (jobs > TUNE_MAX_JOBS)
        jobs = TUNE_MAX_JOBS;
    mrt_tune_options opts;
    mrt_tune_options_init(&opts);
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0)
            verbose = 1;
        else if (strcmp(argv[i], "--retime") == 0)
            opts.flags |= MRT_TUNE_RETIME;
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc)
            shape_list = argv[++i];
        else if (strcmp(argv[i], "--m") == 0 && i + 1 < argc)
            m_list = argv[++i];
        else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc) {
            long value = strtol(argv[++i], &end, 10);
            if (*end || (value != -1 && value != 32 && value != 64 && value != 128))
                return cli_usage_error("tune: --group %s: use -1 (per channel), 32, 64 or 128", argv[i]);
            group = (int)value;
        } else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc) {
            long value = strtol(argv[++i], &end, 10);
            if (*end || value < 0 || value > 86400000L)
                return cli_usage_error("tune: --budget %s: milliseconds per shape and M, 0 for none", argv[i]);
            opts.budget_ms = (uint32_t)value;
        } else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) {
            long value = strtol(argv[++i], &end, 10);
            if (*end || value < 0 || value > TUNE_MAX_JOBS)
                return cli_usage_error("tune: --jobs %s: compile threads 1..%d, 0 to compile while tuning", argv[i],
                                       TUNE_MAX_JOBS);
            jobs = value;
        } else if (strcmp(argv[i], "--batches") == 0 && i + 1 < argc) {
            long value = strtol(argv[++i], &end, 10);
            if (*end || value < 3 || value > 1000)
                return cli_usage_error("tune: --batches %s: use 3..1000", argv[i]);
            opts.batches = (int32_t)value;
        } else
            return cli_usage_error("tune: unknown argument \"%s\"", argv[i]);
    }
    int64_t ms[64], shapes[32][2];
    int m_count = cli_parse_int_list(m_list, ms, 64);
    if (m_count <= 0)
        return cli_usage_error("tune: bad --m list \"%s\"", m_list);
    int shape_count = parse_shapes(shape_list, shapes, 32);
    if (shape_count <= 0)
        return cli_usage_error("tune: bad --shape \"%s\" (expected KxN[,KxN...])", shape_list);

    mrt_context *ctx = NULL;
    mrt_tune_result *results = NULL;
    if (cli_open_context(db, 0, &ctx))
        return 1;
    mrt_device_info dev;
    mrt_status rc = mrt_device_get_info(ctx, &dev);
    if (rc != MRT_OK) {
        fprintf(stderr, "marlinrt: tune needs a GPU: %s: %s\n", mrt_status_str(rc), mrt_errmsg(ctx));
        goto done;
    }
    char fingerprint[17];
    snprintf(fingerprint, sizeof fingerprint, "%016llx", (unsigned long long)mrt_device_fingerprint(&dev));

    if (jobs > 0) {
        mrt_config *all = NULL, *list = NULL;
        size_t used = 0, capacity = 0;
        int ok = 1;
        for (int s = 0; ok && s < shape_count; s++)
            for (int mi = 0; ok && mi < m_count; mi++) {
                size_t total = 0;
                if (mrt_gemm_candidates_for(ctx, ms[mi], shapes[s][1], shapes[s][0], group, NULL, 0, &total) != MRT_OK)
                    continue; /* reported when that problem is tuned */
                mrt_config *grown = realloc(list, (total ? total : 1) * sizeof *list);
                ok = grown != NULL;
                if (ok) {
                    list = grown;
                    ok = mrt_gemm_candidates_for(ctx, ms[mi], shapes[s][1], shapes[s][0], group, list, total,
                                                 &total) == MRT_OK &&
                         add_unique(&all, &used, &capacity, list, total) == 0;
                }
            }
        if (ok && used > 0 && strcmp(mrt_store_path(ctx), ":memory:") != 0)
            precompile_run(mrt_store_path(ctx), dev.cc_major * 10 + dev.cc_minor, all, used, (int)jobs);
        free(all);
        free(list);
    }
    if (json) {
        printf("{\"gpu\": ");
        cli_json_string(dev.name);
        printf(", \"fingerprint\": \"%s\", \"sm_count\": %d, \"l2_bytes\": %d, \"group_size\": %d, \"batches\": %d, "
               "\"noise\": %.3f, \"store\": ",
               fingerprint, dev.sm_count, dev.l2_bytes, group, opts.batches, opts.noise);
        cli_json_string(mrt_store_path(ctx));
        printf(", \"rows\": [");
    } else {
        printf("GPU: %s (%d SMs, %d MiB L2), fingerprint %s; group size %d; store %s\n"
               "median of %d batches per configuration, inputs rotated over > 2 x L2; ties within %.0f%% go to "
               "the fewest stages, then threads, m-, n-, k-blocks\n\n",
               dev.name, dev.sm_count, dev.l2_bytes >> 20, fingerprint, group, mrt_store_path(ctx), opts.batches,
               100 * opts.noise);
        printf("| K x N       |    M | bucket | winner               |       us |  spread | heuristic            |  "
               "     us | speedup | timed | stored | left out | candidates |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    }
    fflush(stdout);

    const int terminal = isatty(fileno(stderr));
    int first = 1, failures = 0;
    for (int s = 0; s < shape_count; s++) {
        for (int mi = 0; mi < m_count; mi++) {
            const int64_t k = shapes[s][0], n = shapes[s][1], m = ms[mi];
            char label[96];
            snprintf(label, sizeof label, "%lldx%lld m=%lld", (long long)k, (long long)n, (long long)m);
            size_t total = 0, count = 0;
            rc = mrt_gemm_candidates_for(ctx, m, n, k, group, NULL, 0, &total);
            if (rc == MRT_OK) {
                mrt_tune_result *grown = realloc(results, (total ? total : 1) * sizeof *results);
                if (!grown) {
                    fprintf(stderr, "marlinrt: tune: out of memory\n");
                    goto done;
                }
                results = grown;
                progress_state progress = {label, verbose, terminal, 0};
                opts.progress = on_progress;
                opts.progress_user = &progress;
                const double start = now_s();
                rc = mrt_gemm_tune(ctx, m, n, k, group, &opts, results, total, &count);
                const double seconds = now_s() - start;
                if (terminal && !verbose)
                    fprintf(stderr, "\r\033[K");
                if (rc == MRT_OK || (rc == MRT_ERR_STORE && count > 0)) {
                    size_t reused = 0;
                    const mrt_tune_result *heuristic = NULL;
                    for (size_t i = 0; i < count && i < total; i++) {
                        reused += results[i].reused != 0;
                        if (results[i].heuristic)
                            heuristic = &results[i];
                    }
                    const mrt_tune_result *win = &results[0];
                    char win_text[64], heur_text[64] = "n/a";
                    cli_format_config(&win->config, win_text, sizeof win_text);
                    if (heuristic)
                        cli_format_config(&heuristic->config, heur_text, sizeof heur_text);
                    fprintf(stderr, "[tune] %s: %s %.2f us (heuristic %s %s); %zu timed, %zu stored, %zu left out "
                                    "of %zu, %.1f s\n",
                            label, win_text, win->median_us, heur_text,
                            heuristic ? "timed" : "does not fit", count - reused, reused, progress.failed, total,
                            seconds);
                    if (json) {
                        size_t tied = 0;
                        for (size_t i = 0; i < count && i < total; i++)
                            tied += results[i].tied != 0;
                        printf("%s{\"k\": %lld, \"n\": %lld, \"m\": %lld, \"bucket\": %lld, \"winner\": \"%s\", "
                               "\"us\": %.3f, \"spread_us\": %.3f, \"tied\": %zu",
                               first ? "" : ",\n ", (long long)k, (long long)n, (long long)m,
                               (long long)mrt_gemm_m_bucket(m), win_text, win->median_us, win->spread_us, tied);
                        if (heuristic)
                            printf(", \"heuristic\": \"%s\", \"heuristic_us\": %.3f, \"speedup\": %.4f", heur_text,
                                   heuristic->median_us, heuristic->median_us / win->median_us);
                        else
                            printf(", \"heuristic\": null, \"heuristic_us\": null, \"speedup\": null");
                        printf(", \"timed\": %zu, \"stored\": %zu, \"left_out\": %zu, \"candidates\": %zu, "
                               "\"recorded\": %s, \"seconds\": %.2f}",
                               count - reused, reused, progress.failed, total, rc == MRT_OK ? "true" : "false",
                               seconds);
                    } else {
                        char shape[32];
                        snprintf(shape, sizeof shape, "%lldx%lld", (long long)k, (long long)n);
                        printf("| %-11s | %4lld | %6lld | %-20s | %8.2f | %7.2f | %-20s | ", shape, (long long)m,
                               (long long)mrt_gemm_m_bucket(m), win_text, win->median_us, win->spread_us,
                               heur_text);
                        if (heuristic)
                            printf("%8.2f | %6.2fx |", heuristic->median_us, heuristic->median_us / win->median_us);
                        else
                            printf("     n/a |     n/a |");
                        printf(" %5zu | %6zu | %8zu | %10zu |\n", count - reused, reused, progress.failed, total);
                    }
                    first = 0;
                    fflush(stdout);
                }
            }
            if (rc != MRT_OK) {
                fprintf(stderr, "marlinrt: tune %s: %s: %s\n", label, mrt_status_str(rc), mrt_errmsg(ctx));
                failures++;
                /* A device that failed stays failed: stop instead of repeating the error. */
                if (rc == MRT_ERR_CUDA || rc == MRT_ERR_NO_DRIVER || rc == MRT_ERR_NO_DEVICE)
                    goto finish;
            }
        }
    }
finish:
    if (json)
        printf("]}\n");
    mrt_tune_stats stats;
    if (mrt_tune_stats_get(ctx, &stats) == MRT_OK && stats.records_skipped)
        fprintf(stderr, "marlinrt: tune: the store %s is read-only: %llu tuning rows were not recorded\n",
                mrt_store_path(ctx), (unsigned long long)stats.records_skipped);
    exit_code = failures ? 1 : 0;
done:
    free(results);
    mrt_context_destroy(ctx);
    return exit_code;
}
