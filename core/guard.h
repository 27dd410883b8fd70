/* The guard: per-run CPU and memory budgets for policy code (steward.runtime.guard, core/guard.c). */
#ifndef STEWARD_GUARD_H
#define STEWARD_GUARD_H

#include <stddef.h>

/* The Lua state's allocator (core/runtime.c hands it to lua_newstate): realloc and free, and
 * while a guarded run is current, the accounting of its net heap growth against its memory
 * budget. Frees and shrinks never fail. */
void *guard_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

#endif
