"""The layout shows the architecture and stays that way: no source file over
500 lines, no module importing one in a layer above its own, no import
cycle, and no design, peer, kernel path or command recognised by its name
outside its own file and its registry.  Each check reads the source tree,
not the installed package."""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
PACKAGE = os.path.join(SRC, "pagetax")
MAX_LINES = 500

# Bottom to top.  A module may import its own layer (without a cycle) and the
# layers below it, never one above.  A new module must be placed here.
LAYERS = (
    ("the ground: errors, units, statistics, the machine", {
        "pagetax", "errors", "sizes", "stats", "schema", "latency", "concurrency",
        "version", "_build", "machine", "daxfaults", "html_tables"}),
    ("the engine's Python face", {
        "extents", "persist", "designs", "timed_run", "core", "backings", "metadata",
        "reference", "libpmem", "dax"}),
    ("runs", {"config", "rows", "fio", "peers", "runner"}),
    ("the kernel's own paths and the DAX guest", {"kernel", "kernel.*", "guest", "guest.*"}),
    ("reading results", {"summary", "report", "compare", "report_kernel", "report_page",
                         "plot", "publish"}),
    ("the command line", {"commands", "commands.*", "cli", "__main__"}),
)


def _modules():
    """{dotted name relative to pagetax ("" for the package): path}."""
    found = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, ".")
                found["pagetax" if rel == "__init__" else rel.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _layer(module):
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if module == m or (m.endswith(".*") and module.startswith(m[:-1])) \
                    or (m.endswith(".*") and module == m[:-2]):
                return i
    return None


def _imports(module):
    """The pagetax modules `module` imports, at the top or inside a function."""
    path = MODULES[module]
    is_package = path.endswith("__init__.py")
    here = [] if module == "pagetax" else module.split(".")
    package = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "pagetax":
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                name = ".".join(target + [alias.name])
                found.add(name if name in MODULES else ".".join(target) or "pagetax")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "pagetax":
                    found.add(".".join(parts[1:]) or "pagetax")
    return {m for m in found if m in MODULES and m != module}


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in MODULES if _layer(m) is None)
    assert not unplaced, f"place these in tests/test_layout.py's LAYERS: {unplaced}"


def test_no_module_imports_one_above_it():
    wrong = [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
             for m in sorted(MODULES) for d in sorted(_imports(m))
             if _layer(m) is not None and _layer(d) is not None and _layer(d) > _layer(m)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = {m: _imports(m) for m in MODULES}
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # a package's __init__ importing its own submodules is not a cycle of jobs
    cycles = [c for c in cycles if not re.fullmatch(r"(\w+) -> \1\.\w+ -> \1", c)]
    assert not cycles, "\n".join(cycles)


def _source_files():
    for top, exts in (("src", (".py",)), ("tests", (".py",)), ("bench", (".py",)),
                      ("csrc", (".c", ".h"))):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            for name in names:
                if name.endswith(exts) and not name.startswith("_") or name == "__init__.py":
                    yield os.path.join(folder, name)


def test_no_source_file_over_500_lines():
    long = []
    for path in _source_files():
        with open(path, errors="replace") as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            long.append(f"{os.path.relpath(path, ROOT)}: {n} lines")
    assert not long, "\n".join(long)


def _design_names():
    with open(os.path.join(ROOT, "csrc", "designs.def")) as f:
        return {m.replace("_", "-") for m in re.findall(r"^PT_DESIGN\((\w+)\)", f.read(), re.M)}


def _named_things():
    """{name: (what it is, the files allowed to test for it)}."""
    from pagetax.commands import COMMANDS
    from pagetax.kernel.probes import REGISTRY
    own = {}
    for name in _design_names():
        own[name] = ("design", {"designs.py", "metadata.py", "config.py"})
    from pagetax.peers import REGISTRY as PEERS
    for name in PEERS:   # libpmem is a design (the core's) and a peer (--peers)
        kind, files = own.get(name, ("", set()))
        own[name] = (f"{kind} and peer" if kind else "peer", files | {"peers.py", f"{name}.py"})
    for name, (module, _) in REGISTRY.items():
        own[name] = ("kernel path", {"kernel/probes/__init__.py", f"kernel/probes/{module}.py"})
    for command in COMMANDS:
        own[command.NAME] = ("command", {"commands/__init__.py",
                                         f"commands/{command.NAME}.py"})
    return own


def _strings(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _strings(e)]
    return []


def test_nothing_is_recognised_by_its_name_outside_its_file_and_registry():
    """A comparison (==, !=, in, not in) against a design's, a kernel path's
    or a command's name is a name check: what a thing is must come from
    what it declares (its flags, its attributes), as fio's engines do."""
    own = _named_things()
    found = []
    for module, path in MODULES.items():
        rel = os.path.relpath(path, PACKAGE).replace(os.sep, "/")
        for node in ast.walk(ast.parse(open(path).read())):
            if not isinstance(node, ast.Compare) or not any(
                    isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                continue
            for s in _strings(node.left) + [s for c in node.comparators for s in _strings(c)]:
                if s in own and rel not in own[s][1]:
                    found.append(f"{rel}:{node.lineno}: tests the {own[s][0]} name {s!r}")
    assert not found, "\n".join(found)


def test_the_c_core_names_no_design_outside_its_file():
    """Only a design's own file and the registry spell its name in C."""
    names = _design_names()
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "csrc")):
        for name in files:
            if not name.endswith((".c", ".h")) or name.startswith("design_") \
                    or name in ("registry.c",):
                continue
            path = os.path.join(folder, name)
            with open(path) as f:
                for i, line in enumerate(f, 1):
                    for s in re.findall(r'"([a-z0-9-]+)"', line):
                        if s in names:
                            found.append(f"{os.path.relpath(path, ROOT)}:{i}: \"{s}\"")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("doc, names", [
    ("README.md", ("`guest/`", "`kernel/probes/`", "designs.py",
                   "timed_run.py", "html_tables.py", "commands/")),
    ("csrc/README.md", ("designs.def", "run.c", "threads.c", "plan.c")),
])
def test_the_maps_name_the_layout(doc, names):
    with open(os.path.join(ROOT, doc)) as f:
        text = f.read()
    missing = [n for n in names if n not in text]
    assert not missing, f"{doc} does not show {missing}"


def test_the_readers_name_the_designs_the_core_flags():
    """Result readers load no C, so schema.py names the baseline and the
    proposal; the core's flags must say the same."""
    from pagetax import designs, schema
    every = designs.DESIGNS + designs.PEERS
    assert [d for d in every if "baseline" in designs.design_flags(d)] == [schema.BASELINE]
    assert [d for d in every if "proposal" in designs.design_flags(d)] == [schema.PROPOSAL]
