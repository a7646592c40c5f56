import pathlib
import sys

# The workloads live in bench/common.py, shared with the asv suite.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
