// The public header included from C++ with nothing before it: it must compile alone, give C
// linkage, and its status text must match the enum.
#include "marlinrt.h"

#include <cstdio>
#include <cstring>

int main()
{
    int failures = 0;
    if (std::strcmp(mrt_status_str(MRT_OK), "success") != 0) {
        std::printf("mrt_status_str(MRT_OK) = %s\n", mrt_status_str(MRT_OK));
        failures++;
    }
    if (std::strcmp(mrt_status_str(MRT_ERR_NO_DRIVER), "success") == 0) {
        std::printf("MRT_ERR_NO_DRIVER has the success text\n");
        failures++;
    }
    if (mrt_version_number() != MRT_VERSION_NUMBER) {
        std::printf("library version %u, header %d\n", mrt_version_number(), MRT_VERSION_NUMBER);
        failures++;
    }
    mrt_config cfg = mrt_config();
    if (cfg.threads != 0) {
        failures++;
    }
    std::printf("%s\n", failures ? "FAILED" : "header compiles and links as C++");
    return failures ? 1 : 0;
}
