#!/usr/bin/env python3
"""Did a change leave the compiled code alone?  Compares two builds of an
extension function by function, addresses normalised (call targets,
rip-relative data, symbol offsets), and names every function whose
instructions differ, or that one build has and the other lacks.

    python bench/tools/same_code.py BEFORE.so AFTER.so

Exit status 1 if a function present in both differs.  A pure move of the
Python or of C between files leaves every function identical; new
functions (a cffi constant getter for a new enum value, say) are listed."""
import re
import shutil
import subprocess
import sys


def functions(path):
    """{symbol: [normalised instruction, ...]} from objdump -d."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True,
                         text=True, check=True).stdout
    found, current = {}, None
    for line in out.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if head:
            current = found.setdefault(head.group(1), [])
            continue
        ins = re.match(r"^\s+[0-9a-f]+:\s+(.*)$", line)
        if ins and current is not None:
            text = ins.group(1).split("#")[0].strip()
            text = re.sub(r"<([^>+]+)(\+0x[0-9a-f]+)?>", r"<\1>", text)
            text = re.sub(r"\b[0-9a-f]{4,}\b", "ADDR", text)
            text = re.sub(r"-?0x[0-9a-f]+\(%rip\)", "X(%rip)", text)
            current.append(text)
    return found


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if not shutil.which("objdump"):
        print("same_code: objdump is missing: apt-get install binutils", file=sys.stderr)
        return 2
    before, after = (functions(p) for p in argv)
    both = [n for n in before if n in after]
    differ = [n for n in both if before[n] != after[n]]
    print(f"{len(before)} functions before, {len(after)} after: {len(both) - len(differ)} "
          f"identical, {len(differ)} differ")
    for title, names in (("differ", differ), ("only before", [n for n in before if n not in after]),
                         ("only after", [n for n in after if n not in before])):
        if names:
            print(f"  {title}: {', '.join(sorted(names))}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
