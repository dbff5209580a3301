"""A firmware-only guest that dirties memory: a real workload without kernel or disk.

The image replaces the BIOS (``-bios FILE``).  From the reset vector it runs a
16-bit loop that rewrites a window of low memory (64 KiB to at most 640 KiB)
over and over with ``rep stosw``, storing a new value each round, so every page
of the window is dirty again long before the next bitmap sync.  The rest of the
guest RAM stays zero.  Tests use it to get passes, a saw-toothing ``remaining``
and a policy that must act, in seconds and without building the lab guest.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SIZE = 64 * 1024  # one 64 KiB BIOS ROM, mapped at 0xF0000
WINDOW_START = 0x10000  # first byte rewritten (64 KiB)
MAX_END = 0xA0000  # the legacy VGA hole starts at 640 KiB


def _code(end_segment: int) -> bytes:
    """Machine code of the loop (real mode, at F000:0000)."""
    code = bytes(
        [
            0xFA,  # cli
            0xFC,  # cld
            0x31, 0xC0,  # xor ax, ax
            0xBA, 0x00, 0x10,  # mov dx, 0x1000       ; segment of 64 KiB
            # loop: (offset 7)
            0x8E, 0xC2,  # mov es, dx
            0x31, 0xFF,  # xor di, di
            0xB9, 0x00, 0x80,  # mov cx, 0x8000     ; 32 Ki words = 64 KiB
            0xF3, 0xAB,  # rep stosw
            0x81, 0xC2, 0x00, 0x10,  # add dx, 0x1000
            0x81, 0xFA, end_segment & 0xFF, end_segment >> 8,  # cmp dx, end
            0x72, 0xED,  # jb loop
            0x40,  # inc ax                        ; next round writes new values
            0xBA, 0x00, 0x10,  # mov dx, 0x1000
            0xEB, 0xE7,  # jmp loop
        ]
    )  # fmt: skip
    return code


def dirtying_bios(path: str | Path, kib: int = 576) -> Path:
    """Write the firmware image to ``path``; it rewrites ``kib`` KiB (multiple of 64)."""
    if kib % 64 or not 64 <= kib <= (MAX_END - WINDOW_START) // 1024:
        raise ValueError("the dirtied window must be a multiple of 64 KiB, 64..576 KiB")
    end_segment = (WINDOW_START + kib * 1024) >> 4
    image = bytearray(IMAGE_SIZE)
    code = _code(end_segment)
    image[: len(code)] = code
    image[0xFFF0:0xFFF5] = bytes([0xEA, 0x00, 0x00, 0x00, 0xF0])  # jmp far F000:0000
    out = Path(path)
    out.write_bytes(bytes(image))
    return out
