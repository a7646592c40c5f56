"""The run result file's schema tag, here so that readers of result files
(compare, plot, report) need not import the runner and its C core."""
SCHEMA = "pagetax-run/1"
