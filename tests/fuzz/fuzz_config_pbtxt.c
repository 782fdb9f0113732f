/* fuzz_config_pbtxt.c - libFuzzer target for the config.pbtxt reader (src/runtime/pbtxt.c and
 * config.c): any bytes must give either a config or an error with a message, never a crash,
 * a leak or a read past the input. A config that parses is also walked, so that every pointer
 * it hands out is touched under the sanitizers. */
#include "runtime/runtime.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t walk(const rt_model_config *c)
{
    size_t h = strlen(c->name) + strlen(c->platform) + strlen(c->backend) +
               strlen(c->default_model_filename);
    for (size_t i = 0; i < c->input_count; i++)
        h += strlen(c->inputs[i].name) + (size_t)c->inputs[i].rank;
    for (size_t i = 0; i < c->output_count; i++)
        h += strlen(c->outputs[i].name) + strlen(c->outputs[i].label_filename);
    for (size_t i = 0; i < c->parameter_count; i++)
        h += strlen(c->parameters[i].key) + strlen(c->parameters[i].value);
    for (size_t i = 0; i < c->instance_group_count; i++) h += strlen(c->instance_groups[i].name);
    for (size_t i = 0; i < c->version_policy.version_count; i++)
        h += (size_t)c->version_policy.versions[i];
    for (size_t i = 0; i < c->dynamic_batching.preferred_count; i++)
        h += (size_t)c->dynamic_batching.preferred_batch_sizes[i];
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly SIZE bytes, so that ASan catches any read past the end. */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    rt_model_config cfg;
    ferry_status *st = rt_config_parse(text, size, "fuzz/config.pbtxt", &cfg);
    if (st) {
        if (!ferry_status_message(st)[0]) abort();
        ferry_status_free(st);
    } else {
        volatile size_t h = walk(&cfg);
        (void)h;
        rt_config_free(&cfg);
    }
    free(text);
    return 0;
}
