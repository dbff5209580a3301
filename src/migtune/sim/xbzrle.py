"""XBZRLE: QEMU's page delta codec, byte for byte (docs/qemu-migration.md §4.3-§4.5).

Two encoders produce identical output:

* :func:`encode_ref` - a plain transcription of the algorithm, the specification;
* :func:`encode` / :func:`encode_many` - numpy: run boundaries of many pages at once,
  used by the simulator and the benchmark.

Return convention follows QEMU's ``xbzrle_encode_buffer``: ``b""`` when the pages are
identical (QEMU returns 0), ``None`` on overflow (QEMU returns -1), else the encoding.
"""

from __future__ import annotations

import numpy as np

from migtune.errors import InputError

PAGE = 4096
ULEB_MAX = 0x3FFF


def uleb_encode(n: int) -> bytes:
    """``uleb128_encode_small``: 1 byte below 0x80, 2 bytes up to 0x3FFF (§4.3)."""
    if not 0 <= n <= ULEB_MAX:
        raise ValueError(f"uleb128_encode_small: {n} out of range 0..0x3FFF")
    if n < 0x80:
        return bytes((n,))
    return bytes(((n & 0x7F) | 0x80, n >> 7))


def uleb_decode(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """``uleb128_decode_small``: (value, bytes used), or (0, -1) when invalid (§4.4).

    A second byte with bit 7 set is an error; non-canonical encodings are accepted.
    """
    b0 = buf[pos]
    if not b0 & 0x80:
        return b0, 1
    if pos + 1 >= len(buf):
        return 0, -1
    b1 = buf[pos + 1]
    if b1 & 0x80:
        return 0, -1
    return (b0 & 0x7F) | (b1 << 7), 2


def _uleb_len(n):
    return 1 + (n >= 0x80)


def encode_ref(old: bytes, new: bytes, dlen: int = PAGE) -> bytes | None:
    """Reference encoder: the loop of §4.3 one byte at a time (slow, obviously right)."""
    slen = len(old)
    if len(new) != slen:
        raise ValueError("old and new pages differ in length")
    out = bytearray()
    i = 0
    while i < slen:
        if len(out) + 2 > dlen:
            return None
        z = 0
        while i + z < slen and old[i + z] == new[i + z]:
            z += 1
        i += z
        if z == slen:
            return b""
        if i == slen:
            return bytes(out)
        out += uleb_encode(z)
        if len(out) + 2 > dlen:
            return None
        n = 0
        while i + n < slen and old[i + n] != new[i + n]:
            n += 1
        out += uleb_encode(n)
        if len(out) + n > dlen:
            return None
        out += new[i : i + n]
        i += n
    return bytes(out)


def decode(src: bytes, dst: bytearray, dlen: int | None = None) -> int:
    """``xbzrle_decode_buffer``: apply ``src`` onto ``dst`` (holding the old page).

    Returns the bytes covered (the dropped trailing equal run excluded) or -1 on any
    malformed input, with QEMU's quirks (§4.4): a zero zrun only first, non-canonical
    varints accepted, a zero nzrun rejected.
    """
    slen = len(src)
    dlen = len(dst) if dlen is None else dlen
    i = d = 0
    while i < slen:
        if slen - i < 2:
            return -1
        z, used = uleb_decode(src, i)
        if used < 0 or (i > 0 and z == 0):
            return -1
        i += used
        d += z
        if d > dlen:
            return -1
        if slen - i < 2:
            return -1
        n, used = uleb_decode(src, i)
        if used < 0 or n == 0:
            return -1
        i += used
        if d + n > dlen or i + n > slen:
            return -1
        dst[d : d + n] = src[i : i + n]
        d += n
        i += n
    return d


def decode_page(encoded: bytes, old: bytes) -> bytes:
    """Rebuild the new page from the old one; InputError on a corrupt encoding."""
    dst = bytearray(old)
    if decode(encoded, dst) < 0:
        raise InputError("corrupt XBZRLE encoding")
    return bytes(dst)


def _hopeless(old: np.ndarray, new: np.ndarray, dlen: int) -> np.ndarray:
    """Pages whose differing bytes alone (+ 2 header bytes) exceed the budget: an
    overflow whatever the runs.  Only pages with enough differing words are counted."""
    n, p = old.shape
    if p % 8:
        return np.count_nonzero(old != new, axis=1) + 2 > dlen
    wo, wn = old.view(np.uint64), new.view(np.uint64)
    maybe = np.flatnonzero(np.count_nonzero(wo != wn, axis=1) * 8 + 2 > dlen)
    out = np.zeros(n, dtype=bool)
    if len(maybe):
        out[maybe] = np.count_nonzero(old[maybe] != new[maybe], axis=1) + 2 > dlen
    return out


def _runs(old: np.ndarray, new: np.ndarray):
    """Differing runs of each page: (page, start, end) arrays and the differing bytes of
    ``new`` in order.  Works on the differing 8-byte words only: a run continues from one
    word into the next when the words are adjacent in the same page."""
    n, p = old.shape
    if p % 8:
        pos = np.flatnonzero(old != new)
        brk = np.ones(len(pos), dtype=bool)
        brk[1:] = (pos[1:] != pos[:-1] + 1) | (pos[1:] % p == 0)
        first = np.flatnonzero(brk)
        length = np.diff(np.append(first, len(pos)))
        start_flat = pos[first]
        return start_flat // p, start_flat % p, start_flat % p + length, new.reshape(-1)[pos]
    wo, wn = old.reshape(-1).view(np.uint64), new.reshape(-1).view(np.uint64)
    words = np.flatnonzero(wo != wn)
    nw = wn[words]
    differ = (wo[words] ^ nw).view(np.uint8) != 0  # 8 flags per differing word
    # the byte before each byte, in the same run only if the words touch in one page
    joined = np.zeros(len(words), dtype=bool)
    joined[1:] = (words[1:] == words[:-1] + 1) & (words[1:] % (p // 8) != 0)
    prev = np.zeros_like(differ)
    prev[1:] = differ[:-1]
    prev[0::8] &= joined
    nxt = np.zeros_like(differ)
    nxt[:-1] = differ[1:]
    nxt[7::8] &= np.append(joined[1:], False)
    starts = np.flatnonzero(differ & ~prev)
    ends = np.flatnonzero(differ & ~nxt) + 1
    start_flat = words[starts >> 3] * 8 + (starts & 7)
    length = ends - starts  # within the compact stream runs are contiguous too
    page = start_flat // p
    start = start_flat % p
    data = nw.view(np.uint8)[differ]
    return page, start, start + length, data


def encode_many(
    old: np.ndarray, new: np.ndarray, dlen: int = PAGE, with_data: bool = True
) -> tuple[np.ndarray, list[bytes | None] | None]:
    """Encode many pages at once (rows of two uint8 arrays of shape (n, P)).

    Returns ``(lengths, encodings)``: lengths as QEMU's return value (-1 overflow,
    0 unchanged, else the encoded length); encodings (``None`` when ``with_data`` is
    false) as :func:`encode_ref` would return them.
    """
    old = np.ascontiguousarray(old, dtype=np.uint8)
    new = np.ascontiguousarray(new, dtype=np.uint8)
    if old.shape != new.shape or old.ndim != 2:
        raise ValueError("encode_many expects two (n, page_size) uint8 arrays")
    n, p = old.shape
    # an encoding is at least the differing bytes + 2 header bytes: past the budget it
    # must overflow, whatever the runs (saves laying out whole-page rewrites)
    hopeless = _hopeless(old, new, dlen)
    if hopeless.any():
        keep = np.flatnonzero(~hopeless)
        lengths = np.full(n, -1, dtype=np.int64)
        encodings: list[bytes | None] | None = [None] * n if with_data else None
        if len(keep):
            sub_len, sub_enc = encode_many(old[keep], new[keep], dlen, with_data)
            lengths[keep] = sub_len
            if encodings is not None and sub_enc is not None:
                for i, e in zip(keep, sub_enc, strict=True):
                    encodings[i] = e
        return lengths, encodings
    page, start, end, data = _runs(old, new)
    length = end - start
    first = np.ones(len(page), dtype=bool)
    first[1:] = page[1:] != page[:-1]
    prev_end = np.zeros(len(page), dtype=np.int64)
    prev_end[1:] = end[:-1]
    z = np.where(first, start, start - prev_end)
    uz, ul = _uleb_len(z), _uleb_len(length)
    size = uz + ul + length
    # exclusive running total within each page
    csum = np.cumsum(size)
    page_base = np.zeros(n + 1, dtype=np.int64)
    counts = np.bincount(page, minlength=n)
    np.cumsum(counts, out=page_base[1:])
    before_run = csum - size
    base_of_page = np.zeros(n, dtype=np.int64)
    nonempty = counts > 0
    base_of_page[nonempty] = before_run[page_base[:-1][nonempty]]
    d_before = before_run - base_of_page[page]
    bad = (d_before + 2 > dlen) | (d_before + uz + 2 > dlen) | (d_before + uz + ul + length > dlen)
    total = np.bincount(page, weights=size, minlength=n).astype(np.int64)
    over = np.zeros(n, dtype=bool)
    if len(page):
        over[page[bad]] = True
        last = page_base[1:][nonempty] - 1
        trailing = end[last] < p
        lp = page[last]
        over[lp[trailing & (total[lp] + 2 > dlen)]] = True
    lengths = np.where(over, -1, total)
    if not with_data:
        return lengths, None
    out = np.zeros(int(csum[-1]) if len(csum) else 0, dtype=np.uint8)
    pos = before_run
    small_z = uz == 1
    out[pos[small_z]] = z[small_z]
    big_z = ~small_z
    out[pos[big_z]] = (z[big_z] & 0x7F) | 0x80
    out[pos[big_z] + 1] = z[big_z] >> 7
    lpos = pos + uz
    small_l = ul == 1
    out[lpos[small_l]] = length[small_l]
    big_l = ~small_l
    out[lpos[big_l]] = (length[big_l] & 0x7F) | 0x80
    out[lpos[big_l] + 1] = length[big_l] >> 7
    # the data bytes are exactly new[old != new] in order: each run's bytes go after its
    # header, i.e. shifted by the headers emitted so far
    shift = np.repeat(np.cumsum(uz + ul), length)
    out[np.arange(len(data)) + shift] = data
    encodings: list[bytes | None] = []
    raw = out.tobytes()
    for i in range(n):
        if over[i]:
            encodings.append(None)
        elif counts[i] == 0:
            encodings.append(b"")
        else:
            lo = int(before_run[page_base[i]])
            encodings.append(raw[lo : lo + int(total[i])])
    return lengths, encodings


def encode(old: bytes, new: bytes, dlen: int = PAGE) -> bytes | None:
    """Encode one page with the numpy encoder (same result as :func:`encode_ref`)."""
    a = np.frombuffer(old, dtype=np.uint8)[None, :]
    b = np.frombuffer(new, dtype=np.uint8)[None, :]
    if a.shape != b.shape:
        raise ValueError("old and new pages differ in length")
    return encode_many(a, b, dlen)[1][0]


def encoded_sizes(old: np.ndarray, new: np.ndarray, dlen: int = PAGE) -> np.ndarray:
    """Only the lengths (-1 overflow, 0 unchanged): what the simulator needs per page."""
    return encode_many(old, new, dlen, with_data=False)[0]


def prefix_write_size(bytes_changed, page_size: int = PAGE, dlen: int = PAGE):
    """Encoded length when one run of ``bytes_changed`` bytes at the page start differs.

    This is the lab guest's write (``dirtier`` adds 1 to the first ``bytes`` bytes of
    the page), so for it the size model is exact: ``1 + uleb(b) + b``, overflow (-1)
    when the budget checks of §4.3 fail, 0 when nothing differs.  Works on arrays.
    """
    b = np.asarray(bytes_changed, dtype=np.int64)
    size = 1 + _uleb_len(b) + b
    over = (size > dlen) | ((b < page_size) & (size + 2 > dlen))
    return np.where(b <= 0, 0, np.where(over, -1, size))
