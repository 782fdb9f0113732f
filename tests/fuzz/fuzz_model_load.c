/* fuzz_model_load.c - libFuzzer target for the ONNX model loader (and what runs after it). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_model_once(data, size);
    return 0;
}
