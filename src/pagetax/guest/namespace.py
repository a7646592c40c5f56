"""What a guest makes of its NVDIMM: the namespace, and the sizes a guest
accepts."""
import dataclasses
from typing import Optional

from ..errors import PagetaxError
from ..sizes import format_size

MODES = ("fsdax", "devdax")
MAPS = ("mem", "dev")
FILE_SYSTEMS = ("ext4", "xfs")
ALIGNS = ("4k", "2M")
MIB, GIB = 1 << 20, 1 << 30
NVDIMM_ALIGN = 2 * MIB            # the memory backend's alignment, and the region's
MIN_CAPACITY = 64 * MIB
MIN_MEMORY = 512 * MIB
MIN_XFS_CAPACITY = 320 * MIB      # xfsprogs makes no file system under 300 MB


class VmError(PagetaxError):
    """A guest that cannot be built, booted or run; one line that says why."""


@dataclasses.dataclass(frozen=True)
class Namespace:
    """What a guest makes of its NVDIMM: fsdax with a file system, or devdax
    with a page alignment; its struct pages in DRAM (map=mem) or on the
    device itself (map=dev)."""
    mode: str = "fsdax"
    map: str = "mem"
    fs: Optional[str] = None      # fsdax only; ext4 when not given
    align: Optional[str] = None   # devdax only; 2M when not given

    def __post_init__(self):
        _choose("mode", self.mode, MODES)
        _choose("map", self.map, MAPS)
        if self.mode == "fsdax":
            if self.align is not None:
                raise VmError("--align is for devdax; an fsdax namespace takes ndctl's default")
            object.__setattr__(self, "fs", self.fs or "ext4")
            _choose("file system", self.fs, FILE_SYSTEMS)
        else:
            if self.fs is not None:
                raise VmError("--fs is for fsdax; a devdax namespace has no file system")
            object.__setattr__(self, "align", self.align or "2M")
            _choose("alignment", self.align, ALIGNS)

    @property
    def label(self):
        """fsdax-ext4-mem, devdax-2M-dev, ..."""
        return f"{self.mode}-{self.fs or self.align}-{self.map}"

    @property
    def ndctl_options(self):
        """The create-namespace options that make it."""
        align = f" --align={self.align}" if self.mode == "devdax" else ""
        return f"-m {self.mode} --map={self.map}{align}"

    @property
    def dedups_vmemmap(self):
        """devdax at 2M: 2 MiB compound pages, whose vmemmap the kernel dedups."""
        return self.mode == "devdax" and self.align == "2M"

    @classmethod
    def from_label(cls, label):
        parts = label.split("-")
        if len(parts) != 3:
            raise VmError(f"namespace {label!r} is not like fsdax-ext4-mem or devdax-2M-dev")
        mode, kind, map_ = parts
        return cls(mode, map_, **({"fs": kind} if mode == "fsdax" else {"align": kind}))



def _choose(what, value, allowed):
    if value not in allowed:
        raise VmError(f"unknown {what} {value!r} (choose from {', '.join(allowed)})")


# The namespaces `pagetax vm memmap` boots, one each, and the pagetax model
# of what the kernel keeps for them.
MEMMAP_NAMESPACES = (Namespace("fsdax", "mem"), Namespace("fsdax", "dev"),
                     Namespace("devdax", "mem", align="4k"), Namespace("devdax", "mem", align="2M"),
                     Namespace("devdax", "dev", align="2M"))
# `pagetax vm kernel`: a DAX file's pages and a device's, PMD-mapped.
KERNEL_NAMESPACES = (Namespace("fsdax", "mem", fs="ext4"), Namespace("devdax", "mem", align="2M"))
# ext4 and xfs, struct pages in DRAM and on the device (altmap's real
# counterpart), and device DAX at its default alignment.
TEST_NAMESPACES = (Namespace("fsdax", "mem", fs="ext4"), Namespace("fsdax", "dev", fs="xfs"),
                   Namespace("devdax", "mem", align="2M"))


def check_sizes(capacity, memory, namespace=None):
    least = MIN_XFS_CAPACITY if namespace and namespace.fs == "xfs" else MIN_CAPACITY
    if capacity % NVDIMM_ALIGN or capacity < least:
        raise VmError(f"NVDIMM capacity {format_size(capacity)} must be a multiple of 2M, at "
                      f"least {format_size(least)}{' for xfs' if least != MIN_CAPACITY else ''}")
    if memory % MIB or memory < MIN_MEMORY:
        raise VmError(f"guest memory {format_size(memory)} must be whole MiB, "
                      f"at least {format_size(MIN_MEMORY)}")


