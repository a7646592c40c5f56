/*
 * pt_gup.h - a reference as the kernel's I/O path takes and drops it, for
 * every design that counts references (Linux 6.12 to 6.18; the functions
 * are read in pagetax/kernel/README.md):
 *
 *   grab     mm/gup.c try_grab_folio_fast(page, refs, FOLL_PIN), from
 *            gup_fast_pte_range (refs = 1, per page) or gup_fast_pmd_leaf
 *            (refs = the pages it covers, once per folio):
 *              try_get_folio: page_folio(), folio_ref_try_add(refs) (an
 *                add-unless-zero: a compare-and-swap loop), page_folio()
 *                again, which must not have changed;
 *              FOLL_PIN: a large folio adds refs to _pincount, a small
 *                one GUP_PIN_COUNTING_BIAS - 1 per ref to _refcount (a
 *                second locked operation either way); NR_FOLL_PIN_ACQUIRED;
 *            then folio_set_referenced (a locked set_bit on the flags);
 *   release  block/bio.c __bio_release_pages, per folio part of a bvec:
 *            unpin_user_folio(folio, nr) -> gup_put_folio(FOLL_PIN):
 *            NR_FOLL_PIN_RELEASED, a large folio's _pincount less nr, then
 *            folio_put_refs(nr, or nr * GUP_PIN_COUNTING_BIAS when small).
 *
 * The block layer pins since it extracts user pages with
 * iov_iter_extract_pages (after 6.1, which took FOLL_GET references); the
 * parts can be left out one by one (PT_ATTACH_GUP_*) to measure what each
 * adds.  NR_FOLL_PIN_* are per-CPU counters: a plain add per thread here.
 */
#ifndef PT_GUP_H
#define PT_GUP_H

#include "pt_loops.h"

#define PT_GUP_PIN_BIAS 1024      /* GUP_PIN_COUNTING_BIAS */
#define PT_PG_REFERENCED 2        /* PG_referenced's bit in page->flags */

/* What a grab does: the kernel's whole path unless the attachment left a
 * part out (enum pt_attach_flags, PT_ATTACH_GUP_*). */
enum pt_gup_parts {
    PT_GUP_PIN = 1,          /* FOLL_PIN; else FOLL_GET: one count, no bias, no _pincount */
    PT_GUP_TRY_ADD = 2,      /* folio_ref_try_add's loop; else a plain locked add */
    PT_GUP_RECHECK = 4,      /* page_folio() again after the grab */
    PT_GUP_REFERENCED = 8,   /* folio_set_referenced */
    PT_GUP_DEVMAP = 16,      /* a PMD-mapped folio grabbed page by page, with a pagemap
                                lookup each, as gup_fast_devmap_leaf did (5.17-6.14) */
    PT_GUP_KERNEL = PT_GUP_PIN | PT_GUP_TRY_ADD | PT_GUP_RECHECK | PT_GUP_REFERENCED,
};

/* What an attachment's flags leave of the kernel's grab. */
static inline unsigned pt_gup_parts(int attach_flags)
{
    unsigned gup = PT_GUP_KERNEL;
    if (attach_flags & PT_ATTACH_GUP_GET)
        gup &= ~(unsigned)PT_GUP_PIN;
    if (attach_flags & PT_ATTACH_GUP_PLAIN_ADD)
        gup &= ~(unsigned)PT_GUP_TRY_ADD;
    if (attach_flags & PT_ATTACH_GUP_NO_RECHECK)
        gup &= ~(unsigned)PT_GUP_RECHECK;
    if (attach_flags & PT_ATTACH_GUP_NO_REFERENCED)
        gup &= ~(unsigned)PT_GUP_REFERENCED;
    if (attach_flags & PT_ATTACH_GUP_DEVMAP)
        gup |= PT_GUP_DEVMAP;
    return gup;
}

/* folio_ref_try_add: add n unless the count is 0 (a page being freed). */
static inline int pt_ref_try_add(int32_t *ref, int32_t n)
{
    PT_COUNT(PT_COUNT_REF_ADD, n);
    int32_t old = __atomic_load_n(ref, __ATOMIC_RELAXED);
    do {
        if (old == 0)
            return 0;
    } while (!__atomic_compare_exchange_n(ref, &old, old + n, 1, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    return 1;
}

/* set_bit(PG_referenced, &folio->flags): a locked byte OR in the kernel. */
static inline void pt_set_referenced(uint32_t *flags)
{
    PT_COUNT(PT_COUNT_FLAG, 1);
    __atomic_fetch_or(flags, 1u << PT_PG_REFERENCED, __ATOMIC_RELAXED);
}

/* The pin's second operation: _pincount for a large folio, the bias else. */
static inline void pt_pin_add(int32_t *ref, int32_t *pincount, int32_t refs)
{
    if (pincount) {
        PT_COUNT(PT_COUNT_PIN_ADD, refs);
        __atomic_fetch_add(pincount, refs, __ATOMIC_RELAXED);
    } else {
        PT_COUNT(PT_COUNT_PIN_ADD, refs * (PT_GUP_PIN_BIAS - 1));
        __atomic_fetch_add(ref, refs * (PT_GUP_PIN_BIAS - 1), __ATOMIC_RELAXED);
    }
}

/*
 * Grab refs pages of one folio: its count `ref`, its _pincount (NULL for a
 * small folio), its flags.  `head` is the word page_folio() reads (NULL:
 * a descriptor with no folio behind it) and `seen` what it read before: a
 * changed word fails the grab, as try_get_folio retries.  Returns 1 for a
 * failed grab (a bug here: every count is at least 1), with nothing held.
 */
static inline int pt_gup_grab(const unsigned gup, int32_t *ref, int32_t *pincount,
                              uint32_t *flags, const uint64_t *head, uint64_t seen,
                              int32_t refs, uint64_t *pins)
{
    if (gup & PT_GUP_TRY_ADD) {
        if (!pt_ref_try_add(ref, refs))
            return 1;
    } else {
        pt_ref_add(ref, refs);
    }
    if ((gup & PT_GUP_RECHECK) && head && __atomic_load_n(head, __ATOMIC_RELAXED) != seen) {
        pt_ref_sub(ref, refs);
        return 1;
    }
    if (gup & PT_GUP_PIN) {
        pt_pin_add(ref, pincount, refs);
        *pins += (uint64_t)refs;   /* NR_FOLL_PIN_ACQUIRED */
    }
    if (gup & PT_GUP_REFERENCED)
        pt_set_referenced(flags);
    return 0;
}

/* Drop what pt_gup_grab took; 1 when a count went to zero or below. */
static inline int pt_gup_release(const unsigned gup, int32_t *ref, int32_t *pincount,
                                 int32_t refs, uint64_t *pins)
{
    int bad = 0;
    if (gup & PT_GUP_PIN) {
        *pins += (uint64_t)refs;   /* NR_FOLL_PIN_RELEASED */
        if (pincount) {
            PT_COUNT(PT_COUNT_PIN_SUB, refs);
            bad = __atomic_sub_fetch(pincount, refs, __ATOMIC_RELAXED) < 0;
        } else {
            refs *= PT_GUP_PIN_BIAS;
        }
    }
    return pt_ref_sub(ref, refs) | bad;
}

/* A count, its flags and its head word, in a 64-byte struct page-shaped
 * descriptor at byte offsets RO, FO and HO: the page family's grab of one
 * small folio (a page) and its release. */
#define PT_NO_HEAD ((size_t)-1)

static inline int pt_gup_grab_desc(const unsigned gup, uint8_t *desc, size_t ro, size_t fo,
                                   size_t ho, int32_t *pincount, int32_t refs, uint64_t *pins)
{
    const uint64_t *head = ho == PT_NO_HEAD ? NULL : (const uint64_t *)(desc + ho);
    return pt_gup_grab(gup, (int32_t *)(desc + ro), pincount, (uint32_t *)(desc + fo), head,
                       head ? __atomic_load_n(head, __ATOMIC_RELAXED) : 0, refs, pins);
}

#endif /* PT_GUP_H */
