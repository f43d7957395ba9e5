/*
 * The store key of a cubin: XXH3-128 over a framed serialisation of everything that affects
 * the cubin's bytes.
 *
 * Every field is written as one frame: a tag byte naming the field, its length as 8 bytes
 * little endian, then its bytes. Integers are widened to 64 bits and written little endian,
 * so the key is the same on every host whatever its byte order or its int width. Because a
 * frame carries its own length, ("ab", "c") and ("a", "bc") serialise differently, and
 * because it carries a tag, a value can never be mistaken for another field's.
 *
 * The serialisation is part of the store format: changing it orphans every row of every
 * existing store (they are still valid, just never found again). Tags are only appended.
 */
#include <string.h>

/* The stack-allocated streaming state needs the state's definition, which xxhash.h only
 * gives to callers that accept linking against the same xxHash version they compiled
 * with; the library is always built against the system's libxxhash. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "store.h"

enum key_tag {
    KEY_TAG_SOURCE_HASH = 1,
    KEY_TAG_KERNEL = 2,
    KEY_TAG_ARCH = 3,
    KEY_TAG_THREADS = 4,
    KEY_TAG_THREAD_M_BLOCKS = 5,
    KEY_TAG_THREAD_N_BLOCKS = 6,
    KEY_TAG_THREAD_K_BLOCKS = 7,
    KEY_TAG_STAGES = 8,
    KEY_TAG_GROUP_BLOCKS = 9,
    KEY_TAG_CONFIG_RESERVED = 10,
    KEY_TAG_NVRTC_MAJOR = 11,
    KEY_TAG_NVRTC_MINOR = 12,
    KEY_TAG_OPTIONS = 13,
    KEY_TAG_FORMAT_VERSION = 14,
};

/* Length written for a NULL string, so that NULL and "" never share a key. No real string
 * can be this long. */
#define KEY_ABSENT_LENGTH UINT64_MAX

static void put_le64(uint8_t out[8], uint64_t value)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(value >> (8 * i));
}

static void frame_header(XXH3_state_t *state, enum key_tag tag, uint64_t length)
{
    uint8_t header[9];
    header[0] = (uint8_t)tag;
    put_le64(header + 1, length);
    /* The update only fails for a NULL state or NULL bytes of non-zero length: never here. */
    (void)XXH3_128bits_update(state, header, sizeof header);
}

static void frame_int(XXH3_state_t *state, enum key_tag tag, int64_t value)
{
    uint8_t bytes[8];
    put_le64(bytes, (uint64_t)value);
    frame_header(state, tag, sizeof bytes);
    (void)XXH3_128bits_update(state, bytes, sizeof bytes);
}

static void frame_u64(XXH3_state_t *state, enum key_tag tag, uint64_t value)
{
    uint8_t bytes[8];
    put_le64(bytes, value);
    frame_header(state, tag, sizeof bytes);
    (void)XXH3_128bits_update(state, bytes, sizeof bytes);
}

static void frame_string(XXH3_state_t *state, enum key_tag tag, const char *text)
{
    if (!text) {
        frame_header(state, tag, KEY_ABSENT_LENGTH);
        return;
    }
    size_t length = strlen(text);
    frame_header(state, tag, (uint64_t)length);
    (void)XXH3_128bits_update(state, text, length);
}

/* The reserved config fields are one frame of as many 8-byte integers as there are, so that
 * growing the array later needs no new tags. */
static void frame_config_reserved(XXH3_state_t *state, const mrt_config *config)
{
    size_t count = sizeof config->reserved / sizeof config->reserved[0];
    frame_header(state, KEY_TAG_CONFIG_RESERVED, (uint64_t)(count * 8));
    for (size_t i = 0; i < count; i++) {
        uint8_t bytes[8];
        put_le64(bytes, (uint64_t)(int64_t)config->reserved[i]);
        (void)XXH3_128bits_update(state, bytes, sizeof bytes);
    }
}

/* Hash the inputs; the NVRTC version is left out for the variant. */
static void hash_inputs(const mrt__key_inputs *in, int with_nvrtc_version, uint8_t out[16])
{
    XXH3_state_t state;
    XXH3_INITSTATE(&state);
    (void)XXH3_128bits_reset(&state);

    frame_u64(&state, KEY_TAG_SOURCE_HASH, in->source_hash);
    frame_string(&state, KEY_TAG_KERNEL, in->kernel);
    frame_int(&state, KEY_TAG_ARCH, in->arch);
    frame_int(&state, KEY_TAG_THREADS, in->config.threads);
    frame_int(&state, KEY_TAG_THREAD_M_BLOCKS, in->config.thread_m_blocks);
    frame_int(&state, KEY_TAG_THREAD_N_BLOCKS, in->config.thread_n_blocks);
    frame_int(&state, KEY_TAG_THREAD_K_BLOCKS, in->config.thread_k_blocks);
    frame_int(&state, KEY_TAG_STAGES, in->config.stages);
    frame_int(&state, KEY_TAG_GROUP_BLOCKS, in->config.group_blocks);
    frame_config_reserved(&state, &in->config);
    if (with_nvrtc_version) {
        frame_int(&state, KEY_TAG_NVRTC_MAJOR, in->nvrtc_major);
        frame_int(&state, KEY_TAG_NVRTC_MINOR, in->nvrtc_minor);
    }
    frame_string(&state, KEY_TAG_OPTIONS, in->options);
    frame_int(&state, KEY_TAG_FORMAT_VERSION, in->format_version);

    /* The canonical form is big endian by xxHash's definition, independent of the host. */
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(&state));
    memcpy(out, canonical.digest, 16);
}

void mrt__cubin_key(const mrt__key_inputs *in, uint8_t key[16], uint8_t variant[16])
{
    if (key)
        hash_inputs(in, 1, key);
    if (variant)
        hash_inputs(in, 0, variant);
}

void mrt__key_hex(const uint8_t key[16], char out[33])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[key[i] >> 4];
        out[2 * i + 1] = digits[key[i] & 0x0f];
    }
    out[32] = '\0';
}
