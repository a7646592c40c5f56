from setuptools import setup

# Metadata lives in pyproject.toml; this file only wires in the cffi core.
setup(
    cffi_modules=["csrc/build_core.py:ffibuilder", "csrc/reference/build.py:ffibuilder",
                  "csrc/kernel/build.py:ffibuilder"],
)
