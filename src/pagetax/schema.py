"""The run result file's schema tag, here so that readers of result files
(compare, plot, report) need not import the runner and its C core."""
SCHEMA = "pagetax-run/1"
# The design every row's ratio_vec divides by: raw (address, length)
# vectors, no per-page state.  csrc/design_vec.c declares it
# (PT_DESIGN_BASELINE); it is named here so readers need no C core.
BASELINE = "vec"
# The 2015 proposal the summary answers first: a 64-byte struct page per
# 4 KiB page (csrc/design_page.c, PT_DESIGN_PROPOSAL).
PROPOSAL = "page"
