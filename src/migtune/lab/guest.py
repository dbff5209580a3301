"""The lab guest: the Debian cloud kernel plus a tiny initramfs (busybox + our dirtier).

Built on first use into a cache directory keyed by a hash of everything that goes
into it, so a changed ``dirtier.c`` or a kernel upgrade rebuilds and nothing else
does.  Needs gcc with the static C library, busybox-static, cpio, gzip and a
``/boot/vmlinuz-*-cloud-amd64``; each missing piece is named with its Debian package.

The guest prints fixed, machine-readable lines on its serial console (see
``guest/dirtier.c`` and ``guest/init``); :func:`parse_serial_line` reads them and
:class:`SerialTail` follows a growing serial log.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from migtune.errors import UnavailableError

GUEST_DIR = Path(__file__).parent / "guest"
SOURCES = ("dirtier.c", "init")
KERNEL_GLOB = "vmlinuz-*-cloud-amd64"
BUILD_VERSION = "1"  # bump when the image layout changes


@dataclass(frozen=True, slots=True)
class GuestImage:
    kernel: Path
    initrd: Path
    dirtier: Path
    key: str  # hash of sources, busybox and kernel: what the image was built from


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "migtune" / "lab"


def _version_key(path: Path) -> list[tuple[int, object]]:
    # Natural sort so 6.1.0-10 sorts after 6.1.0-9.
    parts = re.split(r"(\d+)", path.name)
    return [(1, int(p)) if p.isdigit() else (0, p) for p in parts]


def find_kernel(boot: Path = Path("/boot")) -> Path:
    """The newest Debian cloud kernel in ``boot`` (``MIGTUNE_LAB_KERNEL`` overrides)."""
    override = os.environ.get("MIGTUNE_LAB_KERNEL")
    if override:
        path = Path(override)
        if not path.is_file():
            raise UnavailableError(f"MIGTUNE_LAB_KERNEL={override}: no such file")
        return path
    kernels = sorted(boot.glob(KERNEL_GLOB), key=_version_key)
    if not kernels:
        raise UnavailableError(
            f"no guest kernel {boot}/{KERNEL_GLOB}: install it with "
            "`apt-get install -y linux-image-cloud-amd64`"
        )
    kernel = kernels[-1]
    if not os.access(kernel, os.R_OK):
        raise UnavailableError(f"guest kernel {kernel} is not readable by this user")
    return kernel


def is_static_elf(path: Path) -> bool:
    """True if ``path`` is an ELF executable without a program interpreter."""
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF":
                return False
            is64 = head[4] == 2
            endian = "<" if head[5] == 1 else ">"
            if is64:
                phoff, phentsize, phnum = (
                    struct.unpack_from(endian + "Q", head, 32)[0],
                    *struct.unpack_from(endian + "HH", head, 54),
                )
            else:
                phoff = struct.unpack_from(endian + "I", head, 28)[0]
                phentsize, phnum = struct.unpack_from(endian + "HH", head, 42)
            fh.seek(phoff)
            table = fh.read(phentsize * phnum)
    except OSError:
        return False
    for i in range(phnum):
        (p_type,) = struct.unpack_from(endian + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP: needs a dynamic loader
            return False
    return True


def _find_busybox(which: Callable[[str], str | None]) -> Path | None:
    for candidate in ("/bin/busybox", "/usr/bin/busybox", which("busybox")):
        if candidate and Path(candidate).is_file() and is_static_elf(Path(candidate)):
            return Path(candidate)
    return None


def _has_static_libc(gcc: str) -> bool:
    try:
        out = subprocess.run(
            [gcc, "-print-file-name=libc.a"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return os.path.isabs(out) and os.path.isfile(out)


@dataclass(frozen=True, slots=True)
class Toolchain:
    gcc: str
    cpio: str
    gzip: str
    busybox: Path


def check_tools(
    which: Callable[[str], str | None] = shutil.which,
    static_libc: Callable[[str], bool] = _has_static_libc,
    busybox: Callable[[Callable[[str], str | None]], Path | None] = _find_busybox,
) -> Toolchain:
    """Find what the build needs, or raise one UnavailableError naming every missing package."""
    missing: list[str] = []
    gcc = which("gcc")
    if gcc is None:
        missing += ["gcc", "libc6-dev"]
    elif not static_libc(gcc):
        missing.append("libc6-dev")
    cpio = which("cpio")
    if cpio is None:
        missing.append("cpio")
    gzip = which("gzip")
    if gzip is None:
        missing.append("gzip")
    bb = busybox(which)
    if bb is None:
        missing.append("busybox-static")
    if missing:
        pkgs = " ".join(missing)
        raise UnavailableError(
            f"the lab guest needs the Debian package(s) {', '.join(missing)}: "
            f"install with `apt-get install -y {pkgs}`"
        )
    assert gcc and cpio and gzip and bb  # for the type checker
    return Toolchain(gcc, cpio, gzip, bb)


def _hash_file(h: hashlib._Hash, path: Path) -> None:
    h.update(path.name.encode() + b"\0")
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def image_key(kernel: Path, busybox: Path, guest_dir: Path = GUEST_DIR) -> str:
    h = hashlib.sha256(BUILD_VERSION.encode())
    for name in SOURCES:
        _hash_file(h, guest_dir / name)
    _hash_file(h, busybox)
    h.update(str(kernel.resolve()).encode())
    st = kernel.stat()
    h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _run(cmd: list[str], what: str, **kw: object) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=300, **kw)  # type: ignore[call-overload]
    except subprocess.CalledProcessError as exc:
        err = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise UnavailableError(f"{what} failed: {err[-1] if err else exc}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnavailableError(f"{what} failed: {exc}") from None


def _assemble(tools: Toolchain, guest_dir: Path, work: Path) -> tuple[Path, Path]:
    dirtier = work / "dirtier"
    _run(
        [tools.gcc, "-static", "-O2", "-Wall", "-o", str(dirtier), str(guest_dir / "dirtier.c")],
        "compiling the guest dirtier (gcc -static)",
    )
    root = work / "root"
    for d in ("bin", "dev", "proc", "sys", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy2(tools.busybox, root / "bin" / "busybox")
    shutil.copy2(dirtier, root / "bin" / "dirtier")
    shutil.copy2(guest_dir / "init", root / "init")
    (root / "init").chmod(0o755)
    applets = subprocess.run(
        [str(tools.busybox), "--list"], capture_output=True, text=True, timeout=30
    ).stdout.split()
    for applet in {"sh", *applets} - {"busybox"}:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    initrd = work / "initrd.gz"
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    with initrd.open("wb") as out:
        cpio = subprocess.Popen(
            [tools.cpio, "-o", "-H", "newc", "--quiet"],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        gz = subprocess.Popen([tools.gzip, "-9", "-n"], stdin=cpio.stdout, stdout=out)
        assert cpio.stdin and cpio.stdout
        cpio.stdout.close()  # gzip owns the pipe now
        cpio.stdin.write(("\n".join(names) + "\n").encode())
        cpio.stdin.close()
        if cpio.wait(timeout=120) != 0 or gz.wait(timeout=120) != 0:
            raise UnavailableError("packing the guest initramfs (cpio | gzip) failed")
    return dirtier, initrd


def build_guest(
    cache: Path | None = None,
    *,
    force: bool = False,
    boot: Path = Path("/boot"),
    guest_dir: Path = GUEST_DIR,
) -> GuestImage:
    """Return the lab guest image, building it into the cache first if needed."""
    kernel = find_kernel(boot)
    busybox = _find_busybox(shutil.which)
    if busybox is None:
        check_tools()  # raises, naming every missing package
    assert busybox is not None
    key = image_key(kernel, busybox, guest_dir)
    base = cache or cache_dir()
    final = base / key
    image = GuestImage(kernel, final / "initrd.gz", final / "dirtier", key)
    if not force and image.initrd.is_file() and image.dirtier.is_file():
        return image  # a cached image needs no compiler
    tools = check_tools()
    try:
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=base))
    except OSError as exc:
        raise UnavailableError(f"cannot create the lab cache {base}: {exc.strerror}") from None
    try:
        dirtier, initrd = _assemble(tools, guest_dir, work)
        staged = work / "image"
        staged.mkdir()
        os.replace(dirtier, staged / "dirtier")
        os.replace(initrd, staged / "initrd.gz")
        if force and final.exists():
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(staged, final)
        except OSError:
            # Another process built the same image meanwhile: theirs is as good.
            if not image.initrd.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return image


# -- serial console lines ---------------------------------------------------------

_KV = re.compile(r"(\w+)=(\S+)")
_PREFIXES = {
    "dirtier:": "rate",
    "heartbeat:": "heartbeat",
    "migtune-guest:": "init",
}


@dataclass(frozen=True, slots=True)
class GuestLine:
    """One line the guest printed: ``kind`` is rate, ready, heartbeat, init, idle or error."""

    kind: str
    fields: dict[str, float]
    text: str

    def get(self, name: str) -> float | None:
        return self.fields.get(name)


def _num(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def parse_serial_line(line: str) -> GuestLine | None:
    """Parse one serial-console line of the lab guest; None for anything else.

    The console may prefix lines with kernel noise or carriage returns, so the
    known prefix is searched anywhere in the line.
    """
    text = line.replace("\r", "").rstrip("\n")
    for prefix, kind in _PREFIXES.items():
        at = text.find(prefix)
        if at < 0:
            continue
        body = text[at + len(prefix) :].strip()
        if kind == "rate":
            if body.startswith("ready"):
                kind = "ready"
            elif body.startswith("error"):
                return GuestLine("error", {}, body[len("error") :].strip())
            elif not body.startswith("t="):
                return None
        elif kind == "init" and body.startswith("idle"):
            kind = "idle"
        fields = {k: n for k, v in _KV.findall(body) if (n := _num(v)) is not None}
        if kind == "rate" and not {"t", "rate_pps", "rate_Bps"} <= fields.keys():
            return None  # a line cut short (guest stopped mid-write)
        if kind == "heartbeat" and "n" not in fields:
            return None
        return GuestLine(kind, fields, text[at:])
    return None


class SerialTail:
    """Follow a serial log file as it grows, yielding complete parsed guest lines."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def read(self) -> Iterator[GuestLine]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for raw in lines:
            parsed = parse_serial_line(raw.decode("utf-8", errors="replace"))
            if parsed is not None:
                yield parsed
