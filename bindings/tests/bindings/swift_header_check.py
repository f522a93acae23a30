"""Compiles the generated Swift bindings' C header and links it against the library, then runs
the same checks the Swift code runs when it loads (contract version and one checksum per API
function). No Swift toolchain exists here, so this is how far the Swift side is verified.

usage: swift_header_check.py BINDINGS_DIR LIB_DIR
"""

import re
import subprocess
import sys
from pathlib import Path

out, lib_dir = Path(sys.argv[1]), Path(sys.argv[2])
swift = (out / "Curbside.swift").read_text()

contract = re.search(r"let bindings_contract_version = (\d+)", swift)
checks = re.findall(r"if \((uniffi_\w+_checksum_\w+)\(\) != (\d+)\)", swift)
assert contract and checks, "the Swift file no longer has the load-time checks this test mirrors"

lines = [
    "#include <stdio.h>",
    '#include "CurbsideFFI.h"',
    "int main(void) {",
    "  int bad = 0;",
    f"  if (ffi_curbside_ffi_uniffi_contract_version() != {contract.group(1)}) {{",
    '    puts("contract version differs"); bad++; }',
]
for fn, want in checks:
    lines.append(f'  if ({fn}() != {want}) {{ puts("checksum differs: {fn}"); bad++; }}')
lines += [f'  printf("%d checks, %d failed\\n", {len(checks) + 1}, bad);', "  return bad != 0;", "}"]
(out / "swift_header_check.c").write_text("\n".join(lines) + "\n")

# gcc has no clang nullability qualifiers; they carry no meaning for this check.
cflags = ["-D_Nonnull=", "-D_Nullable=", "-std=c11", "-Wall", "-Werror", "-Wno-pragma-once-outside-header"]
subprocess.run(
    ["cc", *cflags[:5], "-I", str(out), str(out / "swift_header_check.c"),
     "-L", str(lib_dir), "-lcurbside_ffi", f"-Wl,-rpath,{lib_dir.resolve()}", "-o", str(out / "swift_header_check")],
    check=True,
)
result = subprocess.run([str(out / "swift_header_check")])
sys.exit(result.returncode)
