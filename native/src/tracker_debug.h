/* Internal hooks for development tools (not part of the public API). */
#ifndef GC_TRACKER_DEBUG_H
#define GC_TRACKER_DEBUG_H

#include <stddef.h>

#include "gridcast/tracker.h"

/* The position network's features for the frame the last process_audio call analysed:
   the number of values written (0 when that call analysed no frame). */
size_t gc_tracker_debug_features(const gc_tracker_t *t, float *out, size_t cap);

#endif
