/* The admin socket's frame codec (core/frame.h). Being written. */
#include "frame.h"
