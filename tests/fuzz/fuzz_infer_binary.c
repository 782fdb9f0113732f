/* fuzz_infer_binary.c - libFuzzer target for Triton's binary tensor data extension.
 *
 * The first four bytes of an input give the Inference-Header-Content-Length (little-endian;
 * 0xffffffff means no header), the rest is the body: a JSON header followed by raw tensor
 * bytes. It is decoded against a model with inputs of several element sizes, so that the
 * in-place (aligned) and copied (misaligned) paths and the raw single-input body (header 0)
 * all run; every byte of every decoded view is then read so ASan catches a view that runs past
 * the body, and the outputs are encoded as binary.
 *
 * Built with -DFERRY_FUZZ_MAIN it replays the files named on its command line instead.
 */
#include "serve/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const srv_tensor_spec multi_in[] = {
    {"a", FERRY_DTYPE_FLOAT, 2, {-1, 3}, false},
    {"b", FERRY_DTYPE_INT64, 2, {-1, -1}, false},
    {"c", FERRY_DTYPE_UINT8, 1, {-1}, false},
    {"d", FERRY_DTYPE_FLOAT16, 2, {-1, 2}, false},
};
static const srv_tensor_spec one_in[] = {{"x", FERRY_DTYPE_DOUBLE, 2, {-1, 4}, false}};

static const srv_model_sig sigs[] = {
    {multi_in, 4, multi_in, 4, 8},
    {one_in, 1, one_in, 1, 4},
};

static volatile uint8_t sink;

static void one(const srv_model_sig *sig, const char *body, size_t size, int64_t header_len)
{
    char inline_buf[256];
    srv_arena arena;
    srv_arena_init(&arena, inline_buf, sizeof(inline_buf), (size_t)1 << 28);
    srv_infer_req req;
    ferry_status *st = srv_decode_infer(sig, body, size, header_len, &arena, &req);
    if (st) {
        if (!ferry_status_message(st)[0]) abort();
        ferry_status_free(st);
        goto out;
    }
    ferry_tensor_view *outs = calloc(req.n_outputs + 1, sizeof(*outs));
    if (!outs) goto out;
    for (size_t i = 0; i < req.n_inputs; i++) {
        if (!req.given[i]) abort(); /* every input here is required */
        const uint8_t *p = req.inputs[i].data;
        size_t n = srv_view_bytes(&req.inputs[i]);
        for (size_t k = 0; k < n; k++) sink ^= p[k];
    }
    for (size_t i = 0; i < req.n_outputs; i++) {
        outs[i] = req.inputs[req.outputs[i].index];
        req.outputs[i].binary = true;
    }
    srv_buf json = {.max = (size_t)1 << 20};
    ferry_status_free(srv_encode_infer(sig, &req, "m", "1", outs, &json));
    srv_buf_free(&json);
    free(outs);
out:
    srv_arena_release(&arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    uint32_t h = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                 (uint32_t)data[3] << 24;
    int64_t header_len = h == 0xffffffffu ? -1 : (int64_t)h;
    size = size - 4;
    /* The body at an aligned address, as the server's buffers are; the second run shifts it
     * by one byte so the misaligned copy path runs as well. */
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data + 4, size);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        one(&sigs[i], buf, size, header_len);
    free(buf);
    buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf + 1, data + 4, size);
    one(&sigs[0], buf + 1, size, header_len);
    free(buf);
    return 0;
}

#ifdef FERRY_FUZZ_MAIN
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            fprintf(stderr, "cannot open %s\n", argv[i]);
            return 1;
        }
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("%d inputs replayed\n", argc - 1);
    return 0;
}
#endif
