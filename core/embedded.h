/* The Lua sources from scripts/, embedded at build time (see core/embed.sh). */
#ifndef STEWARD_EMBEDDED_H
#define STEWARD_EMBEDDED_H

#include <stddef.h>

struct embedded_script {
    const char *module; /* "steward.tap" */
    const char *path;   /* "scripts/steward/tap.lua", for chunk names */
    const char *source;
    size_t len;
};

extern const struct embedded_script embedded_scripts[];

#endif
