/* steward's own version. */
#ifndef STEWARD_VERSION_H
#define STEWARD_VERSION_H
#define STEWARD_VERSION "0.1.0"
#endif
