/* Structured logging to stderr: one line per record, logfmt (default) or JSON lines. */
#ifndef STEWARD_LOG_H
#define STEWARD_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

/* Reads STEWARD_LOG_LEVEL (debug|info|warn|error|off) and STEWARD_LOG_FORMAT
 * (logfmt|json). Safe to call more than once. */
void log_init(void);
int log_enabled(enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_level_parse(const char *name); /* -1 when unknown */
const char *log_level_name(enum log_level level);

/* Field list: pairs of key, value strings, terminated by NULL. */
void log_write(enum log_level level, const char *msg, ...);
/* Same with the fields as arrays (for the Lua binding). literal (may be NULL) marks values that
 * are JSON literals (numbers, true, false): JSON lines write them unquoted, so a log pipeline
 * gets numbers, not strings that hold numbers. */
void log_writev(enum log_level level, const char *msg, size_t nfields, const char *const *keys,
                const char *const *values, const unsigned char *literal);

#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__, (const char *)0)
#define log_info(...)  log_write(LOG_INFO, __VA_ARGS__, (const char *)0)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__, (const char *)0)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__, (const char *)0)

#endif
