/* corpus_test.c - replays truncated and mutated models through the loader (and a run on zeros).
 *
 * usage: corpus_test SEED.onnx ...
 * For each seed: every truncation that cuts a top-level field must be rejected with an error;
 * deterministic random mutations must never crash (the ASan+UBSan build turns any memory error
 * into a failure). Exits non-zero when a truncated model was accepted.
 */
#include "fuzz_common.h"

#include <stdio.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Marks offsets where a top-level protobuf field ends: cutting there leaves a valid, shorter
 * message, which the loader may accept. */
static void field_ends(const uint8_t *d, size_t n, uint8_t *is_end)
{
    size_t p = 0;
    is_end[0] = 1;
    while (p < n) {
        uint64_t key = 0;
        int shift = 0;
        while (p < n && shift < 64) {
            key |= (uint64_t)(d[p] & 0x7f) << shift;
            shift += 7;
            if (!(d[p++] & 0x80)) break;
        }
        unsigned wire = key & 7;
        if (wire == 0) {
            while (p < n && (d[p++] & 0x80)) {
            }
        } else if (wire == 1) {
            p += 8;
        } else if (wire == 5) {
            p += 4;
        } else if (wire == 2) {
            uint64_t len = 0;
            shift = 0;
            while (p < n && shift < 64) {
                len |= (uint64_t)(d[p] & 0x7f) << shift;
                shift += 7;
                if (!(d[p++] & 0x80)) break;
            }
            p += len;
        } else {
            return;
        }
        if (p <= n) is_end[p] = 1;
    }
}

int main(int argc, char **argv)
{
    int failures = 0;
    long truncations = 0, mutations = 0, rejected = 0;
    for (int a = 1; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        if (!f) {
            fprintf(stderr, "cannot open seed %s\n", argv[a]);
            return 2;
        }
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *seed = malloc((size_t)size + 1);
        uint8_t *buf = malloc((size_t)size + 64);
        uint8_t *ends = calloc((size_t)size + 1, 1);
        if (!seed || !buf || !ends || fread(seed, 1, (size_t)size, f) != (size_t)size) {
            fprintf(stderr, "cannot read seed %s\n", argv[a]);
            return 2;
        }
        fclose(f);
        if (fuzz_model_once(seed, (size_t)size) != FERRY_OK) {
            fprintf(stderr, "seed %s does not load\n", argv[a]);
            failures++;
        }
        field_ends(seed, (size_t)size, ends);
        size_t step = size > 400 ? (size_t)size / 400 : 1;
        for (size_t cut = 0; cut < (size_t)size; cut += (cut < 128 ? 1 : step)) {
            /* a fresh copy, so a read past the cut hits ASan's redzone */
            uint8_t *t = malloc(cut ? cut : 1);
            memcpy(t, seed, cut);
            ferry_code code = fuzz_model_once(t, cut);
            free(t);
            truncations++;
            if (code != FERRY_OK)
                rejected++;
            else if (!ends[cut]) {
                fprintf(stderr, "%s truncated to %zu bytes was accepted\n", argv[a], cut);
                failures++;
            }
        }
        for (int m = 0; m < 400; m++) {
            size_t n = (size_t)size;
            memcpy(buf, seed, n);
            int edits = 1 + (int)(next_rand() % 4);
            for (int e = 0; e < edits; e++) {
                size_t pos = next_rand() % n;
                switch (next_rand() % 4) {
                case 0:
                    buf[pos] = (uint8_t)next_rand();
                    break;
                case 1:
                    buf[pos] ^= (uint8_t)(1u << (next_rand() % 8));
                    break;
                case 2:
                    buf[pos] = 0xff;
                    break;
                default:
                    buf[pos] = (uint8_t)(next_rand() % 16);
                    break;
                }
            }
            uint8_t *t = malloc(n);
            memcpy(t, buf, n);
            fuzz_model_once(t, n);
            free(t);
            mutations++;
        }
        free(seed);
        free(buf);
        free(ends);
    }
    printf("%ld truncations (%ld rejected), %ld mutations, %d failures\n", truncations, rejected,
           mutations, failures);
    return failures ? 1 : 0;
}
