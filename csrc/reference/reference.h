/*
 * reference.h - the drift reference's API (reference.c); the cffi cdef of
 * pagetax._reference is the text between the markers.  Bounds are checked
 * by the caller (pagetax/reference.py) against the same extents a plan of
 * the core has already accepted.
 */
#ifndef PAGETAX_REFERENCE_H
#define PAGETAX_REFERENCE_H

#include <stdint.h>

/* cdef-begin */
struct ref_extent {
    uint64_t off;
    uint64_t len;
};

/* One pass over the extents, packed into or out of buf; returns its ns. */
uint64_t ref_gather(const uint8_t *data, const struct ref_extent *ext, uint64_t n, uint8_t *buf);
uint64_t ref_scatter(uint8_t *data, const struct ref_extent *ext, uint64_t n, const uint8_t *buf);
/* cdef-end */

#endif
