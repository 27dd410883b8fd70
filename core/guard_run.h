/* The guard's internals, shared by core/guard.c (budgets: the hook, the allocator, runs) and
 * core/guard_ctl.c (the runtime's controls: context, stop, coroutine slicing, configure).
 * Nothing outside those two files includes this. */
#ifndef STEWARD_GUARD_RUN_H
#define STEWARD_GUARD_RUN_H

#include <lua.h>
#include <stdint.h>

#include "task.h"

enum trip { TRIP_NONE = 0, TRIP_CPU, TRIP_MEM, TRIP_TOTAL, TRIP_STALL, TRIP_STOP };

struct guard_run {
    uint64_t cpu_ns;   /* 0: no CPU budget */
    uint64_t deadline; /* uv_hrtime() at which the budget is spent, while armed */
    int64_t memory;    /* bytes; 0: no memory budget */
    int64_t mem_net;   /* allocations minus frees while armed */
    int64_t mem_peak;
    int64_t gc_at; /* mem_net after the last collection the guard asked for */
    double cpu;    /* seconds, for the message */
    enum trip tripped;
    uint64_t slice_end; /* uv_hrtime() at which the run yields its turn (time slicing) */
    uint64_t remaining; /* budget left when it did: a preemption does not refill it */
    int preempted;
    int handed_off; /* the hook yielded an adopted coroutine this turn */
    int fast;       /* the hook fires on every instruction */
    int armed;      /* on the chain of current runs */
    int done;
    int retired;    /* over: guard.context() and guard.stop() no longer reach it */
    int no_ceiling; /* not held to guard_total.budget (guard.run's heap_ceiling = false) */
    int ctx_ref;    /* guard.context()'s table, or LUA_NOREF */
    task_t *task;   /* NULL when the run is on the main thread */
    lua_State *L;
    struct guard_run *prev; /* the run this one interrupted (a task resumed inside another) */
    char name[64];
    char stop_msg[256]; /* guard.stop's message */
    char stop_kind[16];
};

/* The run whose code is executing now; runs interrupted by it follow on ->prev. */
extern struct guard_run *guard_active;

/* All runs together (guard.configure). */
struct guard_total {
    int64_t budget;    /* the heap's ceiling while policy code allocates, bytes; 0: none */
    int64_t heap;      /* bytes the allocator has handed out and not got back: the whole heap */
    int64_t gc_at;     /* heap after the last collection the guard asked for on its account */
    uint64_t stall_ns; /* a run unable to yield may compute this long; 0: no limit */
};
extern struct guard_total guard_total;

extern int guard_adopted_ref;         /* weak-keyed set of the coroutines policies created */
extern lua_State *guard_hook_yielded; /* the adopted coroutine the hook yielded last */

/* (Re)installs the hook for r at its rate (every GUARD_COUNT bytecodes, or every one). */
void guard_set_hook(struct guard_run *r);
/* Whether L is a coroutine a policy created (guard.adopt). */
int guard_is_adopted(lua_State *L);
/* Adds the controls (covered, current, context, stop, adopt, preempted, pause, configure,
 * stats) to the module table on top of L. */
void guard_ctl_register(lua_State *L);

#endif
