/* pool.h - a grow-only allocator whose blocks are all freed together.
 *
 * Used for memory that lives exactly as long as its owner: a model's names, attributes and
 * decoded weights, a memory plan's folded constants. Freeing the pool frees everything.
 */
#ifndef CORE_POOL_H
#define CORE_POOL_H

#include <stddef.h>

typedef struct core_pool_block core_pool_block;

typedef struct core_pool {
    core_pool_block *head;
    size_t used, cap; /* within head */
    size_t total;     /* bytes handed out, for statistics */
} core_pool;

/* An empty pool needs no set-up: core_pool p = {0}. */

/* Returns SIZE bytes aligned to ALIGN (a power of two up to 4096), zeroed, or NULL when memory
 * runs out. */
void *core_pool_alloc(core_pool *pool, size_t size, size_t align);

/* Copies LEN bytes of S and a terminating NUL into the pool. NULL when memory runs out. */
char *core_pool_strndup(core_pool *pool, const char *s, size_t len);

/* Frees every block. The pool is empty and reusable afterwards. */
void core_pool_release(core_pool *pool);

#endif
