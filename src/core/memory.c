/* memory.c - huge-page friendly allocation. */
#include "core/memory.h"

#include <stdlib.h>
#include <sys/mman.h>

void *core_alloc_large(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0) rounded = 64;
    if (bytes < huge) return aligned_alloc(64, rounded);
    void *p = NULL;
    if (posix_memalign(&p, huge, rounded)) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    (void)madvise(p, bytes & ~(huge - 1), MADV_HUGEPAGE);
#endif
    return p;
}
