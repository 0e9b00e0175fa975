"""SoftHSM2 inside the operator's process: its memory as the token's keys gain versions.

The pkcs11 provider runs here as the key monitor runs it, at full speed: a new provider for every
check, which reads the key's protection and versions, wraps with the newest version and unwraps
again (--concurrent checks at once, on the worker threads the operator uses). Another process adds
a version to every key each --rotate-every seconds for the first --rotate-for minutes, as an HSM
team would. Every 30 s it prints RSS and glibc's account of the heap (mallinfo2).

    .venv/bin/python -m bench.softhsm_memory --minutes 6 --rotate-for 2
    .venv/bin/python -m bench.softhsm_memory --minutes 6 --rotate-for 0     # no key changes

Measured (2026-12-04, the two commands above side by side): with no key changes, 35,000 checks left
RSS at 102.4-102.6 MiB and glibc's bytes in use at 28.6-28.8; with 27 versions added to each of
the 4 keys, bytes in use rose 28.4 -> 30.9 MiB (about 24 KiB a key pair: SoftHSM2 loads every
object of the token into the process that uses it) and stayed there through 9,000 more checks.
python-pkcs11 makes a new class for each object a search finds, garbage only the cycle collector
frees; a full collection at the end freed 0.2 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pkcs11 import exceptions as pkcs11_errors
from tests.integration import softhsm

from bench.shim.sitecustomize import heap


def _rss() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def rotate(labels: list[str], *, seconds: float, every: float) -> None:
    """Add a version to each key every ``every`` seconds, for ``seconds``."""
    deadline = time.monotonic() + seconds
    version = 2
    while time.monotonic() < deadline:
        for label in labels:
            _retrying(functools.partial(softhsm.add_rsa_version, label, version))
        version += 1
        time.sleep(every)


def _retrying(action: Callable[[], None]) -> None:
    """SoftHSM2 answers CKR_GENERAL_ERROR while another process touches the token's files."""
    for _ in range(50):
        try:
            return action()
        except pkcs11_errors.GeneralError:
            time.sleep(0.05)
    return action()


async def check(label: str) -> int:
    """One check as the key monitor makes it, with a new provider; the versions it found."""
    from vaop.providers import pkcs11

    provider = pkcs11.Pkcs11KeyProvider(
        module=softhsm.MODULE, token_label=softhsm.TOKEN, pin=softhsm.PIN, identity="bench"
    )
    await provider.protection(label)
    versions = await provider.versions(label)
    wrapped = await provider.wrap(versions[-1], os.urandom(32))
    await provider.unwrap(label, wrapped.version, wrapped.ciphertext, algorithm=wrapped.algorithm)
    return len(versions)


async def run(args: argparse.Namespace, labels: list[str]) -> None:
    started = time.monotonic()
    checks, reported = 0, -1.0
    print(" minute   RSS MiB   in use MiB   full collections   checks   versions per key")
    while (elapsed := time.monotonic() - started) < args.minutes * 60:
        found = await asyncio.gather(*(check(labels[i % len(labels)]) for i in range(args.concurrent)))
        checks += len(found)
        if elapsed - reported >= 30 or reported < 0:
            reported = elapsed
            full = gc.get_stats()[2]["collections"]
            print(
                f"{elapsed / 60:7.1f} {_rss():9.1f} {heap()[0] / 2**20:12.1f} {full:18d} {checks:8d} "
                f"{max(found):18d}",
                flush=True,
            )
    used = heap()[0]
    gc.collect()
    print(f"a full collection at the end freed {(used - heap()[0]) / 2**20:.1f} MiB: cyclic garbage")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=6)
    parser.add_argument("--rotate-for", type=float, default=2, help="minutes; 0: no key changes")
    parser.add_argument("--rotate-every", type=float, default=3, help="seconds")
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--concurrent", type=int, default=4, help="checks at once")
    parser.add_argument("--rotator", help=argparse.SUPPRESS)  # the token's softhsm2.conf, in the child
    args = parser.parse_args()
    labels = [f"kek-{n}" for n in range(args.keys)]
    if args.rotator:
        os.environ["SOFTHSM2_CONF"] = args.rotator
        rotate(labels, seconds=args.rotate_for * 60, every=args.rotate_every)
        return
    with tempfile.TemporaryDirectory(prefix="vaop-softhsm-") as folder:
        conf = softhsm.configure(Path(folder))
        os.environ["SOFTHSM2_CONF"] = str(conf)
        for label in labels:
            softhsm.add_rsa_version(label, 1)
        rotator = None
        if args.rotate_for > 0:
            rotator = subprocess.Popen(
                [sys.executable, "-m", "bench.softhsm_memory", *sys.argv[1:], "--rotator", str(conf)]
            )
        try:
            asyncio.run(run(args, labels))
        finally:
            if rotator is not None:
                rotator.kill()
                rotator.wait()


if __name__ == "__main__":
    main()
