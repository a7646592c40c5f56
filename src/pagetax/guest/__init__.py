"""`pagetax vm`: a throw-away QEMU guest with an emulated NVDIMM, made into
the namespace asked for (fsdax with ext4 or xfs, or devdax), running a
command inside it, so that the DAX paths run for real on a machine without
pmem.

The guest needs no disk image.  Its initramfs, built from what is installed,
holds a static busybox, the kernel's NVDIMM, DAX, file-system and 9p
modules, and an init script that mounts the host's root read-only over 9p,
chroots into it and starts the agent with the host's own Python.  A second,
writable 9p share (a temp folder on the host) carries the job in and the
guest's report, output and files out.  One boot makes one namespace, on a
fresh region: that is what the memmap figures measure (switching modes
within a boot made them noisy), and it keeps every run independent.

  namespace.py  what a guest makes of its NVDIMM, and the sizes it accepts
  host.py       the host's QEMU, kernel, busybox and accelerator
  bootimage.py  the initramfs: the modules, busybox and the init script
  qemu.py       QEMU's argument list and one QEMU process and its console
  lifecycle.py  run(): boot, wait, collect, and clean up on every exit path
  agent.py      the guest side, run inside the guest (standard library only)
  memmap.py     a memmap guest's figures beside the model, and why they differ

This file imports nothing: the agent runs as `python -S -m
pagetax.guest.agent` under TCG, where every import is slow.
"""
