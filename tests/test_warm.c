/*
 * `marlinrt warm` (tools/cmd_warm.c), run as a user would: configuration lists (default, all,
 * FILE, --config), parallel jobs, the summary, read-only stores and the overlay, progress.
 * dequant_w4 stands in for the kernels where which one does not matter: it compiles in a
 * tenth of a second.
 */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

static int64_t cubin_rows(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM cubin", -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    int64_t count = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return count;
}

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *path = mrt_test_path(dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int count_of(const char *text, const char *needle)
{
    int count = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        count++;
    return count;
}

static void test_warm__configs_file_in_parallel_then_nothing_to_do(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("warm-file");
    char *db = mrt_test_path(dir, "cache.db");
    char *list = write_file(dir, "configs.txt",
                            "# what the image needs\n"
                            "dequant_w4 default                      # 4 configurations, for each --arch\n"
                            "\n"
                            "dequant_w4 t128.m0.n0.k0.s0.g4 sm_86    # one more, for sm_86 only\n"
                            "dequant_w4 t256.m0.n0.k0.s0.g8          # already in the defaults\n");
    char args[8192];
    snprintf(args, sizeof args, "warm --arch sm_80,sm_90 --configs '%s' --jobs 3", list);
    char *out = NULL;
    int status = mrt_test_cli("", db, args, &out);
    if (status != 0)
        fail_msg("warm failed (%d):\n%s", status, out);
    assert_non_null(strstr(out, "warm: 9 compiled, 0 already present, 0 failed"));
    assert_non_null(strstr(out, "3 jobs"));
    assert_int_equal(count_of(out, "  compiled  "), 9);
    assert_non_null(strstr(out, "sm_86  t128.m0.n0.k0.s0.g4"));
    free(out);
    assert_int_equal(cubin_rows(db), 9);

    /* A second run compiles nothing, and writes no new rows. */
    status = mrt_test_cli("", db, args, &out);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "warm: 0 compiled, 9 already present, 0 failed"));
    free(out);
    assert_int_equal(cubin_rows(db), 9);

    /* One configuration by --config; the JSON summary. */
    status = mrt_test_cli("", db, "warm --arch sm_80 --kernel dequant_w4 --config t64.m0.n0.k0.s0.g2 --json", &out);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "\"config\": \"t64.m0.n0.k0.s0.g2\", \"result\": \"compiled\""));
    assert_non_null(strstr(out, "\"compiled\": 1, \"present\": 0, \"failed\": 0"));
    assert_non_null(strstr(out, "\"jobs\": 1"));
    assert_non_null(strstr(out, "\"overlay\": null"));
    free(out);
    assert_int_equal(cubin_rows(db), 10);
    free(list);
    free(db);
    free(dir);
}

static void test_warm__all_lists_every_configuration_the_kernels_accept(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("warm-all");
    char *db = mrt_test_path(dir, "cache.db");
    char *out = NULL;
    assert_int_equal(mrt_test_cli("", db, "warm --arch sm_80 --configs all --list", &out), 0);
    /* dequant_w4: 4 thread counts x 4 group sizes. marlin_w4a16: threads 128/256, 1..4
     * m-blocks, n and k blocks 4/8/16 (256 threads need more than a 64 x 64 tile), stages
     * 2, 3, 4, 6, 8, 4 group sizes: 2 * 4 * 9 * 5 * 4 less the 256-thread 64 x 64 tiles. */
    assert_int_equal(count_of(out, "\ndequant_w4 ") + (strncmp(out, "dequant_w4 ", 11) == 0), 16);
    assert_int_equal(count_of(out, "marlin_w4a16 "), 2 * 4 * 9 * 5 * 4 - 4 * 5 * 4);
    assert_non_null(strstr(out, "# 1376 configurations"));
    assert_int_equal(cubin_rows(db), 0);

    /* The listing is a configuration file. */
    char *list = write_file(dir, "all.txt", out);
    free(out);
    char args[8192];
    snprintf(args, sizeof args, "warm --arch sm_90 --configs '%s' --kernel dequant_w4 --list", list);
    assert_int_equal(mrt_test_cli("", db, args, &out), 0);
    assert_non_null(strstr(out, "# 16 configurations"));
    assert_int_equal(count_of(out, " sm_80\n"), 16); /* a line's own arch wins over --arch */
    free(out);

    assert_int_equal(mrt_test_cli("", db, "warm --arch sm_80,sm_90 --configs default --list", &out), 0);
    assert_non_null(strstr(out, "dequant_w4 t256.m0.n0.k0.s0.g-1 sm_80"));
    assert_non_null(strstr(out, "marlin_w4a16 t256.m1.n8.k8.s4.g8 sm_90"));
    free(out);
    free(list);
    free(db);
    free(dir);
}

static void test_warm__bad_lists_and_options_are_usage_errors(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("warm-bad");
    char *db = mrt_test_path(dir, "cache.db");
    static const struct {
        const char *file;
        const char *message;
    } bad_files[] = {
        {"dequant_w4 default\nflux_capacitor default\n", "configs.txt:2: unknown kernel \"flux_capacitor\""},
        {"dequant_w4 t256.m0.n0\n", "configs.txt:1: \"t256.m0.n0\" is not a configuration"},
        {"dequant_w4 t100.m0.n0.k0.s0.g8\n", "threads = 100"},
        {"marlin_w4a16 t256.m1.n4.k4.s4.g8\n", "multiple of threads"},
        {"dequant_w4 default sm_x\n", "bad arch list"},
        {"dequant_w4\n", "expected \"KERNEL CONFIG [ARCHS]\""},
    };
    char *out = NULL;
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        char *list = write_file(dir, "configs.txt", bad_files[i].file);
        char args[8192];
        snprintf(args, sizeof args, "warm --arch sm_80 --configs '%s'", list);
        assert_int_equal(mrt_test_cli("", db, args, &out), 2);
        if (!strstr(out, bad_files[i].message))
            fail_msg("expected \"%s\" in:\n%s", bad_files[i].message, out);
        free(out);
        free(list);
    }
    static const struct {
        const char *args;
        const char *message;
    } bad_args[] = {
        {"warm --config t256.m0.n0.k0.s0.g8", "--config needs --kernel"},
        {"warm --jobs 0", "--jobs \"0\""},
        {"warm --jobs 2x", "--jobs \"2x\""},
        {"warm --arch sm_80 --configs /nonexistent/list", "not default, all, or a readable file"},
        {"warm --kernel dequant_w4 --config nonsense --arch sm_80", "\"nonsense\" is not a configuration"},
    };
    for (size_t i = 0; i < sizeof bad_args / sizeof bad_args[0]; i++) {
        assert_int_equal(mrt_test_cli("", db, bad_args[i].args, &out), 2);
        if (!strstr(out, bad_args[i].message))
            fail_msg("expected \"%s\" in:\n%s", bad_args[i].message, out);
        free(out);
    }
    free(db);
    free(dir);
}

static void test_warm__read_only_store_keeps_nothing_unless_there_is_an_overlay(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("warm-ro");
    char *db = mrt_test_path(dir, "cache.db");
    char *overlay = mrt_test_path(dir, "overlay.db");
    char *out = NULL;
    assert_int_equal(mrt_test_cli("", db, "warm --arch sm_80 --kernel dequant_w4 --config t256.m0.n0.k0.s0.g8", &out), 0);
    free(out);

    const char *two = "warm --arch sm_80 --kernel dequant_w4 --config t256.m0.n0.k0.s0.g8 "
                      "--config t256.m0.n0.k0.s0.g4";
    assert_int_equal(mrt_test_cli("MARLINRT_CACHE_READONLY=1", db, two, &out), 1);
    assert_non_null(strstr(out, "is read-only"));
    assert_non_null(strstr(out, "0 compiled, 1 already present, 1 failed"));
    assert_non_null(strstr(out, "not saved"));
    free(out);
    assert_int_equal(cubin_rows(db), 1);

    char env[4200];
    snprintf(env, sizeof env, "MARLINRT_CACHE_READONLY=1 MARLINRT_CACHE_OVERLAY='%s'", overlay);
    assert_int_equal(mrt_test_cli(env, db, two, &out), 0);
    assert_non_null(strstr(out, "1 compiled, 1 already present, 0 failed"));
    assert_non_null(strstr(out, ", overlay "));
    free(out);
    assert_int_equal(cubin_rows(db), 1);
    assert_int_equal(cubin_rows(overlay), 1);
    free(overlay);
    free(db);
    free(dir);
}

static void test_warm__progress_bar_on_a_terminal(void **state)
{
    (void)state;
    if (access("/usr/bin/script", X_OK) != 0) {
        mrt_test_note_skip();
        fprintf(stderr, "[SKIPPED] no /usr/bin/script to give warm a terminal\n");
        skip();
    }
    char *dir = mrt_test_tempdir("warm-tty");
    char *db = mrt_test_path(dir, "cache.db");
    char command[8192];
    /* script(1) runs the command on a pseudo-terminal, so stdout and stderr are both one. */
    snprintf(command, sizeof command,
             "script -qec \"'%s' --db '%s' warm --arch sm_80 --kernel dequant_w4 --jobs 2\" /dev/null",
             mrt_test_cli_path(), db);
    char *out = NULL;
    assert_int_equal(mrt_test_run(command, &out), 0);
    assert_non_null(strstr(out, "\r\033[K[#"));
    assert_non_null(strstr(out, "] 4/4"));
    assert_null(strstr(out, "  compiled  ")); /* no per-item lines on a terminal */
    assert_non_null(strstr(out, "warm: 4 compiled"));
    free(out);
    free(db);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warm__configs_file_in_parallel_then_nothing_to_do),
        cmocka_unit_test(test_warm__all_lists_every_configuration_the_kernels_accept),
        cmocka_unit_test(test_warm__bad_lists_and_options_are_usage_errors),
        cmocka_unit_test(test_warm__read_only_store_keeps_nothing_unless_there_is_an_overlay),
        cmocka_unit_test(test_warm__progress_bar_on_a_terminal),
    };
    return mrt_test_exit_status(cmocka_run_group_tests(tests, NULL, NULL));
}
