/* memory.h - allocation for large, long-lived data that the engine streams through. */
#ifndef CORE_MEMORY_H
#define CORE_MEMORY_H

#include <stddef.h>

/* Allocates BYTES, 64-byte aligned, for large, long-lived, hot data (packed weights, plan
 * arenas): from 2 MiB up, aligned and advised for transparent huge pages, which spares the TLB
 * misses of streaming megabytes through 4 KiB pages. NULL when out of memory. Free with
 * free(). */
void *core_alloc_large(size_t bytes);

#endif
