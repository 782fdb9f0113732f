/* window.h - sliding-window geometry shared by Conv and the pooling operators: reading and
 * checking kernel_shape / pads / strides / dilations / auto_pad / ceil_mode, and turning them
 * into output sizes and explicit begin paddings for a given input. */
#ifndef ENGINE_KERNELS_WINDOW_H
#define ENGINE_KERNELS_WINDOW_H

#include "engine/op.h"

#define KERN_MAX_SPATIAL (FERRY_MAX_RANK - 2)

typedef enum kern_auto_pad {
    KERN_PAD_NOTSET,
    KERN_PAD_SAME_UPPER,
    KERN_PAD_SAME_LOWER,
    KERN_PAD_VALID,
} kern_auto_pad;

/* The attributes as the model gives them; counts are 0 for absent lists. */
typedef struct kern_window_attrs {
    kern_auto_pad auto_pad;
    bool ceil_mode;
    int n_kernel, n_pads, n_strides, n_dilations;
    int64_t kernel[KERN_MAX_SPATIAL];
    int64_t pads[2 * KERN_MAX_SPATIAL]; /* begins of every axis, then ends */
    int64_t strides[KERN_MAX_SPATIAL];
    int64_t dilations[KERN_MAX_SPATIAL];
} kern_window_attrs;

/* The geometry for one input shape. */
typedef struct kern_window {
    int nsp; /* spatial rank */
    int64_t in[KERN_MAX_SPATIAL], out[KERN_MAX_SPATIAL], kernel[KERN_MAX_SPATIAL];
    int64_t stride[KERN_MAX_SPATIAL], dilation[KERN_MAX_SPATIAL];
    int64_t pad_begin[KERN_MAX_SPATIAL], pad_end[KERN_MAX_SPATIAL];
    int64_t in_size, out_size, kernel_size; /* products over the spatial axes */
} kern_window;

/* Reads and range-checks the window attributes of NODE. ceil_mode is read only when
 * WITH_CEIL; kernel_shape must be present when NEED_KERNEL. */
ferry_status *kern_window_read(const eng_node *node, bool need_kernel, bool with_ceil,
                               kern_window_attrs *out);

/* Geometry for spatial input dims IN[NSP] and kernel dims KERNEL (kernel_shape or W's
 * spatial dims). Errors name list attributes of the wrong length and inputs too small for
 * the window. */
ferry_status *kern_window_plan(const kern_window_attrs *a, int nsp, const int64_t *in,
                               const int64_t *kernel, kern_window *w);

#endif
