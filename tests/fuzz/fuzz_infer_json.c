/* fuzz_infer_json.c - libFuzzer target for the KServe v2 JSON request decoder.
 *
 * Each input is decoded as an inference request against three signatures (a batching FP32
 * model, a model with one input of every JSON datatype, an unbatched rank-3 model). When it
 * decodes, every byte of every input view is read (so ASan sees a view that overruns its
 * buffer) and the inputs are encoded back as a response, exercising the encoder too.
 *
 * Built with -DFERRY_FUZZ_MAIN it is a plain program that replays the files named on its command
 * line instead, which is how CTest runs the committed corpus under the sanitizers.
 */
#include "serve/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const srv_tensor_spec mlp_in[] = {{"x", FERRY_DTYPE_FLOAT, 2, {-1, 4}, false}};
static const srv_tensor_spec all_in[] = {
    {"b", FERRY_DTYPE_BOOL, 1, {-1}, false},       {"i8", FERRY_DTYPE_INT8, 1, {-1}, true},
    {"i16", FERRY_DTYPE_INT16, 1, {-1}, true},     {"i32", FERRY_DTYPE_INT32, 1, {-1}, true},
    {"i64", FERRY_DTYPE_INT64, 1, {-1}, true},     {"u8", FERRY_DTYPE_UINT8, 1, {-1}, true},
    {"u16", FERRY_DTYPE_UINT16, 1, {-1}, true},    {"u32", FERRY_DTYPE_UINT32, 1, {-1}, true},
    {"u64", FERRY_DTYPE_UINT64, 1, {-1}, true},    {"f16", FERRY_DTYPE_FLOAT16, 1, {-1}, true},
    {"f32", FERRY_DTYPE_FLOAT, 1, {-1}, true},     {"f64", FERRY_DTYPE_DOUBLE, 1, {-1}, true},
    {"bf16", FERRY_DTYPE_BFLOAT16, 1, {-1}, true},
};
static const srv_tensor_spec cube_in[] = {{"x", FERRY_DTYPE_INT32, 3, {2, -1, 3}, false},
                                          {"y", FERRY_DTYPE_FLOAT, 0, {0}, false}};

static const srv_model_sig sigs[] = {
    {mlp_in, 1, mlp_in, 1, 16},
    {all_in, sizeof(all_in) / sizeof(all_in[0]), all_in, sizeof(all_in) / sizeof(all_in[0]), 0},
    {cube_in, 2, cube_in, 2, 0},
};

static volatile uint8_t sink;

static void one(const srv_model_sig *sig, const char *body, size_t size)
{
    char inline_buf[256];
    srv_arena arena;
    srv_arena_init(&arena, inline_buf, sizeof(inline_buf), (size_t)1 << 28);
    srv_infer_req req;
    ferry_status *st = srv_decode_infer(sig, body, size, -1, &arena, &req);
    if (st) {
        /* Every error carries a message. */
        if (!ferry_status_message(st)[0]) abort();
        ferry_status_free(st);
        goto out;
    }
    ferry_tensor_view *outs = calloc(req.n_outputs + 1, sizeof(*outs));
    if (!outs) goto out;
    for (size_t i = 0; i < req.n_inputs; i++) {
        if (!req.given[i]) continue;
        const uint8_t *p = req.inputs[i].data;
        size_t n = srv_view_bytes(&req.inputs[i]);
        for (size_t k = 0; k < n; k++) sink ^= p[k];
    }
    /* Echo: output k is input k (the signatures' outputs are their inputs), or an empty view
     * when the request left that optional input out. */
    for (size_t i = 0; i < req.n_outputs; i++) {
        size_t idx = req.outputs[i].index;
        if (req.given[idx])
            outs[i] = req.inputs[idx];
        else
            outs[i] = (ferry_tensor_view){sig->outputs[idx].dtype, 1, {0}, outs};
    }
    srv_buf json = {.max = (size_t)1 << 28};
    st = srv_encode_infer(sig, &req, "m", "1", outs, &json);
    ferry_status_free(st);
    srv_buf_free(&json);
    free(outs);
out:
    srv_arena_release(&arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so a read past the end is an ASan error, not a lucky neighbour. */
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data, size);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) one(&sigs[i], body, size);
    free(body);
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
