/* The public header included from C11 with nothing before it, under -pedantic: it must compile
 * alone and link against the shared library. */
#include "marlinrt.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
    mrt_config cfg = {0};
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    int failures = 0;
    if (strcmp(mrt_status_str(MRT_ERR_INVALID_ARGUMENT), "invalid argument") != 0)
        failures++;
    if (opts.store_path != NULL || opts.flags != 0 || cfg.threads != 0)
        failures++;
    if (mrt_version_number() != MRT_VERSION_NUMBER)
        failures++;
    printf("%s\n", failures ? "FAILED" : "header compiles and links as C11");
    return failures;
}
