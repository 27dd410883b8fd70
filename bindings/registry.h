/* The one list of bindings: main preloads them as steward.* modules. */
#ifndef STEWARD_REGISTRY_H
#define STEWARD_REGISTRY_H

#include <lua.h>

/* Sets package.preload[name] for every binding. */
void bindings_preload(lua_State *L);

/* Calls emit once per library steward links, with its run-time version. */
void bindings_versions(void (*emit)(const char *lib, const char *version, void *ud), void *ud);

#endif
