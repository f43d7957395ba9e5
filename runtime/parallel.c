/*
 * A minimal fork-join loop for host work that scales with the weights (repacking a 70B model
 * moves about 35 GB of int4): indices are handed out through an atomic counter so uneven
 * rows balance themselves.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "runtime.h"

int mrt__worker_count(int threads)
{
    if (threads > 0)
        return threads;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1)
        online = 1;
    if (online > 256)
        online = 256;
    return (int)online;
}

typedef struct parallel_job {
    _Atomic int64_t next;
    int64_t count;
    void (*fn)(int64_t i, void *user);
    void *user;
} parallel_job;

static void *parallel_worker(void *arg)
{
    parallel_job *job = arg;
    for (;;) {
        int64_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->count)
            break;
        job->fn(i, job->user);
    }
    return NULL;
}

int mrt__parallel_for(int64_t count, int workers, void (*fn)(int64_t i, void *user), void *user)
{
    parallel_job job = {.count = count, .fn = fn, .user = user};
    atomic_init(&job.next, 0);
    if (workers > count)
        workers = (int)count;
    if (workers <= 1) {
        parallel_worker(&job);
        return 0;
    }
    pthread_t *tids = calloc((size_t)workers - 1, sizeof *tids);
    int started = 0;
    for (; tids && started < workers - 1; started++)
        if (pthread_create(&tids[started], NULL, parallel_worker, &job) != 0)
            break;
    /* The calling thread works too, so the loop finishes even if no thread could start. */
    parallel_worker(&job);
    for (int t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    free(tids);
    return started;
}
