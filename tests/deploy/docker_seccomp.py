"""Apply a Docker seccomp profile (JSON) to a command, as a container runtime would, without
a Docker engine: ``python docker_seccomp.py PROFILE [--drop-comment PREFIX] -- COMMAND...``.

The profile is filtered the way Docker filters it for a container with no capabilities
(``cap_drop: [ALL]``, the deploy files' setting): a rule that ``includes`` a capability is
left out, one that ``excludes`` a capability is kept, ``arches`` and ``minKernel`` as the
machine says; then the rules go into a libseccomp filter (libseccomp is what runc and crun
use too), the filter is loaded with no-new-privileges, and COMMAND is executed under it.
``--drop-comment`` leaves out the rules whose ``comment`` starts with PREFIX (lettabot's
additions: what is left is Docker's default profile).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import platform
import sys
from typing import Any

_ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
            "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
            "SCMP_ACT_ALLOW": 0x7FFF0000, "SCMP_ACT_LOG": 0x7FFC0000}
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
        "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "s390x": "s390x",
            "ppc64le": "ppc64le", "riscv64": "riscv64"}


class _Arg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _action(name: str, errno: int | None, default_errno: int) -> int:
    if name == "SCMP_ACT_ERRNO":
        return 0x00050000 | ((default_errno if errno is None else errno) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        return 0x7FF00000 | ((default_errno if errno is None else errno) & 0xFFFF)
    return _ACTIONS[name]


def _kernel() -> tuple[int, int]:
    major, minor = platform.release().split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def applies(rule: dict[str, Any], arch: str, caps: frozenset[str] = frozenset()) -> bool:
    """Whether Docker puts ``rule`` into a container's filter on ``arch`` with ``caps``."""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if not set(inc.get("caps") or ()) <= caps or set(exc.get("caps") or ()) & caps:
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if arch in (exc.get("arches") or ()):
        return False
    if inc.get("minKernel"):
        want = tuple(int(p) for p in inc["minKernel"].split(".")[:2])
        if _kernel() < want:
            return False
    return True


def load(profile: dict[str, Any], *, drop_comment: str | None = None) -> None:
    """Load ``profile`` as this process's seccomp filter (inherited by what it executes)."""
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_Arg)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    default_errno = int(profile.get("defaultErrnoRet", 1))
    ctx = lib.seccomp_init(_action(profile["defaultAction"], None, default_errno))
    if not ctx:
        raise OSError("seccomp_init failed")
    machine = platform.machine()
    arch = _GO_ARCH.get(machine, machine)
    native = lib.seccomp_arch_resolve_name(machine.encode())
    for entry in profile.get("archMap") or ():
        names = [entry["architecture"], *(entry.get("subArchitectures") or ())]
        tokens = [lib.seccomp_arch_resolve_name(n.removeprefix("SCMP_ARCH_").lower().encode())
                  for n in names]
        if native in tokens:
            for token in tokens:
                if token and token != native:
                    lib.seccomp_arch_add(ctx, token)
    for rule in profile["syscalls"]:
        if drop_comment and (rule.get("comment") or "").startswith(drop_comment):
            continue
        if not applies(rule, arch):
            continue
        action = _action(rule["action"], rule.get("errnoRet"), 1)
        args = rule.get("args") or []
        array = (_Arg * max(1, len(args)))(*[
            _Arg(a["index"], _OPS[a["op"]], a["value"], a.get("valueTwo", 0)) for a in args])
        for name in rule["names"]:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number == -1:  # unknown to this libseccomp: runc skips it too
                continue
            done = lib.seccomp_rule_add_array(ctx, action, number, len(args), array)
            if done < 0:
                raise OSError(-done, f"seccomp rule for {name}: {os.strerror(-done)}")
    done = lib.seccomp_load(ctx)
    if done < 0:
        raise OSError(-done, f"seccomp_load: {os.strerror(-done)}")


def main(argv: list[str]) -> None:
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    drop = options[options.index("--drop-comment") + 1] if "--drop-comment" in options else None
    with open(options[0]) as fh:
        load(json.load(fh), drop_comment=drop)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
