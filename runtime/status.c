/*
 * Status text, error messages and small shared utilities.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

const char *mrt_status_str(mrt_status status)
{
    switch (status) {
#define MRT_STATUS_CASE_(name, value, text)                                                        \
    case name:                                                                                     \
        return text;
        MRT_STATUS_LIST(MRT_STATUS_CASE_)
#undef MRT_STATUS_CASE_
    }
    return "unknown status";
}

#define MRT_STR2_(x) #x
#define MRT_STR_(x) MRT_STR2_(x)

const char *mrt_version_string(void)
{
    return MRT_STR_(MRT_VERSION_MAJOR) "." MRT_STR_(MRT_VERSION_MINOR) "." MRT_STR_(MRT_VERSION_PATCH);
}

unsigned mrt_version_number(void)
{
    return MRT_VERSION_NUMBER;
}

mrt_status mrt__vfail(mrt__err *err, mrt_status status, const char *fmt, va_list ap)
{
    if (err && err->buf && err->size) {
        int n = vsnprintf(err->buf, err->size, fmt, ap);
        /* Mark a cut message so nobody mistakes it for the whole story. */
        if (n >= (int)err->size && err->size > 4)
            memcpy(err->buf + err->size - 4, "...", 4);
    }
    return status;
}

mrt_status mrt__fail(mrt__err *err, mrt_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mrt__vfail(err, status, fmt, ap);
    va_end(ap);
    return status;
}

static _Thread_local char thread_errbuf[MRT_ERRMSG_SIZE];
static _Thread_local mrt__err thread_err;

mrt__err *mrt__thread_err(void)
{
    thread_err.buf = thread_errbuf;
    thread_err.size = sizeof thread_errbuf;
    return &thread_err;
}

mrt_status mrt__null_context(const char *fn)
{
    return mrt__fail(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
}

const char *mrt_thread_errmsg(void)
{
    return thread_errbuf;
}

void mrt_free(void *ptr)
{
    free(ptr);
}

long mrt__env_long(const char *name, long fallback)
{
    const char *text = getenv(name);
    if (!text || !*text)
        return fallback;
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || *end != '\0' || value < 0)
        return fallback;
    return value;
}
