/*
 * marlinrt — Marlin-format INT4 x FP16 (W4A16) matrix products on NVIDIA GPUs,
 * with kernels compiled at run time by NVRTC and kept in a SQLite cubin store.
 *
 * This header is the whole public API. It needs no CUDA header: device pointers
 * are passed as uint64_t and streams as void * (a CUstream or cudaStream_t).
 *
 * Conventions, in the style of zstd and SQLite:
 *   - every call that can fail returns an mrt_status; mrt_status_str() gives a
 *     fixed text for the code and mrt_errmsg(ctx) the detailed message of the
 *     last failure on that context (the NVRTC log excerpt, the CUresult name,
 *     the offending argument);
 *   - status values are pinned and only ever appended;
 *   - configuration and result structs are plain data with reserved fields, safe
 *     to store and reload;
 *   - a context must not be used by two threads at once; create one per thread.
 *     Library loading, the module table and the store file are shared safely
 *     between contexts and threads.
 */
#ifndef MARLINRT_H
#define MARLINRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MRT_API __attribute__((visibility("default")))
#else
#define MRT_API
#endif

#define MRT_VERSION_MAJOR 0
#define MRT_VERSION_MINOR 1
#define MRT_VERSION_PATCH 0
#define MRT_VERSION_NUMBER (MRT_VERSION_MAJOR * 10000 + MRT_VERSION_MINOR * 100 + MRT_VERSION_PATCH)

/*
 * Status codes. X(name, value, text): values are pinned; new codes are only
 * appended, never renumbered or removed.
 */
#define MRT_STATUS_LIST(X)                                                             \
    X(MRT_OK, 0, "success")                                                            \
    X(MRT_ERR_INVALID_ARGUMENT, 1, "invalid argument")                                 \
    X(MRT_ERR_OUT_OF_MEMORY, 2, "out of host memory")                                  \
    X(MRT_ERR_NO_DRIVER, 3, "CUDA driver library not found or not usable")             \
    X(MRT_ERR_NO_DEVICE, 4, "no usable CUDA device")                                   \
    X(MRT_ERR_NO_NVRTC, 5, "NVRTC library not found or not usable")                    \
    X(MRT_ERR_COMPILE, 6, "kernel compilation failed")                                 \
    X(MRT_ERR_CUDA, 7, "CUDA driver call failed")                                      \
    X(MRT_ERR_STORE, 8, "cubin store error")                                           \
    X(MRT_ERR_STORE_VERSION, 9, "cubin store has an unknown schema version")           \
    X(MRT_ERR_UNSUPPORTED, 10, "unsupported shape, configuration or architecture")     \
    X(MRT_ERR_NOT_FOUND, 11, "not found")                                              \
    X(MRT_ERR_WORKSPACE, 12, "workspace too small")                                    \
    X(MRT_ERR_INTERNAL, 13, "internal error")

typedef enum mrt_status {
#define MRT_STATUS_ENUM_(name, value, text) name = value,
    MRT_STATUS_LIST(MRT_STATUS_ENUM_)
#undef MRT_STATUS_ENUM_
} mrt_status;

/** Static text for a status code; never NULL ("unknown status" for values not in the list). */
MRT_API const char *mrt_status_str(mrt_status status);

/** Library version as "MAJOR.MINOR.PATCH"; static text. */
MRT_API const char *mrt_version_string(void);

/** Library version as MRT_VERSION_NUMBER of the library actually loaded. */
MRT_API unsigned mrt_version_number(void);

/* ------------------------------------------------------------------------- */
/* Context                                                                    */
/* ------------------------------------------------------------------------- */

typedef struct mrt_context mrt_context;

/** Context flags (bitwise or). */
enum mrt_context_flag {
    /** Never touch the CUDA driver: compile and store only (build machines, `warm`). */
    MRT_CTX_OFFLINE = 1u << 0,
    /** Keep cubins in memory only; open no store file. */
    MRT_CTX_NO_STORE = 1u << 1,
    /** Fail mrt_context_create when no driver or device is usable, instead of on first GPU use. */
    MRT_CTX_REQUIRE_DEVICE = 1u << 2,
    /** Open the store read-only (also chosen automatically when it cannot be written). */
    MRT_CTX_STORE_READONLY = 1u << 3,
    /** Tune a GEMM shape on its first use (within a time budget) and record the winner; the
     *  environment variable MARLINRT_AUTOTUNE=1 sets this flag too. */
    MRT_CTX_AUTOTUNE = 1u << 4,
};

typedef struct mrt_context_options {
    /** Store file; NULL means MARLINRT_CACHE, else $XDG_CACHE_HOME/marlinrt/cache.db, else
     *  ~/.cache/marlinrt/cache.db. Missing parent folders are created. */
    const char *store_path;
    /** CUDA device ordinal used for launches (default 0). */
    int device;
    /** mrt_context_flag bits. */
    uint32_t flags;
    /** Writable overlay store: new cubins and tuning records go here, and lookups read it after
     *  the store at store_path, which is then never written. NULL means MARLINRT_CACHE_OVERLAY,
     *  else no overlay. Meant for a read-only shipped store (see docs/deploying.md). */
    const char *overlay_path;
    uint32_t reserved[8];
} mrt_context_options;

/** Fill opts with the defaults (NULL store path, device 0, no flags). */
MRT_API void mrt_context_options_init(mrt_context_options *opts);

/**
 * Create a context: opens (or creates) the cubin store and prepares lazy loading of
 * the driver and NVRTC.
 *
 * opts may be NULL for the defaults. On success *out owns a context to be released with
 * mrt_context_destroy. On failure *out is NULL and mrt_thread_errmsg() gives the message.
 *
 * Returns MRT_OK; MRT_ERR_INVALID_ARGUMENT (out is NULL, bad device ordinal);
 * MRT_ERR_OUT_OF_MEMORY; MRT_ERR_STORE / MRT_ERR_STORE_VERSION (the store cannot be
 * opened, or it was written by an unknown schema; a read-only store that does not exist; an
 * overlay that cannot be written); MRT_ERR_INVALID_ARGUMENT also for MARLINRT_CACHE_READONLY
 * other than 0 or 1, or an overlay path equal to the store path; with MRT_CTX_REQUIRE_DEVICE also
 * MRT_ERR_NO_DRIVER, MRT_ERR_NO_DEVICE, MRT_ERR_CUDA.
 */
MRT_API mrt_status mrt_context_create(const mrt_context_options *opts, mrt_context **out);

/** Message of the last failed call without a context on the calling thread: mrt_context_create,
 *  the host packing functions, and any call given a NULL ctx ("" if none). Valid until the next
 *  such call on the thread. */
MRT_API const char *mrt_thread_errmsg(void);

/** Release a context and everything it owns. NULL is a no-op. Loaded modules stay in the
 *  process-wide module table until the process ends. */
MRT_API void mrt_context_destroy(mrt_context *ctx);

/** Detailed message of the last failure on ctx ("" after a success); valid until the next
 *  call on ctx. A NULL ctx gives a fixed text. */
MRT_API const char *mrt_errmsg(const mrt_context *ctx);

/** Store path the context uses (":memory:" with MRT_CTX_NO_STORE). */
MRT_API const char *mrt_store_path(const mrt_context *ctx);

/**
 * Write the default store path (see mrt_context_options.store_path) into buf.
 * Returns MRT_OK, MRT_ERR_INVALID_ARGUMENT (buf NULL or too small), MRT_ERR_NOT_FOUND
 * (none of MARLINRT_CACHE, XDG_CACHE_HOME, HOME is set).
 */
MRT_API mrt_status mrt_default_store_path(char *buf, size_t size);

/* ------------------------------------------------------------------------- */
/* Libraries and device                                                       */
/* ------------------------------------------------------------------------- */

/**
 * NVRTC version, loading NVRTC if needed (MARLINRT_NVRTC_PATH names the library to
 * use; else libnvrtc.so.13, .so.12, .so, then the same under $CUDA_HOME/lib64 and
 * /usr/local/cuda/lib64). Returns MRT_OK, MRT_ERR_INVALID_ARGUMENT, MRT_ERR_NO_NVRTC
 * (the message lists every path tried and why each failed).
 */
MRT_API mrt_status mrt_nvrtc_version(mrt_context *ctx, int *major, int *minor);

/** Facts about the context's device. */
typedef struct mrt_device_info {
    char name[256];
    int ordinal;
    int cc_major, cc_minor;     /* compute capability, e.g. 9, 0 */
    int sm_count;               /* multiprocessors */
    int max_smem_optin;         /* bytes of shared memory a block may opt in to */
    int l2_bytes;               /* L2 cache size */
    int memory_clock_khz;       /* peak memory clock */
    int driver_version;         /* e.g. 13000 for CUDA 13.0 */
    int reserved[8];
} mrt_device_info;

/**
 * Open the driver and device if not yet done and describe the device.
 * Returns MRT_OK; MRT_ERR_INVALID_ARGUMENT; MRT_ERR_UNSUPPORTED (an MRT_CTX_OFFLINE
 * context); MRT_ERR_NO_DRIVER (libcuda.so.1 missing, a stub library, or cuInit failed;
 * MARLINRT_CUDA_DRIVER_PATH overrides the library name); MRT_ERR_NO_DEVICE (no device
 * with that ordinal); MRT_ERR_CUDA.
 */
MRT_API mrt_status mrt_device_get_info(mrt_context *ctx, mrt_device_info *info);

/* ------------------------------------------------------------------------- */
/* Kernels, configurations and cubins                                         */
/* ------------------------------------------------------------------------- */

/**
 * A tile configuration: the template arguments of a kernel. Plain data; zero the
 * reserved fields. Each kernel documents which fields it reads; the others must be 0.
 *   threads          threads per block
 *   thread_m_blocks  16-row blocks of A per block tile
 *   thread_n_blocks  16-column blocks of B per block tile
 *   thread_k_blocks  16-deep blocks of K per block tile
 *   stages           depth of the shared-memory pipeline
 *   group_blocks     16-deep K blocks per scale group, -1 for per-channel scales
 */
typedef struct mrt_config {
    int32_t threads;
    int32_t thread_m_blocks;
    int32_t thread_n_blocks;
    int32_t thread_k_blocks;
    int32_t stages;
    int32_t group_blocks;
    int32_t reserved[2];
} mrt_config;

/** Kernels the library ships. Names are stable; the list is only appended. */
#define MRT_KERNEL_DEQUANT_W4 "dequant_w4"
#define MRT_KERNEL_MARLIN_W4A16 "marlin_w4a16"
/** The sm_90 wgmma configurations of marlin_w4a16 in their stream-K form, which mrt_gemm
 *  runs where a launch's output tiles fill their last wave only partly (same configurations,
 *  a cubin of its own; warm it with the rest for a store that must serve without NVRTC). */
#define MRT_KERNEL_MARLIN_W4A16_SK "marlin_w4a16_sk"

/**
 * Name of the i-th shipped kernel (0-based), or NULL past the end.
 */
MRT_API const char *mrt_kernel_name(int index);

/**
 * The configurations of a kernel that `marlinrt warm` compiles by default (for the GEMM: every
 * configuration mrt_gemm may pick). Writes up to capacity entries (configs may be NULL with
 * capacity 0) and the total to *count.
 * Returns MRT_OK, MRT_ERR_INVALID_ARGUMENT, MRT_ERR_NOT_FOUND (unknown kernel).
 */
MRT_API mrt_status mrt_kernel_default_configs(const char *kernel, mrt_config *configs, size_t capacity,
                                              size_t *count);

/**
 * Check that cfg is a configuration the named kernel can be compiled with.
 * Returns MRT_OK, MRT_ERR_INVALID_ARGUMENT (NULL argument), MRT_ERR_NOT_FOUND
 * (unknown kernel), MRT_ERR_UNSUPPORTED (the message names the field and its bounds).
 */
MRT_API mrt_status mrt_config_validate(mrt_context *ctx, const char *kernel, const mrt_config *cfg);

/**
 * Check that cfg is valid for the named kernel and can be compiled for sm_<arch> (e.g. 80, 90).
 * The GEMM's wgmma configurations (thread_m_blocks 8 or 16) exist for sm_90 only; every other
 * configuration compiles for every arch NVRTC targets. No context: the message goes to
 * mrt_thread_errmsg(). Returns MRT_OK, MRT_ERR_INVALID_ARGUMENT (NULL cfg), MRT_ERR_NOT_FOUND
 * (unknown kernel), MRT_ERR_UNSUPPORTED (invalid, or not for that arch).
 */
MRT_API mrt_status mrt_config_supports_arch(const char *kernel, const mrt_config *cfg, int arch);

/** Where a cubin came from. */
typedef enum mrt_cubin_origin {
    MRT_CUBIN_FROM_STORE = 0,   /* found in the store with a good checksum */
    MRT_CUBIN_COMPILED = 1,     /* compiled by NVRTC now and inserted */
    MRT_CUBIN_RECOMPILED = 2,   /* the stored blob failed its checksum; compiled and replaced */
} mrt_cubin_origin;

/**
 * Get the cubin of kernel for sm_<arch> (e.g. 80, 86, 89, 90) and cfg, without any GPU:
 * looks the store up first and compiles with NVRTC on a miss. Without NVRTC, a row made
 * by any NVRTC version for the same source, options and configuration is used.
 *
 * On success *cubin is a malloc'd copy the caller frees with mrt_free, *size its bytes,
 * and *origin (may be NULL) says where it came from.
 * Returns MRT_OK; MRT_ERR_INVALID_ARGUMENT; MRT_ERR_NOT_FOUND (unknown kernel);
 * MRT_ERR_UNSUPPORTED (bad configuration or an arch NVRTC cannot target); MRT_ERR_NO_NVRTC
 * (a miss and no NVRTC); MRT_ERR_COMPILE (the message carries the NVRTC log);
 * MRT_ERR_STORE; MRT_ERR_OUT_OF_MEMORY.
 */
MRT_API mrt_status mrt_get_cubin(mrt_context *ctx, int arch, const char *kernel, const mrt_config *cfg,
                                 void **cubin, size_t *size, mrt_cubin_origin *origin);

/** Free memory the library allocated for the caller. NULL is a no-op. */
MRT_API void mrt_free(void *ptr);

/** Counters of what a context did, for tests and tools. */
typedef struct mrt_stats {
    uint64_t nvrtc_compiles;     /* successful NVRTC compilations */
    uint64_t store_hits;         /* cubins served from the store */
    uint64_t store_misses;       /* lookups that found no usable row */
    uint64_t corrupt_recompiled; /* rows whose blob failed its checksum and were replaced */
    uint64_t modules_loaded;     /* cuModuleLoadData calls made for this context */
    uint64_t launches;           /* kernels launched */
    uint64_t store_writes_skipped; /* compiled cubins kept in memory only: no writable store */
    uint64_t driver_refusals;    /* cubins cuModuleLoadData refused (evicted, then replaced) */
    uint64_t overlapped_launches; /* of launches, those made with programmatic dependent launch */
    uint64_t reserved[3];
} mrt_stats;

/** Copy ctx's counters. Returns MRT_OK or MRT_ERR_INVALID_ARGUMENT. */
MRT_API mrt_status mrt_get_stats(const mrt_context *ctx, mrt_stats *stats);

/* ------------------------------------------------------------------------- */
/* Store                                                                      */
/* ------------------------------------------------------------------------- */

/** One cubin row of the store, as `marlinrt cache ls` shows it. Strings are valid only
 *  during the callback. */
typedef struct mrt_cubin_row {
    const char *key_hex;        /* 32 hex digits of the XXH3-128 key */
    const char *kernel;
    int arch;                   /* 90 for sm_90 */
    mrt_config config;
    int nvrtc_major, nvrtc_minor;
    uint64_t source_hash;       /* XXH3-64 of the kernel source the row was compiled from */
    int format_version;         /* library cubin format version the row was made for */
    uint64_t size;              /* blob bytes */
    int64_t created_at;         /* Unix seconds */
    int64_t last_used_at;       /* Unix seconds */
    int64_t hit_count;
    double compile_ms;
    int stale;                  /* mrt_stale bits: why this process would never use the row */
    int in_overlay;             /* 1 for a row of the overlay store, 0 for the base store */
    int reserved[2];
} mrt_cubin_row;

/** Called once per row; return non-zero to stop early. */
typedef int (*mrt_cubin_row_fn)(const mrt_cubin_row *row, void *user);

/** Why a row is stale (bitwise or in mrt_cubin_row.stale / mrt_tuning_winner_row.stale). */
enum mrt_stale {
    /** Made by another NVRTC version than the one this process loads (only known with NVRTC). */
    MRT_STALE_NVRTC = 1 << 0,
    /** Made from another text of the kernel source than the one embedded in this library. */
    MRT_STALE_SOURCE = 1 << 1,
    /** Made for another cubin format version (kernel parameter contract). */
    MRT_STALE_FORMAT = 1 << 2,
    /** Made for a kernel this library does not have. */
    MRT_STALE_KERNEL = 1 << 3,
};

/**
 * Call fn for every cubin row, ordered by kernel, arch, configuration: the base store's rows,
 * then the overlay's (in_overlay = 1). Each row's stale bits are filled in.
 * Returns MRT_OK, MRT_ERR_INVALID_ARGUMENT, MRT_ERR_STORE.
 */
MRT_API mrt_status mrt_store_foreach_cubin(mrt_context *ctx, mrt_cubin_row_fn fn, void *user);

/** Totals for `marlinrt info`. */
typedef struct mrt_store_summary {
    int schema_version;
    uint64_t cubin_rows;
    uint64_t cubin_bytes;
    uint64_t stale_cubin_rows;   /* rows with any mrt_stale bit */
    uint64_t tuning_device_rows;
    uint64_t tuning_timing_rows;
    uint64_t tuning_winner_rows;
    uint64_t reserved[2];
} mrt_store_summary;

/** Summarise the store at the context's store path (not its overlay).
 *  Returns MRT_OK, MRT_ERR_INVALID_ARGUMENT, MRT_ERR_STORE. */
MRT_API mrt_status mrt_store_summary_get(mrt_context *ctx, mrt_store_summary *summary);

/*
 * Read-only stores and the overlay.
 *
 * The store at mrt_context_options.store_path (or MARLINRT_CACHE) is opened read-only when
 * the flag MRT_CTX_STORE_READONLY or MARLINRT_CACHE_READONLY=1 asks for it, or by itself
 * when the file exists and this process may not write it (a read-only file system, another
 * user's file); with SQLite's immutable mode as well when its folder is not writable. An
 * optional overlay store (overlay_path or MARLINRT_CACHE_OVERLAY) takes every write: lookups
 * read the base store first, then the overlay. With neither a writable base nor an overlay a
 * compiled cubin is used from memory and counted in mrt_stats.store_writes_skipped.
 */

/** 1 when the context's base store was opened read-only, else 0 (also for a NULL ctx). */
MRT_API int mrt_store_read_only(const mrt_context *ctx);

/** Why the base store is read-only ("" when it is not); valid while ctx lives. */
MRT_API const char *mrt_store_read_only_reason(const mrt_context *ctx);

/** Path of the context's overlay store, or NULL when it has none. */
MRT_API const char *mrt_store_overlay_path(const mrt_context *ctx);

/** One tuning winner, as `marlinrt cache ls --tuning` shows it. Strings are valid only during
 *  the callback. */
typedef struct mrt_tuning_winner_row {
    const char *fingerprint;    /* the device fingerprint (hex) */
    const char *device_name;    /* from tuning_device, "" when that row is missing */
    const char *kernel;
    const char *dtype;
    int group_size;
    int64_t n, k;
    int64_t m_bucket;
    mrt_config config;
    uint64_t source_hash;
    double median_us;
    int64_t decided_at;         /* Unix seconds */
    int stale;                  /* MRT_STALE_SOURCE / MRT_STALE_KERNEL */
    int in_overlay;
    int reserved[4];
} mrt_tuning_winner_row;

typedef int (*mrt_tuning_winner_row_fn)(const mrt_tuning_winner_row *row, void *user);

/**
 * Call fn for every tuning winner of the base store, then of the overlay.
 * Returns MRT_OK, MRT_ERR_INVALID_ARGUMENT, MRT_ERR_STORE.
 */
MRT_API mrt_status mrt_store_foreach_tuning_winner(mrt_context *ctx, mrt_tuning_winner_row_fn fn, void *user);

/** What mrt_store_verify found for one cubin row. */
typedef enum mrt_verify_outcome {
    MRT_VERIFY_CHECKED = 0,       /* checksum good; not loaded (no GPU, or another arch) */
    MRT_VERIFY_LOADED = 1,        /* checksum good, and the driver loaded it on this GPU */
    MRT_VERIFY_BAD_CHECKSUM = 2,  /* the blob fails its length or XXH64 check */
    MRT_VERIFY_LOAD_FAILED = 3,   /* checksum good but the driver refused it (detail says why) */
} mrt_verify_outcome;

/** Called for every row verified; detail is "" or the reason. Return non-zero to stop. */
typedef int (*mrt_verify_fn)(const mrt_cubin_row *row, mrt_verify_outcome outcome, const char *detail,
                             void *user);

typedef struct mrt_store_verify_report {
    uint64_t cubin_rows;
    uint64_t bad_checksum;
    uint64_t loaded;
    uint64_t load_failed;
    uint64_t not_loaded;          /* good rows for another arch, or no GPU */
    uint64_t tuning_winner_rows;
    uint64_t bad_tuning_rows;     /* winners whose configuration their kernel rejects */
    int gpu_arch;                 /* the arch test-loaded (e.g. 90), 0 when no GPU was used */
    int reserved_i32[3];
    uint64_t reserved[4];
} mrt_store_verify_report;

/**
 * Check the base store and the overlay: SQLite's quick_check, every cubin's length and
 * XXH64, and, when the context may use a GPU (not MRT_CTX_OFFLINE) and one is found, a test
 * load (cuModuleLoadData and cuModuleGetFunction of its entry) of every cubin made for that
 * GPU's arch; every tuning winner's configuration is validated. fn may be NULL.
 * Returns MRT_OK when the stores could be read (the report says what was wrong; check
 * bad_checksum, load_failed and bad_tuning_rows); MRT_ERR_INVALID_ARGUMENT; MRT_ERR_STORE
 * (unreadable or damaged file); MRT_ERR_OUT_OF_MEMORY.
 */
MRT_API mrt_status mrt_store_verify(mrt_context *ctx, mrt_verify_fn fn, void *user, mrt_store_verify_report *report);

/** Counts of a store merge (export or import). */
typedef struct mrt_store_merge_report {
    uint64_t cubins_copied;       /* new rows in the destination */
    uint64_t cubins_present;      /* already there with the same blob */
    uint64_t cubins_replaced;     /* there with another (e.g. damaged) blob: replaced */
    uint64_t cubins_corrupt;      /* failed their checksum in the source: not copied */
    uint64_t tuning_written;      /* tuning rows inserted, or newer than the destination's */
    uint64_t tuning_kept;         /* tuning rows the destination already had, as new or newer */
    uint64_t reserved[6];
} mrt_store_merge_report;

/**
 * Copy every cubin and tuning row the context sees (base store, then overlay) into the store
 * at path, creating it when missing, merging when it exists. A newly created file is left as
 * one self-contained file (rollback journal, no -wal), ready to ship read-only.
 * Returns MRT_OK; MRT_ERR_INVALID_ARGUMENT (NULL, or path is the context's own store);
 * MRT_ERR_STORE / MRT_ERR_STORE_VERSION (path is not writable, not a store, or of another
 * schema version); MRT_ERR_OUT_OF_MEMORY.
 */
MRT_API mrt_status mrt_store_export(mrt_context *ctx, const char *path, mrt_store_merge_report *report);

/**
 * Copy every cubin and tuning row of the store at path (opened read-only) into the context's
 * writable store: the overlay when there is one, else the base store.
 * Returns as mrt_store_export; MRT_ERR_STORE also when the context has no writable store.
 */
MRT_API mrt_status mrt_store_import(mrt_context *ctx, const char *path, mrt_store_merge_report *report);

/** What mrt_store_prune removes. */
typedef struct mrt_prune_options {
    int64_t max_bytes;            /* keep at most this many cubin bytes, dropping the least
                                     recently used first; -1: no cap */
    int64_t unused_seconds;       /* drop cubins not used for this long; -1: no limit */
    uint32_t flags;               /* mrt_prune_flag bits */
    uint32_t reserved[7];
} mrt_prune_options;

enum mrt_prune_flag {
    /** Drop stale cubins and tuning rows (see mrt_stale). */
    MRT_PRUNE_STALE = 1u << 0,
    /** Count what would go, change nothing. */
    MRT_PRUNE_DRY_RUN = 1u << 1,
    /** Afterwards give the freed pages back to the file system (SQLite VACUUM). */
    MRT_PRUNE_VACUUM = 1u << 2,
};

/** Fill opts with "remove nothing": no cap, no age limit, no flags. */
MRT_API void mrt_prune_options_init(mrt_prune_options *opts);

typedef struct mrt_prune_report {
    uint64_t cubins_removed;
    uint64_t bytes_removed;
    uint64_t cubins_kept;
    uint64_t bytes_kept;
    uint64_t tuning_removed;
    uint64_t reserved[5];
} mrt_prune_report;

/**
 * Remove rows from the context's writable store (the overlay when there is one, else the base
 * store), in one transaction: stale rows (MRT_PRUNE_STALE), cubins unused for unused_seconds,
 * then the least recently used cubins until at most max_bytes remain.
 * Returns MRT_OK; MRT_ERR_INVALID_ARGUMENT; MRT_ERR_STORE (no writable store, or SQLite failed).
 */
MRT_API mrt_status mrt_store_prune(mrt_context *ctx, const mrt_prune_options *opts, mrt_prune_report *report);

/* ------------------------------------------------------------------------- */
/* Launch utilities                                                           */
/* ------------------------------------------------------------------------- */

/**
 * Dequantize Marlin-packed int4 weights to a dense fp16 B[K,N] (row-major) on the GPU.
 * Useful to check a repack, or to feed a dense GEMM. All pointers are device pointers:
 *   packed   K*N/8 int32 in the Marlin layout
 *   scales   fp16 [K/group_size, N] (or [1, N] for group_size -1) in the Marlin scale order
 *   out      fp16 [K, N]
 * K and N must be multiples of 64 (the packing tile), group_size one of -1, 32, 64, 128
 * dividing K. stream may be NULL for the default stream. Asynchronous.
 * Returns MRT_OK; MRT_ERR_INVALID_ARGUMENT (null pointer, misaligned pointer, bad shape
 * or group size); MRT_ERR_NO_DRIVER / MRT_ERR_NO_DEVICE / MRT_ERR_NO_NVRTC /
 * MRT_ERR_COMPILE / MRT_ERR_CUDA.
 */
MRT_API mrt_status mrt_dequant_w4(mrt_context *ctx, void *stream, uint64_t packed, uint64_t scales, uint64_t out,
                                  int64_t k, int64_t n, int group_size);

/* ------------------------------------------------------------------------- */
/* W4A16 GEMM                                                                 */
/* ------------------------------------------------------------------------- */

/**
 * Arguments of C[M,N] = A[M,K] x dequant(B[K,N]). Device pointers as integers.
 *   a          fp16 [M, K] row-major, 16-byte aligned
 *   b          Marlin-packed int4 weights, K*N/8 int32 (see mrt_pack_q4), 16-byte aligned
 *   scales     fp16 Marlin-ordered scales [K/group_size or 1, N], 16-byte aligned
 *   c          fp16 [M, N] row-major output, 16-byte aligned
 *   workspace  at least mrt_gemm_workspace_size bytes, zeroed before first use; the kernel
 *              leaves it ready for the next call (calls running at the same time on
 *              different streams need separate workspaces)
 *   flags      mrt_gemm_flag bits, 0 for the defaults
 *
 * On sm_90 and later (with a CUDA 12.0+ driver) the kernel is launched with programmatic
 * dependent launch: it may be scheduled while the previous kernel on the stream is still
 * running, and waits (griddepcontrol.wait) for that kernel's results before it reads or
 * writes anything, so stream order holds as with a plain launch. The overlap hides launch
 * latency between back-to-back kernels; MRT_GEMM_WEIGHTS_STATIC lets it also start
 * fetching weights early.
 */
typedef enum mrt_gemm_flag {
    /** b and scales are not written by any kernel queued earlier on the stream that may still
     *  be running (true of weights loaded once): on sm_90+ the kernel starts fetching them
     *  before the previous kernel's results are visible. */
    MRT_GEMM_WEIGHTS_STATIC = 1u << 0,
    /** Launch plainly, without programmatic dependent launch. */
    MRT_GEMM_NO_OVERLAP = 1u << 1,
} mrt_gemm_flag;

typedef struct mrt_gemm_args {
    uint64_t a, b, scales, c, workspace;
    uint64_t workspace_bytes;
    int64_t m, n, k;
    int32_t group_size; /* -1 (per channel), 32, 64, 128 */
    uint32_t flags;     /* mrt_gemm_flag bits */
    int32_t reserved_i32[2];
    uint64_t reserved[4];
} mrt_gemm_args;

/**
 * Bytes of workspace mrt_gemm needs for n output columns on the context's device.
 * Returns MRT_OK, MRT_ERR_INVALID_ARGUMENT, or a driver/device status (the size depends on
 * the device's SM count).
 */
MRT_API mrt_status mrt_gemm_workspace_size(mrt_context *ctx, int64_t n, size_t *bytes);

/**
 * The configuration mrt_gemm would pick for a shape on the context's device: the tuning
 * winner recorded for its M bucket (see Autotuner), else the built-in heuristic. Never tunes.
 * Returns MRT_OK, MRT_ERR_INVALID_ARGUMENT, MRT_ERR_UNSUPPORTED (no configuration fits
 * the shape), or a driver/device status.
 */
MRT_API mrt_status mrt_gemm_select(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                                   mrt_config *config);

/**
 * Every configuration the library may pick for group_size (over all shapes), for warming a
 * store or checking that each compiles. Writes up to capacity entries to configs (may be NULL
 * with capacity 0) and the total to *count.
 * Returns MRT_OK or MRT_ERR_INVALID_ARGUMENT.
 */
MRT_API mrt_status mrt_gemm_candidates(int group_size, mrt_config *configs, size_t capacity, size_t *count);

/**
 * Launch the W4A16 GEMM on stream (NULL: the default stream). config NULL picks one
 * automatically, as mrt_gemm_select does (with MRT_CTX_AUTOTUNE, the first use of a shape may
 * tune it first: see Autotuner); otherwise it must be valid for the shape. Asynchronous.
 * Every argument is checked before any launch.
 * Returns MRT_OK; MRT_ERR_INVALID_ARGUMENT (null/misaligned pointer, bad shape or group
 * size); MRT_ERR_UNSUPPORTED (config does not fit the shape or device); MRT_ERR_WORKSPACE;
 * MRT_ERR_NO_DRIVER / MRT_ERR_NO_DEVICE / MRT_ERR_NO_NVRTC / MRT_ERR_COMPILE / MRT_ERR_CUDA.
 */
MRT_API mrt_status mrt_gemm(mrt_context *ctx, void *stream, const mrt_gemm_args *args, const mrt_config *config);

/* ------------------------------------------------------------------------- */
/* Autotuner                                                                  */
/* ------------------------------------------------------------------------- */

/*
 * The autotuner times the plausible configurations of the GEMM for one problem on the
 * context's GPU and records the fastest in the store, in the style of cuBLASLt's heuristic
 * query: mrt_gemm_candidates_for lists what would be tried, mrt_gemm_tune times them and
 * returns plain result structs, best first.
 *
 * Winners are recorded per device fingerprint (mrt_device_fingerprint), kernel, activation
 * type ("f16"), group size, N, K and M bucket (mrt_gemm_m_bucket), together with the hash of
 * the kernel source they were measured with. Another GPU model or another kernel source finds
 * no winner and is tuned again: a winner is never used where it was not measured.
 *
 * Dispatch: mrt_gemm with config NULL, and mrt_gemm_select, use the winner recorded for the
 * M bucket, else the built-in heuristic. A context asks the store once per shape and bucket
 * and keeps the answer, so launches run no SQL; a winner another process records later is
 * seen by contexts created after it.
 *
 * First-use tuning: with MRT_CTX_AUTOTUNE (or MARLINRT_AUTOTUNE=1), the first mrt_gemm of a
 * shape and bucket that has no complete winner tunes it before launching (once per context): at the bucket's
 * largest M (the call's M past MRT_TUNE_M_BUCKET_MAX), for at most MARLINRT_AUTOTUNE_BUDGET_MS
 * milliseconds (default 5000; compiling a configuration the store lacks takes about a second),
 * on the default stream, in device memory of its own (a few hundred MB: inputs rotate through
 * more than twice the L2 size), never touching the caller's buffers, and records the winner.
 * A tune the budget cut short is finished by the first uses of later processes, which reuse
 * the timings already stored. Tune before capturing CUDA graphs. A failed first-use tune is
 * counted (mrt_tune_stats) and the heuristic's pick runs: the launch does not fail for it.
 */

/** The largest M bucket: every M above MRT_TUNE_M_BUCKET_MAX / 2 shares it. */
#define MRT_TUNE_M_BUCKET_MAX 4096

/** M bucket of m: the smallest power of two >= m (1, 2, 4, 8, ... ), at most
 *  MRT_TUNE_M_BUCKET_MAX; 0 for m < 1. One winner serves every M of a bucket. */
MRT_API int64_t mrt_gemm_m_bucket(int64_t m);

/** Fingerprint of a device: XXH3-64 over its name, compute capability, SM count, L2 size and
 *  memory clock (0 for NULL). Tuning records are kept per fingerprint. */
MRT_API uint64_t mrt_device_fingerprint(const mrt_device_info *info);

/** One configuration timed by mrt_gemm_tune. Plain data, safe to store. */
typedef struct mrt_tune_result {
    mrt_config config;
    double median_us;  /* per launch: median over the timed batches */
    double spread_us;  /* interquartile range over the same batches */
    int32_t tied;      /* 1: within the noise band of the fastest (see mrt_tune_options.noise) */
    int32_t reused;    /* 1: the timing was read from the store, not measured by this call */
    int32_t heuristic; /* 1: the configuration the built-in heuristic picks for this problem */
    int32_t reserved[5];
} mrt_tune_result;

/** mrt_tune_options.flags (bitwise or). */
enum mrt_tune_flag {
    /** Time every candidate again instead of reusing the timings the store has for this
     *  device, problem and kernel source. */
    MRT_TUNE_RETIME = 1u << 0,
    /** Record nothing: no timing rows, no winner, and the context keeps the winner it had. */
    MRT_TUNE_NO_RECORD = 1u << 1,
};

/** What mrt_gemm_tune reports after each candidate (mrt_tune_options.progress). */
typedef struct mrt_tune_event {
    size_t index;           /* 0-based place of the candidate in the tuning order */
    size_t total;           /* candidates of this tune */
    mrt_tune_result result; /* config always; the times when status is MRT_OK */
    mrt_status status;      /* MRT_OK, or why the candidate was left out: MRT_ERR_COMPILE,
                             * MRT_ERR_NO_NVRTC (not in the store, no NVRTC), MRT_ERR_UNSUPPORTED */
    const char *message;    /* "" or the detail of status; valid during the call */
    int32_t reserved[4];
} mrt_tune_event;

/** Called after each candidate; return non-zero to stop the tune, whose winner is then chosen
 *  among the configurations timed so far. */
typedef int (*mrt_tune_progress_fn)(const mrt_tune_event *event, void *user);

/** How mrt_gemm_tune works; start from mrt_tune_options_init. */
typedef struct mrt_tune_options {
    /** Wall-clock limit of the call in milliseconds, 0 for none. Checked before each candidate
     *  that must be timed; at least one candidate is always timed. Candidates come in the
     *  heuristic's order of preference, so a tune cut short still has a sensible winner. */
    uint32_t budget_ms;
    /** mrt_tune_flag bits. */
    uint32_t flags;
    /** Untimed batches before each configuration's timed ones (default 3; 0..1000). A batch is
     *  one launch per copy of the inputs; the copies rotate through more than twice the L2
     *  size, so the weights come from device memory as in a real model. */
    int32_t warmup;
    /** Timed batches per configuration; their median is the result (default 20; 1..1000). */
    int32_t batches;
    /** Relative noise band (default 0.02; 0..1): a configuration whose median is within
     *  noise x best median of the best median counts as tied, the band widened to the spread
     *  of the best where that is larger, up to 2 x noise x best median; and
     *  among tied configurations a fixed order on the fields picks the winner (fewest stages,
     *  then threads, thread_m_blocks, thread_n_blocks, thread_k_blocks), so two processes
     *  timing the same problem agree despite noise. */
    double noise;
    /** Called after each candidate; may be NULL. */
    mrt_tune_progress_fn progress;
    void *progress_user;
    uint64_t reserved[4];
} mrt_tune_options;

/** Fill opts with the defaults (no budget, no flags, 3 warm-up and 20 timed batches, noise
 *  0.02, no progress callback). */
MRT_API void mrt_tune_options_init(mrt_tune_options *opts);

/**
 * The configurations mrt_gemm_tune would time for this problem on the context's device, in
 * tuning order. From every configuration the kernel accepts (threads 128 or 256, 1..4
 * m-blocks, thread_n and thread_k of 64, 128 or 256, stages 3, 4, 6 or 8, group_blocks set by
 * the group size) it keeps those that
 *   - divide the shape (thread_n | N, thread_k | K) and fit the device's shared memory;
 *   - use at most ceil(M/16) m-blocks (4 past 64 rows), and no more than a smaller count that
 *     cuts M into as many chunks (it would only pad);
 *   - hold at most 64 fp32 accumulators per thread (more spill registers);
 *   - keep at least half as many SMs busy as the best candidate (tiles / waves);
 *   - for the wgmma kernel (thread_m_blocks 8 or 16, see mrt_gemm_tune_space): run on sm_90,
 *     with M above 64 rows (above 128 for 256-token tiles), or above 16 for its 128 x 256
 *     tiles on 256 threads (they run a chunk of up to 32 or 64 rows with wgmmas that narrow);
 *     the accumulator and ring-depth rules do not apply to it;
 *   - need their pipeline depth: a deeper ring than the shallowest of the set that already
 *     holds a block's whole stripe of tiles is left out.
 * The heuristic's pick (what mrt_gemm runs untuned) always comes first when it fits the device,
 * whatever the rules say; then the others, nearest to it first.
 * Writes up to capacity entries (configs may be NULL with capacity 0) and the total to *count.
 * Returns MRT_OK (the count may be 0 when nothing fits the device); MRT_ERR_INVALID_ARGUMENT
 * (NULL ctx or count, configs NULL with a capacity, bad shape or group size);
 * MRT_ERR_UNSUPPORTED (shape too large, or an MRT_CTX_OFFLINE context); MRT_ERR_NO_DRIVER /
 * MRT_ERR_NO_DEVICE / MRT_ERR_CUDA (the device is needed for its shared memory and SM count).
 */
MRT_API mrt_status mrt_gemm_candidates_for(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                                           mrt_config *configs, size_t capacity, size_t *count);

/**
 * Every configuration mrt_gemm_tune may time for group_size, on any device and shape: the
 * mma.sync kernel's space with stages 3, 4, 6, 8 and at most 64 accumulators per thread, and
 * the sm_90 wgmma kernel's 16 (thread_m_blocks 8 or 16, stages 4 or 6), for
 * group_size's group_blocks and for per channel (a group as deep as K runs per channel). For
 * `marlinrt warm`, so that a store filled on a build machine lets a GPU machine without NVRTC
 * tune. Writes up to capacity entries (configs may be NULL with capacity 0) and the total to
 * *count. Returns MRT_OK or MRT_ERR_INVALID_ARGUMENT (NULL count, configs NULL with a
 * capacity, group_size not -1, 32, 64 or 128).
 */
MRT_API mrt_status mrt_gemm_tune_space(int group_size, mrt_config *configs, size_t capacity, size_t *count);

/**
 * Tune the GEMM for one problem: time the candidates of mrt_gemm_candidates_for at this M, in
 * that order, within opts->budget_ms; choose the winner (the tied configuration first in the
 * fixed order, see mrt_tune_options.noise); record one timing row per configuration as it is
 * timed and the winner for mrt_gemm_m_bucket(m); and make this context use it. Timings the
 * store already has for this device, problem and kernel source are reused, not measured again
 * (unless MRT_TUNE_RETIME): a tune cut short, or run after candidates were added, only times
 * what is missing. Tune the largest M of a bucket to serve all of it.
 *
 * Timing uses device memory of its own (the inputs rotate through more than twice the L2
 * size), CUDA events on the default stream, opts->warmup untimed then opts->batches timed
 * batches per configuration, and reports their median and interquartile range. Compiling a
 * configuration the store lacks is done before its timing, never inside it. A candidate whose
 * probe (one warm-up and one timed batch) takes more than 1.5 times the best median so far is
 * reported from that probe alone: it can neither win nor tie.
 *
 * opts may be NULL for the defaults. results may be NULL with capacity 0. On MRT_OK (and on
 * MRT_ERR_STORE, where the timings are valid but could not be recorded) up to capacity
 * results are written, the winner first, then by median; *count gets the number of
 * configurations timed or reused. Candidates that fail to compile, or have no cubin and no
 * NVRTC to make one, are left out (reported through opts->progress) and the tune goes on.
 * On a read-only store nothing is written: the winner serves this context only
 * (mrt_tune_stats.records_skipped counts what was not recorded).
 *
 * Returns MRT_OK; MRT_ERR_INVALID_ARGUMENT (NULL ctx or count, results NULL with a capacity,
 * bad shape or group size, an option out of range, unknown flags or non-zero reserved fields);
 * MRT_ERR_UNSUPPORTED (shape too large, an MRT_CTX_OFFLINE context, no candidate fits the
 * device); MRT_ERR_COMPILE / MRT_ERR_NO_NVRTC (every candidate failed so: the status of the
 * last); MRT_ERR_NO_DRIVER / MRT_ERR_NO_DEVICE / MRT_ERR_CUDA (no device, or an allocation or
 * launch failed: the tune stops); MRT_ERR_STORE (the tuning records could not be read or
 * written); MRT_ERR_OUT_OF_MEMORY.
 */
MRT_API mrt_status mrt_gemm_tune(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                                 const mrt_tune_options *opts, mrt_tune_result *results, size_t capacity,
                                 size_t *count);

/**
 * The winner recorded for mrt_gemm_m_bucket(m) of this problem on the context's device (its
 * fingerprint) and kernel source, as the context sees it (looked up once, then kept).
 * Returns MRT_OK with *config; MRT_ERR_NOT_FOUND (none recorded, or the recorded one does not
 * fit this shape and device); MRT_ERR_INVALID_ARGUMENT (NULL argument, bad shape or group
 * size); MRT_ERR_UNSUPPORTED (shape too large, MRT_CTX_OFFLINE); MRT_ERR_NO_DRIVER /
 * MRT_ERR_NO_DEVICE / MRT_ERR_CUDA; MRT_ERR_STORE (the lookup failed); MRT_ERR_OUT_OF_MEMORY.
 */
MRT_API mrt_status mrt_gemm_winner(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                                   mrt_config *config);

/** What the tuner did on a context (mrt_tune_stats_get). */
typedef struct mrt_tune_stats {
    uint64_t tunes;              /* tunes run: mrt_gemm_tune calls and first-use tunes */
    uint64_t autotunes;          /* of which first-use tunes started by mrt_gemm */
    uint64_t configs_timed;      /* configurations timed on the GPU */
    uint64_t timings_reused;     /* stored timings used instead of timing again */
    uint64_t configs_failed;     /* candidates left out: no compile, no cubin, or no launch */
    uint64_t winner_lookups;     /* winner queries sent to the store (one per problem and bucket) */
    uint64_t winner_picks;       /* mrt_gemm calls with config NULL that ran a recorded winner */
    uint64_t heuristic_picks;    /* mrt_gemm calls with config NULL that ran the heuristic's pick */
    uint64_t winners_rejected;   /* recorded winners that do not fit their problem here: ignored */
    uint64_t records_skipped;    /* timing or winner rows not written: the store is read-only */
    uint64_t failures;           /* winner lookups or first-use tunes that failed: the heuristic
                                  * ran instead; last_failure says why */
    uint64_t reserved[9];
    char last_failure[512];      /* message of the latest such failure, "" if none */
} mrt_tune_stats;

/** Copy the context's tuner statistics. Returns MRT_OK or MRT_ERR_INVALID_ARGUMENT. */
MRT_API mrt_status mrt_tune_stats_get(const mrt_context *ctx, mrt_tune_stats *stats);

/* ------------------------------------------------------------------------- */
/* Host-side weight packing and the CPU reference (no GPU needed)             */
/* ------------------------------------------------------------------------- */

/*
 * fp16 values travel as their IEEE binary16 bits in a uint16_t.
 *
 * Shapes: B is [K, N] (K the reduction depth, N the output columns). The Marlin packing
 * works on 16x16 tiles gathered in blocks of 1024 nibbles, so K must be a multiple of 16
 * and N of 64; group_size is -1 (one scale per column) or a positive divisor of K that is
 * a multiple of 16 (the kernels accept 32, 64, 128 and need K, N multiples of 64). Scale
 * tensors have K/group_size rows (1 for per-channel) and N columns. A group_size equal to K
 * is per-channel: its single scale row uses the per-channel order, as in the reference.
 *
 * `threads` is the number of worker threads to use; 0 means one per online CPU (negative is
 * MRT_ERR_INVALID_ARGUMENT).
 * These functions have no context: on failure mrt_thread_errmsg() has the message.
 * They return MRT_OK, MRT_ERR_INVALID_ARGUMENT (null pointer, bad shape or group size,
 * a value out of range), or MRT_ERR_OUT_OF_MEMORY.
 */
typedef uint16_t mrt_half;

/** Bytes of the packed weight buffer for a [K, N] matrix: K*N/2; 0 for an invalid shape. */
MRT_API size_t mrt_packed_weight_bytes(int64_t k, int64_t n);

/** Number of scale rows for K and group_size (1 for per-channel), 0 if invalid. */
MRT_API int64_t mrt_scale_rows(int64_t k, int group_size);

/**
 * Quantize fp32 w[K,N] (row-major) to symmetric int4: per group of group_size rows and per
 * column, scale = max|w| / 7 rounded to fp16 first (1 if it is zero or underflows fp16), then
 * q = clamp(round(w / scale) + 8, 0, 15) with halves rounded away from zero (as roundf).
 * Writes the Marlin-packed weights (K*N/8 int32) and the Marlin-ordered scales. Optionally
 * (q_out non-NULL) the integers q[K,N] and (scales_out non-NULL) the scales in plain
 * [K/group, N] order. Non-finite weights, or a scale above 65504, are
 * MRT_ERR_INVALID_ARGUMENT; on any failure the outputs are incomplete.
 */
MRT_API mrt_status mrt_quantize_f32(const float *w, int64_t k, int64_t n, int group_size, int32_t *packed,
                                    mrt_half *marlin_scales, uint8_t *q_out, mrt_half *scales_out, int threads);

/** As mrt_quantize_f32, from fp16 weights. */
MRT_API mrt_status mrt_quantize_f16(const mrt_half *w, int64_t k, int64_t n, int group_size, int32_t *packed,
                                    mrt_half *marlin_scales, uint8_t *q_out, mrt_half *scales_out, int threads);

/** Pack integers q[K,N] (row-major, each 0..15) into the Marlin layout (K*N/8 int32). */
MRT_API mrt_status mrt_pack_q4(const uint8_t *q, int64_t k, int64_t n, int32_t *packed, int threads);

/** Inverse of mrt_pack_q4. */
MRT_API mrt_status mrt_unpack_q4(const int32_t *packed, int64_t k, int64_t n, uint8_t *q, int threads);

/** Reorder plain scales [rows, N] into the order the Marlin kernel reads. */
MRT_API mrt_status mrt_permute_scales(const mrt_half *scales, int64_t k, int64_t n, int group_size,
                                      mrt_half *marlin_scales);

/** Inverse of mrt_permute_scales. */
MRT_API mrt_status mrt_unpermute_scales(const mrt_half *marlin_scales, int64_t k, int64_t n, int group_size,
                                        mrt_half *scales);

/**
 * Repack a symmetric GPTQ checkpoint (qweight [K/8, N] int32 with 8 nibbles along K, low
 * nibble first; scales [K/group, N] fp16; zero point 8) into the Marlin layout.
 */
MRT_API mrt_status mrt_repack_gptq(const int32_t *qweight, const mrt_half *scales, int64_t k, int64_t n,
                                   int group_size, int32_t *packed, mrt_half *marlin_scales, int threads);

/**
 * CPU reference: C[M,N] = A[M,K] x dequant(B), from the packed form (m >= 1), accumulated in
 * float64 in a fixed order (bitwise the same for any thread count) and written as fp32, so
 * tests can bound the kernel's fp16 rounding.
 */
MRT_API mrt_status mrt_reference_gemm(const mrt_half *a, const int32_t *packed, const mrt_half *marlin_scales,
                                      int64_t m, int64_t n, int64_t k, int group_size, float *c, int threads);

/** fp16 bits to float and back (round to nearest even; NaN payloads are kept, not quieted). */
MRT_API float mrt_half_to_float(mrt_half h);
MRT_API mrt_half mrt_float_to_half(float f);

#ifdef __cplusplus
}
#endif

#endif /* MARLINRT_H */
