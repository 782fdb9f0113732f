/* pool.c - block allocator with one-shot release. */
#include "core/pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct core_pool_block {
    core_pool_block *next;
    size_t size;
    max_align_t pad[]; /* data starts here */
};

#define BLOCK_SIZE (64 * 1024)

static core_pool_block *new_block(size_t size)
{
    core_pool_block *b = calloc(1, sizeof(*b) + size);
    if (b) b->size = size;
    return b;
}

void *core_pool_alloc(core_pool *pool, size_t size, size_t align)
{
    if (align < sizeof(void *)) align = sizeof(void *);
    if (size > SIZE_MAX / 2 - align) return NULL;
    uintptr_t base, p;
    if (pool->head) {
        base = (uintptr_t)pool->head->pad;
        p = (base + pool->used + align - 1) & ~(uintptr_t)(align - 1);
        if (p + size <= base + pool->cap) {
            pool->used = p + size - base;
            pool->total += size;
            return (void *)p;
        }
    }
    size_t need = size + align;
    if (need > BLOCK_SIZE / 4) {
        /* Large allocations get their own block, linked behind the current one so the
         * current block's free space stays usable. */
        core_pool_block *b = new_block(need);
        if (!b) return NULL;
        if (pool->head) {
            b->next = pool->head->next;
            pool->head->next = b;
        } else {
            pool->head = b;
            pool->cap = need;
            pool->used = need;
        }
        pool->total += size;
        base = (uintptr_t)b->pad;
        return (void *)((base + align - 1) & ~(uintptr_t)(align - 1));
    }
    core_pool_block *b = new_block(BLOCK_SIZE);
    if (!b) return NULL;
    b->next = pool->head;
    pool->head = b;
    pool->cap = BLOCK_SIZE;
    base = (uintptr_t)b->pad;
    p = (base + align - 1) & ~(uintptr_t)(align - 1);
    pool->used = p + size - base;
    pool->total += size;
    return (void *)p;
}

char *core_pool_strndup(core_pool *pool, const char *s, size_t len)
{
    char *d = core_pool_alloc(pool, len + 1, 1);
    if (!d) return NULL;
    if (len) memcpy(d, s, len);
    d[len] = 0;
    return d;
}

void core_pool_release(core_pool *pool)
{
    core_pool_block *b = pool->head;
    while (b) {
        core_pool_block *next = b->next;
        free(b);
        b = next;
    }
    memset(pool, 0, sizeof(*pool));
}
