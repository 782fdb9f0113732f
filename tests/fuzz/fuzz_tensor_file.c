/* fuzz_tensor_file.c - libFuzzer target for the .npy and .pb tensor file readers. */
#include "ferry.h"

#include <stdio.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"/tmp/ferry-fuzz-tensor.npy", "/tmp/ferry-fuzz-tensor.pb"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(names[i], "wb");
        if (!f) return 0;
        fwrite(data, 1, size, f);
        fclose(f);
        ferry_tensor *t;
        ferry_status *st = ferry_tensor_read_file(names[i], &t);
        ferry_status_free(st);
        if (!st) ferry_tensor_free(t);
    }
    return 0;
}
