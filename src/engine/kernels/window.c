/* window.c - sliding-window geometry for Conv, MaxPool and AveragePool. */
#include "engine/kernels/window.h"

#include <string.h>

/* Far beyond any real model, small enough that sums and products of a few never overflow. */
#define ATTR_LIMIT ((int64_t)1 << 30)

static ferry_status *read_list(const eng_node *node, const char *name, int max, int64_t min,
                               int64_t *dst, int *count)
{
    size_t n = 0;
    const int64_t *v = eng_attr_ints(node, name, &n);
    *count = 0;
    if (!v) return NULL;
    if (n > (size_t)max)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute %s: %zu values is more than the %d that rank %d allows",
                          name, n, max, FERRY_MAX_RANK);
    for (size_t i = 0; i < n; i++) {
        if (v[i] < min || v[i] > ATTR_LIMIT)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute %s: value %lld at position %zu is out of range "
                              "(expected %lld to %lld)",
                              name, (long long)v[i], i, (long long)min, (long long)ATTR_LIMIT);
        dst[i] = v[i];
    }
    *count = (int)n;
    return NULL;
}

ferry_status *kern_window_read(const eng_node *node, bool need_kernel, bool with_ceil,
                               kern_window_attrs *out)
{
    memset(out, 0, sizeof(*out));
    const char *ap = eng_attr_string(node, "auto_pad", "NOTSET");
    if (!strcmp(ap, "NOTSET") || !strcmp(ap, ""))
        out->auto_pad = KERN_PAD_NOTSET;
    else if (!strcmp(ap, "SAME_UPPER"))
        out->auto_pad = KERN_PAD_SAME_UPPER;
    else if (!strcmp(ap, "SAME_LOWER"))
        out->auto_pad = KERN_PAD_SAME_LOWER;
    else if (!strcmp(ap, "VALID"))
        out->auto_pad = KERN_PAD_VALID;
    else
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute auto_pad: unknown value '%s' (expected NOTSET, SAME_UPPER, "
                          "SAME_LOWER or VALID)",
                          ap);
    if (with_ceil) {
        int64_t c = eng_attr_int(node, "ceil_mode", 0);
        if (c != 0 && c != 1)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute ceil_mode must be 0 or 1, got %lld", (long long)c);
        out->ceil_mode = c == 1;
    }
    ferry_status *st;
    if ((st = read_list(node, "kernel_shape", KERN_MAX_SPATIAL, 1, out->kernel, &out->n_kernel)))
        return st;
    if ((st = read_list(node, "pads", 2 * KERN_MAX_SPATIAL, 0, out->pads, &out->n_pads)))
        return st;
    if ((st = read_list(node, "strides", KERN_MAX_SPATIAL, 1, out->strides, &out->n_strides)))
        return st;
    if ((st = read_list(node, "dilations", KERN_MAX_SPATIAL, 1, out->dilations,
                        &out->n_dilations)))
        return st;
    if (need_kernel && out->n_kernel == 0)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute kernel_shape is required");
    if (out->n_pads % 2)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute pads: expected a begin and an end per spatial axis, got %d "
                          "values",
                          out->n_pads);
    return NULL;
}

static ferry_status *check_count(const char *name, int got, int want)
{
    if (got == 0 || got == want) return NULL;
    return core_error(FERRY_ERR_INVALID_ARGUMENT,
                      "attribute %s: expected %d values for an input with %d spatial dims, got %d",
                      name, want, want, got);
}

ferry_status *kern_window_plan(const kern_window_attrs *a, int nsp, const int64_t *in,
                               const int64_t *kernel, kern_window *w)
{
    ferry_status *st;
    if (nsp < 1 || nsp > KERN_MAX_SPATIAL)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "expected 1 to %d spatial dims, got %d",
                          KERN_MAX_SPATIAL, nsp);
    if ((st = check_count("kernel_shape", a->n_kernel, nsp))) return st;
    if ((st = check_count("strides", a->n_strides, nsp))) return st;
    if ((st = check_count("dilations", a->n_dilations, nsp))) return st;
    if (a->n_pads && a->n_pads != 2 * nsp)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "attribute pads: expected %d values (begin and end of %d spatial "
                          "dims), got %d",
                          2 * nsp, nsp, a->n_pads);
    memset(w, 0, sizeof(*w));
    w->nsp = nsp;
    w->in_size = w->out_size = w->kernel_size = 1;
    for (int i = 0; i < nsp; i++) {
        int64_t k = kernel[i], s = a->n_strides ? a->strides[i] : 1;
        int64_t d = a->n_dilations ? a->dilations[i] : 1;
        if (k < 1 || k > ATTR_LIMIT)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "kernel size %lld on spatial dim %d "
                              "is out of range", (long long)k, i);
        int64_t extent = (k - 1) * d + 1, pb = 0, pe = 0, out;
        switch (a->auto_pad) {
        case KERN_PAD_NOTSET:
            if (a->n_pads) {
                pb = a->pads[i];
                pe = a->pads[nsp + i];
            }
            break;
        case KERN_PAD_VALID: break;
        case KERN_PAD_SAME_UPPER:
        case KERN_PAD_SAME_LOWER: {
            out = (in[i] + s - 1) / s;
            int64_t total = (out - 1) * s + extent - in[i];
            if (total < 0) total = 0;
            pb = a->auto_pad == KERN_PAD_SAME_UPPER ? total / 2 : total - total / 2;
            pe = total - pb;
            break;
        }
        }
        int64_t span = in[i] + pb + pe - extent;
        if (span < 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "spatial dim %d of the input (size %lld, padded to %lld) is smaller "
                              "than the window (%lld)",
                              i, (long long)in[i], (long long)(in[i] + pb + pe), (long long)extent);
        if (a->ceil_mode && a->auto_pad == KERN_PAD_NOTSET) {
            out = (span + s - 1) / s + 1;
            /* As PyTorch and ONNX Runtime do: a last window starting in the end padding would
             * see no input at all, so it is dropped. */
            if ((out - 1) * s >= in[i] + pb) out--;
        } else if (a->auto_pad == KERN_PAD_SAME_UPPER || a->auto_pad == KERN_PAD_SAME_LOWER) {
            out = (in[i] + s - 1) / s;
        } else {
            out = span / s + 1;
        }
        w->in[i] = in[i];
        w->out[i] = out;
        w->kernel[i] = k;
        w->stride[i] = s;
        w->dilation[i] = d;
        w->pad_begin[i] = pb;
        w->pad_end[i] = pe;
        if (__builtin_mul_overflow(w->in_size, in[i], &w->in_size) ||
            __builtin_mul_overflow(w->out_size, out, &w->out_size) ||
            __builtin_mul_overflow(w->kernel_size, k, &w->kernel_size))
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "window sizes overflow");
    }
    return NULL;
}
