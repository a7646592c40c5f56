"""What a memmap guest measured (the free memory around create-namespace)
beside pagetax's model of the kernel's struct pages for that namespace, and
why the two differ, in sentences."""
from .namespace import MIB, Namespace


def memmap_design(ns):
    """The design whose metadata model stands for a namespace's struct pages:
    map=dev is altmap; devdax at 2M keeps 2 vmemmap pages per compound page;
    anything else is a struct page per 4 KiB page."""
    if ns.map == "dev":
        return "altmap"
    return "devdax-dedup-2M" if ns.dedups_vmemmap else "page"


def memmap_figures(result):
    """A memmap guest's measurement beside pagetax's model of its design,
    taken at the region's capacity as `pagetax metadata --capacity` does,
    with the differences and why (memmap_explained)."""
    from .. import metadata  # numpy: not for every vm command
    ns = result.namespace
    region, size = result.ndctl["region"]["size"], result.ndctl["namespace"]["size"]
    design = memmap_design(ns)
    model = metadata.model(design)
    return memmap_explained({
        "namespace": ns.label, "ndctl": ns.ndctl_options, "region_bytes": region,
        "namespace_bytes": size, "dram_bytes": result.memmap["drop_bytes"],
        "device_bytes": region - size, "model": design,
        "model_dram_bytes": model.dram(region), "model_device_bytes": model.device(region),
        "free_pages": result.memmap, "guest": result.labels()})



def _mib(n):
    return f"{n / MIB:.2f} MiB"


def _kib(n, sign=False):
    return f"{n / 1024:{'+' if sign else ''},.0f} KiB"


def memmap_explained(row):
    """A memmap_figures() row with its differences from the model and an
    `explanation` of them; a row from an older file gets them too."""
    return dict(row, dram_minus_model_bytes=row["dram_bytes"] - row["model_dram_bytes"],
                device_minus_model_bytes=row["device_bytes"] - row["model_device_bytes"],
                explanation=memmap_explanation(row))


def memmap_explanation(row):
    """Why a namespace's measured struct-page bytes (memmap_figures) differ
    from pagetax's model, in sentences: what the kernel keeps for its mode,
    where the device's bytes went, and what the DRAM beyond the model is,
    by the guest's /proc/meminfo (Slab) when the row has it."""
    from .. import metadata
    ns = Namespace.from_label(row["namespace"])
    region, pages = row["region_bytes"], row["region_bytes"] // metadata.PAGE
    dram, device = row["dram_bytes"], row["device_bytes"]
    model_dram, model_device = row["model_dram_bytes"], row["model_device_bytes"]
    full = pages * metadata.STRUCT_PAGE
    said = []
    if ns.map == "dev":
        npfns = max(region - metadata.ALTMAP_INFO, 0) // metadata.PAGE
        said.append(
            f"map=dev puts the memmap on the device, in the namespace's reserve (vmem_altmap): "
            f"ALIGN(8 KiB info block + 64 B x {npfns:,} pages, 2 MiB) = {_mib(model_device)}, so "
            "no DRAM for struct pages"
            + ("; at --align=2M too, since the kernel dedups no vmemmap kept on the device"
               if ns.dedups_vmemmap else "")
            + f". The device gives up region - namespace = {_mib(device)}"
            + (", as the model says." if device == model_device else
               f", {_mib(device - model_device)} more than the model's reserve."))
    else:
        if ns.dedups_vmemmap:
            compound = region // (2 * MIB)
            said.append(
                "devdax at 2M maps 2 MiB compound pages, and the kernel dedups their vmemmap "
                "(mm/sparse-vmemmap.c): of each one's 32 KiB of struct pages it keeps 2 pages, "
                f"the head's and the first tail's, and maps the other 6 to the second: "
                f"{compound:,} x 8 KiB = {_mib(model_dram)} in DRAM instead of {_mib(full)}.")
        else:
            said.append(
                ("devdax at 4k makes no compound pages, so no vmemmap dedup: " if ns.mode == "devdax"
                 else "map=mem: ")
                + f"a 64 B struct page per 4 KiB page in DRAM, {pages:,} x 64 B = {_mib(model_dram)}.")
        info = -(-metadata.ALTMAP_INFO // metadata.ALTMAP_ALIGN) * metadata.ALTMAP_ALIGN
        said.append(
            f"The device gives up {_mib(device)} where pagetax's {row['model']} model says "
            f"{_mib(model_device)}"
            + (": the 8 KiB info block, padded to the 2 MiB alignment; the model counts "
               "struct pages only." if device - model_device == info else "."))
    said.append(_dram_residual(row, ns, dram - model_dram))
    return " ".join(said)


RESIDUAL_COUNTERS = ("KernelStack", "VmallocUsed", "PageTables", "Percpu")


def _dram_residual(row, ns, residual):
    """What the DRAM beyond the model went to, by the guest's meminfo."""
    if residual < 0:
        return (f"DRAM came out {_kib(-residual)} below the model: free-page noise across "
                "create-namespace (reclaim, per-CPU lists), or a model that counts too much.")
    devices = "the namespace, its " + ("pfn device and pmem block device" if ns.mode == "fsdax"
                                       else "dax devices and /dev/dax0.0") + ", their sysfs nodes"
    text = (f"The {_kib(residual, sign=True)} of DRAM beyond the model are not struct pages: "
            f"they are the kernel's own objects for the devices create-namespace registers "
            f"({devices})")
    if ns.dedups_vmemmap and ns.map == "mem":
        vmemmap = row["region_bytes"] // 4096 * 64      # its virtual size
        ptes = -(-vmemmap // (2 * MIB))                  # a page-table page maps 2 MiB
        text += (f", and the vmemmap's own page tables, which the model leaves out (the dedup "
                 f"maps the vmemmap with 4 KiB pages: {ptes} page-table pages, "
                 f"{_kib(ptes * 4096)}, here)")
    changes = (row.get("free_pages") or {}).get("meminfo_change_kb")
    if changes is None:
        return text + ". This file has no meminfo from the guest to say how much is slab."
    slab = changes.get("Slab", 0) * 1024
    others = ", ".join(f"{k} {_kib(changes[k] * 1024, sign=True)}" for k in RESIDUAL_COUNTERS
                       if changes.get(k))
    return (text + f". The guest's /proc/meminfo shows Slab {_kib(slab, sign=True)} across "
            f"create-namespace; the other {_kib(residual - slab, sign=True)} is outside the slab"
            + (f" ({others})" if others else "") + ".")
