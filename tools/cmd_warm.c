/*
 * marlinrt warm: compile kernels into the store ahead of time, with or without a GPU, in
 * parallel.
 *
 * Each worker thread has its own context on the same store file: a context is used by one
 * thread at a time, NVRTC compiles different programs in parallel, and SQLite serialises the
 * inserts (WAL mode and the store's busy timeout), so the workers share nothing but the list
 * of work and the counters.
 *
 * What to compile: --configs default (what mrt_gemm may pick, and the launch utilities'
 * instances), all (every configuration of the grid below that the kernel accepts), or a FILE
 * of lines "KERNEL CONFIG [ARCHS]" where CONFIG is a configuration as `cache ls` prints it
 * (t256.m1.n8.k8.s4.g8), or `default` / `all`; ARCHS (sm_80,sm_90) overrides --arch for the
 * line; `#` starts a comment. --config TEXT adds one configuration of --kernel. --list prints
 * the work in that format instead of doing it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define WARM_MAX_ARCHS 16
#define WARM_MAX_JOBS 64

/* One (kernel, arch, configuration) to compile, and what happened to it. */
typedef struct warm_item {
    const char *kernel; /* static: from mrt_kernel_name */
    int arch;
    mrt_config config;
    mrt_status status;
    int compiled;       /* 1: NVRTC made it now; 0: it was in the store */
    size_t bytes;
    char *message;      /* malloc'd, on failure */
} warm_item;

typedef struct warm_list {
    warm_item *items;
    size_t count, capacity;
} warm_list;

static int list_add(warm_list *list, const char *kernel, int arch, const mrt_config *config)
{
    /* The same instance asked twice (a FILE line repeating a default) is compiled once. */
    for (size_t i = 0; i < list->count; i++)
        if (list->items[i].arch == arch && strcmp(list->items[i].kernel, kernel) == 0 &&
            memcmp(&list->items[i].config, config, sizeof *config) == 0)
            return 0;
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 64;
        warm_item *grown = realloc(list->items, capacity * sizeof *grown);
        if (!grown)
            return -1;
        list->items = grown;
        list->capacity = capacity;
    }
    warm_item *item = &list->items[list->count++];
    memset(item, 0, sizeof *item);
    item->kernel = kernel;
    item->arch = arch;
    item->config = *config;
    return 0;
}

static void list_free(warm_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i].message);
    free(list->items);
}

/* The kernel's static name, so items can keep a pointer; NULL if unknown. */
static const char *kernel_static_name(const char *name)
{
    for (int i = 0; mrt_kernel_name(i); i++)
        if (strcmp(mrt_kernel_name(i), name) == 0)
            return mrt_kernel_name(i);
    return NULL;
}

/* The grid `--configs all` walks; mrt_config_validate keeps what each kernel accepts. Fields a
 * kernel does not read must be 0, which is why 0 is in every list. Stages include 6 and 8 so
 * that `all` holds the autotuner's whole space (mrt_gemm_tune_space): a GPU machine without
 * NVRTC can then tune from the shipped store. Deep pipelines of wide tiles exceed sm_86 /
 * sm_89 shared memory; they compile all the same and are never picked there. */
static const int grid_threads[] = {64, 128, 256, 512};
static const int grid_m_blocks[] = {0, 1, 2, 3, 4, 8, 16};
static const int grid_nk_blocks[] = {0, 4, 8, 16};
static const int grid_stages[] = {0, 2, 3, 4, 6, 8};
static const int grid_group_blocks[] = {-1, 2, 4, 8};
#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static int add_all_configs(warm_list *list, const char *kernel, const int *archs, int arch_count)
{
    for (size_t t = 0; t < COUNT_OF(grid_threads); t++)
        for (size_t m = 0; m < COUNT_OF(grid_m_blocks); m++)
            for (size_t n = 0; n < COUNT_OF(grid_nk_blocks); n++)
                for (size_t k = 0; k < COUNT_OF(grid_nk_blocks); k++)
                    for (size_t s = 0; s < COUNT_OF(grid_stages); s++)
                        for (size_t g = 0; g < COUNT_OF(grid_group_blocks); g++) {
                            mrt_config c = {.threads = grid_threads[t],
                                            .thread_m_blocks = grid_m_blocks[m],
                                            .thread_n_blocks = grid_nk_blocks[n],
                                            .thread_k_blocks = grid_nk_blocks[k],
                                            .stages = grid_stages[s],
                                            .group_blocks = grid_group_blocks[g]};
                            if (mrt_config_validate(NULL, kernel, &c) != MRT_OK)
                                continue;
                            for (int a = 0; a < arch_count; a++)
                                if (mrt_config_supports_arch(kernel, &c, archs[a]) == MRT_OK &&
                                    list_add(list, kernel, archs[a], &c) != 0)
                                    return -1;
                        }
    return 0;
}

static int add_default_configs(warm_list *list, const char *kernel, const int *archs, int arch_count)
{
    size_t count = 0;
    if (mrt_kernel_default_configs(kernel, NULL, 0, &count) != MRT_OK)
        return -1;
    mrt_config *configs = calloc(count ? count : 1, sizeof *configs);
    int rc = configs && mrt_kernel_default_configs(kernel, configs, count, &count) == MRT_OK ? 0 : -1;
    /* A configuration made for one arch only (the GEMM's wgmma kernel: sm_90) is left out of
     * the other archs. */
    for (int a = 0; rc == 0 && a < arch_count; a++)
        for (size_t i = 0; rc == 0 && i < count; i++)
            if (mrt_config_supports_arch(kernel, &configs[i], archs[a]) == MRT_OK)
                rc = list_add(list, kernel, archs[a], &configs[i]);
    free(configs);
    return rc;
}

/* "t256.m1.n8.k8.s4.g8" (the form cache ls and errors print) into a configuration. */
static int parse_config(const char *text, mrt_config *c)
{
    int used = 0;
    memset(c, 0, sizeof *c);
    if (sscanf(text, "t%d.m%d.n%d.k%d.s%d.g%d%n", &c->threads, &c->thread_m_blocks, &c->thread_n_blocks,
               &c->thread_k_blocks, &c->stages, &c->group_blocks, &used) != 6)
        return -1;
    return text[used] == '\0' ? 0 : -1;
}

/* Add "default", "all" or one configuration text of kernel; prints the problem and returns 2
 * (usage) or 1 (memory) on failure. where names the source for messages. */
static int add_selection(warm_list *list, const char *kernel, const char *selection, const int *archs,
                         int arch_count, const char *where)
{
    if (strcmp(selection, "default") == 0)
        return add_default_configs(list, kernel, archs, arch_count) == 0 ? 0 : 1;
    if (strcmp(selection, "all") == 0)
        return add_all_configs(list, kernel, archs, arch_count) == 0 ? 0 : 1;
    mrt_config c;
    if (parse_config(selection, &c) != 0)
        return cli_usage_error("%s: \"%s\" is not a configuration like t256.m1.n8.k8.s4.g8, nor default or all",
                               where, selection);
    mrt_status rc = mrt_config_validate(NULL, kernel, &c);
    if (rc != MRT_OK)
        return cli_usage_error("%s: %s %s: %s", where, kernel, selection, mrt_thread_errmsg());
    for (int a = 0; a < arch_count; a++)
        if (list_add(list, kernel, archs[a], &c) != 0)
            return 1;
    return 0;
}

/* Read a FILE of "KERNEL CONFIG [ARCHS]" lines. */
static int read_config_file(warm_list *list, const char *path, const char *only_kernel, const int *archs,
                            int arch_count)
{
    FILE *file = fopen(path, "r");
    if (!file)
        return cli_usage_error("--configs %s: not default, all, or a readable file", path);
    char line[1024];
    int line_number = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, file)) {
        line_number++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char kernel_text[128], selection[128], arch_text[256], extra[8];
        int fields = sscanf(line, "%127s %127s %255s %7s", kernel_text, selection, arch_text, extra);
        if (fields <= 0)
            continue; /* blank or comment */
        char where[1100];
        snprintf(where, sizeof where, "%s:%d", path, line_number);
        if (fields < 2 || fields > 3) {
            rc = cli_usage_error("%s: expected \"KERNEL CONFIG [ARCHS]\"", where);
            break;
        }
        const char *kernel = kernel_static_name(kernel_text);
        if (!kernel) {
            rc = cli_usage_error("%s: unknown kernel \"%s\"", where, kernel_text);
            break;
        }
        if (only_kernel && strcmp(only_kernel, kernel) != 0)
            continue;
        int line_archs[WARM_MAX_ARCHS], line_arch_count = arch_count;
        memcpy(line_archs, archs, sizeof(int) * (size_t)arch_count);
        if (fields == 3 && (line_arch_count = cli_parse_archs(arch_text, line_archs, WARM_MAX_ARCHS)) <= 0) {
            rc = cli_usage_error("%s: bad arch list \"%s\" (expected e.g. sm_80,sm_90)", where, arch_text);
            break;
        }
        rc = add_selection(list, kernel, selection, line_archs, line_arch_count, where);
    }
    fclose(file);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Workers and progress                                                       */
/* ------------------------------------------------------------------------- */

typedef struct warm_run {
    warm_list *list;
    size_t next;                /* next item to hand out (under lock) */
    size_t done;
    int compiled, present, failed;
    uint64_t bytes;
    pthread_mutex_t lock;
    int show_bar;               /* a progress bar on stderr (a terminal) */
    int show_lines;             /* one line per item on stdout */
    int bar_drawn;
} warm_run;

typedef struct warm_worker {
    warm_run *run;
    mrt_context *ctx;
    pthread_t thread;
    int started;
} warm_worker;

static int terminal_width(void)
{
    struct winsize size;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col >= 40)
        return size.ws_col;
    return 80;
}

/* Redraw the bar; called with the lock held. */
static void draw_bar(warm_run *run, const warm_item *last)
{
    char config_text[96], line[512];
    int width = terminal_width();
    const int bar_width = 24;
    int filled = run->list->count ? (int)(bar_width * run->done / run->list->count) : bar_width;
    char bar[32];
    for (int i = 0; i < bar_width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[bar_width] = '\0';
    cli_format_config(&last->config, config_text, sizeof config_text);
    int length = snprintf(line, sizeof line, "[%s] %zu/%zu  %d compiled, %d present, %d failed  %s sm_%d %s", bar,
                          run->done, run->list->count, run->compiled, run->present, run->failed, last->kernel,
                          last->arch, config_text);
    if (length >= width)
        line[width - 1] = '\0'; /* one line, or the carriage return cannot redraw it */
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    run->bar_drawn = 1;
}

/* Account for a finished item and show it; called with the lock held. */
static void report_item(warm_run *run, const warm_item *item)
{
    char config_text[96];
    cli_format_config(&item->config, config_text, sizeof config_text);
    const char *what = item->status != MRT_OK ? "failed" : item->compiled ? "compiled" : "present";
    run->done++;
    if (item->status != MRT_OK)
        run->failed++;
    else if (item->compiled)
        run->compiled++, run->bytes += item->bytes;
    else
        run->present++;

    if (run->show_lines) {
        printf("  %-9s %-14s sm_%-3d %-24s %8zu bytes\n", what, item->kernel, item->arch, config_text, item->bytes);
        if (item->status != MRT_OK)
            printf("    %s: %s\n", mrt_status_str(item->status), item->message ? item->message : "");
        fflush(stdout);
    } else if (run->show_bar && item->status != MRT_OK) {
        /* A failure stays on screen above the bar. */
        fprintf(stderr, "\r\033[Kfailed %s sm_%d %s: %s: %s\n", item->kernel, item->arch, config_text,
                mrt_status_str(item->status), item->message ? item->message : "");
    }
    if (run->show_bar)
        draw_bar(run, item);
}

static void warm_one(mrt_context *ctx, warm_item *item)
{
    mrt_stats before, after;
    void *cubin = NULL;
    mrt_cubin_origin origin = MRT_CUBIN_FROM_STORE;
    (void)mrt_get_stats(ctx, &before);
    item->status = mrt_get_cubin(ctx, item->arch, item->kernel, &item->config, &cubin, &item->bytes, &origin);
    (void)mrt_get_stats(ctx, &after);
    if (item->status != MRT_OK) {
        item->message = strdup(mrt_errmsg(ctx));
        return;
    }
    mrt_free(cubin);
    item->compiled = origin != MRT_CUBIN_FROM_STORE;
    /* Compiled into a read-only store with no overlay: nothing was kept, so nothing was warmed. */
    if (after.store_writes_skipped > before.store_writes_skipped) {
        item->status = MRT_ERR_STORE;
        item->message = strdup("compiled, but not saved: the store is read-only and there is no overlay "
                               "(MARLINRT_CACHE_OVERLAY)");
    }
}

static void *warm_worker_main(void *arg)
{
    warm_worker *worker = arg;
    warm_run *run = worker->run;
    for (;;) {
        pthread_mutex_lock(&run->lock);
        size_t index = run->next < run->list->count ? run->next++ : run->list->count;
        pthread_mutex_unlock(&run->lock);
        if (index == run->list->count)
            break;
        warm_item *item = &run->list->items[index];
        warm_one(worker->ctx, item);
        pthread_mutex_lock(&run->lock);
        report_item(run, item);
        pthread_mutex_unlock(&run->lock);
    }
    return NULL;
}

static int default_jobs(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1)
        return 1;
    return online > WARM_MAX_JOBS ? WARM_MAX_JOBS : (int)online;
}

typedef struct warm_options {
    const char *arch_list;
    const char *only_kernel;
    const char *configs;        /* default, all or FILE; NULL: default */
    const char *single_configs[16];
    int single_config_count;
    int jobs;                   /* 0: default_jobs() */
    int json;
    int list_only;              /* print the work as FILE lines, compile nothing */
} warm_options;

static int warm(const char *db, const warm_options *o)
{
    int archs[WARM_MAX_ARCHS], arch_count = 0, rc = 0;
    mrt_context *contexts[WARM_MAX_JOBS] = {NULL};
    warm_worker workers[WARM_MAX_JOBS];
    warm_list list = {0};
    int jobs = 0;

    if (o->arch_list && (arch_count = cli_parse_archs(o->arch_list, archs, WARM_MAX_ARCHS)) <= 0)
        return cli_usage_error("bad --arch list \"%s\" (expected e.g. sm_80,sm_90)", o->arch_list);
    if (o->single_config_count && !o->only_kernel)
        return cli_usage_error("warm: --config needs --kernel (a configuration belongs to one kernel)");
    if (o->jobs < 0 || o->jobs > WARM_MAX_JOBS)
        return cli_usage_error("warm: --jobs %d: must be 1..%d", o->jobs, WARM_MAX_JOBS);
    /* The first context may use the GPU, to pick the arch; the workers' never do. */
    if (cli_open_context(db, 0, &contexts[0]))
        return 1;
    if (!o->arch_list) {
        mrt_device_info dev;
        if (mrt_device_get_info(contexts[0], &dev) == MRT_OK) {
            archs[0] = dev.cc_major * 10 + dev.cc_minor;
            arch_count = 1;
            if (!o->json)
                printf("warm: compiling for this machine's GPU, %s (sm_%d)\n", dev.name, archs[0]);
        } else {
            archs[0] = 80;
            archs[1] = 90;
            arch_count = 2;
            if (!o->json)
                printf("warm: no GPU (%s); compiling for sm_80 and sm_90\n", mrt_errmsg(contexts[0]));
        }
    }

    /* What to compile. */
    const char *configs = o->configs ? o->configs : o->single_config_count ? NULL : "default";
    if (configs && strcmp(configs, "default") != 0 && strcmp(configs, "all") != 0) {
        rc = read_config_file(&list, configs, o->only_kernel, archs, arch_count);
    } else if (configs) {
        for (int k = 0; rc == 0 && mrt_kernel_name(k); k++)
            if (!o->only_kernel || strcmp(o->only_kernel, mrt_kernel_name(k)) == 0)
                rc = add_selection(&list, mrt_kernel_name(k), configs, archs, arch_count, "--configs");
    }
    for (int i = 0; rc == 0 && i < o->single_config_count; i++)
        rc = add_selection(&list, kernel_static_name(o->only_kernel), o->single_configs[i], archs, arch_count,
                           "--config");
    if (rc == 1)
        fprintf(stderr, "marlinrt: warm: out of memory listing the configurations\n");
    if (rc != 0)
        goto done;

    if (o->list_only) {
        /* In the FILE format, so the output can be edited and fed back with --configs. */
        for (size_t i = 0; i < list.count; i++) {
            char config_text[96];
            cli_format_config(&list.items[i].config, config_text, sizeof config_text);
            printf("%s %s sm_%d\n", list.items[i].kernel, config_text, list.items[i].arch);
        }
        printf("# %zu configurations\n", list.count);
        goto done;
    }
    if (mrt_store_read_only(contexts[0]) && !mrt_store_overlay_path(contexts[0]))
        fprintf(stderr,
                "marlinrt: warm: the store %s is read-only (%s) and there is no overlay: anything missing will "
                "fail\n",
                mrt_store_path(contexts[0]), mrt_store_read_only_reason(contexts[0]));

    jobs = o->jobs ? o->jobs : default_jobs();
    if ((size_t)jobs > list.count)
        jobs = list.count ? (int)list.count : 1;
    for (int j = 1; j < jobs; j++)
        if (cli_open_context(db, MRT_CTX_OFFLINE, &contexts[j])) {
            rc = 1;
            goto done;
        }

    warm_run run = {.list = &list};
    run.show_bar = !o->json && isatty(STDERR_FILENO);
    run.show_lines = !o->json && !(run.show_bar && isatty(STDOUT_FILENO));
    if (pthread_mutex_init(&run.lock, NULL) != 0) {
        fprintf(stderr, "marlinrt: warm: pthread_mutex_init failed\n");
        rc = 1;
        goto done;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* Workers 1.. run on threads; worker 0 is this thread, so the work finishes even when no
     * thread can be started. */
    for (int j = 0; j < jobs; j++) {
        workers[j] = (warm_worker){.run = &run, .ctx = contexts[j]};
        if (j > 0 && pthread_create(&workers[j].thread, NULL, warm_worker_main, &workers[j]) == 0)
            workers[j].started = 1;
    }
    warm_worker_main(&workers[0]);
    for (int j = 1; j < jobs; j++)
        if (workers[j].started)
            pthread_join(workers[j].thread, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_mutex_destroy(&run.lock);
    if (run.bar_drawn)
        fprintf(stderr, "\n");
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

    if (o->json) {
        printf("{\"results\": [");
        for (size_t i = 0; i < list.count; i++) {
            const warm_item *item = &list.items[i];
            char config_text[96];
            cli_format_config(&item->config, config_text, sizeof config_text);
            printf("%s{\"kernel\": \"%s\", \"arch\": \"sm_%d\", \"config\": \"%s\", \"result\": \"%s\", \"bytes\": %zu",
                   i ? ",\n " : "", item->kernel, item->arch, config_text,
                   item->status != MRT_OK ? "failed" : item->compiled ? "compiled" : "present", item->bytes);
            if (item->status != MRT_OK)
                printf(", \"error\": "), cli_json_string(item->message ? item->message : "");
            printf("}");
        }
        printf("], \"compiled\": %d, \"present\": %d, \"failed\": %d, \"bytes\": %llu, \"seconds\": %.2f, "
               "\"jobs\": %d, \"store\": ",
               run.compiled, run.present, run.failed, (unsigned long long)run.bytes, seconds, jobs);
        cli_json_string(mrt_store_path(contexts[0]));
        printf(", \"overlay\": ");
        if (mrt_store_overlay_path(contexts[0]))
            cli_json_string(mrt_store_overlay_path(contexts[0]));
        else
            printf("null");
        printf("}\n");
    } else {
        printf("warm: %d compiled, %d already present, %d failed, %llu bytes, %.2f s, %d job%s, store %s%s%s\n",
               run.compiled, run.present, run.failed, (unsigned long long)run.bytes, seconds, jobs,
               jobs == 1 ? "" : "s", mrt_store_path(contexts[0]),
               mrt_store_overlay_path(contexts[0]) ? ", overlay " : "",
               mrt_store_overlay_path(contexts[0]) ? mrt_store_overlay_path(contexts[0]) : "");
    }
    rc = run.failed ? 1 : 0;

done:
    for (int j = 0; j < WARM_MAX_JOBS; j++)
        mrt_context_destroy(contexts[j]);
    list_free(&list);
    return rc;
}

int cmd_warm(const char *db, int argc, char **argv)
{
    warm_options o;
    memset(&o, 0, sizeof o);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            o.json = 1;
        else if (strcmp(argv[i], "--list") == 0)
            o.list_only = 1;
        else if (strcmp(argv[i], "--arch") == 0 && i + 1 < argc)
            o.arch_list = argv[++i];
        else if (strcmp(argv[i], "--kernel") == 0 && i + 1 < argc)
            o.only_kernel = argv[++i];
        else if (strcmp(argv[i], "--configs") == 0 && i + 1 < argc)
            o.configs = argv[++i];
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            if (o.single_config_count == (int)COUNT_OF(o.single_configs))
                return cli_usage_error("warm: at most %zu --config options", COUNT_OF(o.single_configs));
            o.single_configs[o.single_config_count++] = argv[++i];
        } else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) {
            char *end = NULL;
            long jobs = strtol(argv[++i], &end, 10);
            if (!*argv[i] || *end || jobs < 1 || jobs > WARM_MAX_JOBS)
                return cli_usage_error("warm: --jobs \"%s\": must be 1..%d", argv[i], WARM_MAX_JOBS);
            o.jobs = (int)jobs;
        } else
            return cli_usage_error("warm: unknown argument \"%s\"", argv[i]);
    }
    if (o.only_kernel && !kernel_static_name(o.only_kernel))
        return cli_usage_error("unknown kernel \"%s\"", o.only_kernel);
    return warm(db, &o);
}
