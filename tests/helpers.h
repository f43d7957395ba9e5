/*
 * Shared by the cmocka tests: temporary folders, random data, GPU skipping.
 */
#ifndef MRT_TESTS_HELPERS_H
#define MRT_TESTS_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "marlinrt.h"

/* A fresh empty folder under the test binary dir (or $TMPDIR); returns a static-lifetime copy. */
char *mrt_test_tempdir(const char *tag);

/* path = dir + "/" + name, malloc'd. */
char *mrt_test_path(const char *dir, const char *name);

/* Deterministic per-run random numbers; seed printed once so failures can be reproduced
 * (MRT_TEST_SEED overrides). */
uint64_t mrt_test_rand(void);
float mrt_test_uniform(float lo, float hi);

/* Create a context on an in-memory store or at path; fails the test on error. */
mrt_context *mrt_test_context(const char *store_path, uint32_t flags);

/* Skip (cmocka skip(), with a line saying why) unless a GPU is usable through ctx. skip()
 * leaves the test by longjmp, so ctx is destroyed first; allocate nothing else before it. */
void mrt_test_require_gpu(mrt_context *ctx);

/* Exit status for a test program: cmocka's failure count, or MRT_TEST_SKIPPED when nothing
 * failed but some test skipped, so ctest reports the program as skipped, not passed. */
#define MRT_TEST_SKIPPED 77
/* Count a skip made without mrt_test_require_gpu (call before skip()). */
void mrt_test_note_skip(void);
int mrt_test_exit_status(int failures);

/* Device memory through the library's own driver table (the tests link no CUDA runtime);
 * each fails the test, with the driver's message, on error. mrt_test_download synchronizes
 * first, so a kernel fault shows up there. mrt_test_memset with 0xFF poisons fp16 buffers
 * (0xFFFF is a NaN), so an element a kernel forgot to write cannot pass. */
uint64_t mrt_test_dev_alloc(mrt_context *ctx, size_t bytes);
void mrt_test_dev_free(mrt_context *ctx, uint64_t ptr);
void mrt_test_upload(mrt_context *ctx, uint64_t dst, const void *src, size_t bytes);
void mrt_test_download(mrt_context *ctx, void *dst, uint64_t src, size_t bytes);
void mrt_test_memset(mrt_context *ctx, uint64_t dst, unsigned char value, size_t bytes);

/* The marlinrt CLI to run: $MRT_TEST_CLI, else the one this build made. */
const char *mrt_test_cli_path(void);

/* Run the CLI as `ENV marlinrt --db DB ARGS 2>&1` (env may be ""); see mrt_test_run. */
int mrt_test_cli(const char *env, const char *db, const char *args, char **output);

/* The first column of the first row of sql on the SQLite file at path (opened read-only). */
int64_t mrt_test_sql_int(const char *path, const char *sql);

/* Run a shell command, capturing stdout+stderr (malloc'd) and the exit status. */
int mrt_test_run(const char *command, char **output);

#endif
