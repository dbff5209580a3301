"""The XBZRLE codec against QEMU's vectors (docs/qemu-migration.md §4.4, §4.5) and round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migtune.sim import xbzrle as xb

P = 4096
ZEROS = bytes(P)
RAMP = bytes(i % 256 for i in range(P))


def _with(base: bytes, changes: dict[int, int]) -> bytes:
    b = bytearray(base)
    for i, v in changes.items():
        b[i] = v
    return bytes(b)


def _xor(base: bytes, lo: int, hi: int, mask: int) -> bytes:
    b = bytearray(base)
    for i in range(lo, hi):
        b[i] ^= mask
    return bytes(b)


BOTH = pytest.mark.parametrize("enc", [xb.encode_ref, xb.encode], ids=["ref", "numpy"])


def test_uleb_round_trip_every_value():
    for n in range(0x4000):
        e = xb.uleb_encode(n)
        assert len(e) == (1 if n < 0x80 else 2)
        assert xb.uleb_decode(e) == (n, len(e))


def test_uleb_rejects_bad_input():
    assert xb.uleb_decode(b"\x80\x80") == (0, -1)
    with pytest.raises(ValueError):
        xb.uleb_encode(0x4000)
    # non-canonical two-byte form of 1 is accepted by QEMU's decoder
    assert xb.uleb_decode(b"\x81\x00") == (1, 2)


@BOTH
def test_hand_vectors(enc):
    assert enc(ZEROS, _with(ZEROS, {4095: 1})) == bytes.fromhex("ff1f0101")
    assert enc(ZEROS, _with(ZEROS, {0: 0xAA, 1: 0xBB, 2: 0xCC})) == bytes.fromhex("0003aabbcc")
    new = _with(ZEROS, {10: 0xAA, 11: 0xBB, 20: 0xCC})
    assert enc(ZEROS, new) == bytes.fromhex("0a02aabb0801cc")
    assert enc(RAMP, RAMP) == b""


def test_hand_vectors_decode():
    cases = [
        ("ff1f0101", _with(ZEROS, {4095: 1}), 4096),
        ("0003aabbcc", _with(ZEROS, {0: 0xAA, 1: 0xBB, 2: 0xCC}), 3),
        ("0a02aabb0801cc", _with(ZEROS, {10: 0xAA, 11: 0xBB, 20: 0xCC}), 21),
    ]
    for hexa, new, covered in cases:
        dst = bytearray(ZEROS)
        assert xb.decode(bytes.fromhex(hexa), dst) == covered
        assert bytes(dst) == new


@pytest.mark.parametrize("hexa", ["00", "0000", "000001", "0001aa0001bb", "8080", "ff20", "00020a"])
def test_invalid_decoder_inputs(hexa):
    assert xb.decode(bytes.fromhex(hexa), bytearray(P)) == -1


@BOTH
def test_golden_v1_and_budget_edges(enc):
    new = b"\x11" * 200 + bytes(P - 200)
    expect = bytes.fromhex("00c801") + b"\x11" * 200
    assert enc(ZEROS, new, 4096) == expect
    assert enc(ZEROS, new, 205) == expect
    for dlen in (202, 203, 204):
        assert enc(ZEROS, new, dlen) is None


@BOTH
def test_golden_v2_to_v5(enc):
    v2 = enc(RAMP, _xor(RAMP, 4000, 4096, 0xFF))
    assert (
        len(v2) == 99 and v2[:3] == bytes.fromhex("a01f60") and v2[3:6] == bytes.fromhex("5f5e5d")
    )
    v3 = enc(RAMP, _xor(_xor(RAMP, 0, 1, 1), 4095, 4096, 1))
    assert v3 == bytes.fromhex("000101fe1f01fe")
    assert enc(RAMP, _xor(RAMP, 0, P, 0x5A)) is None
    assert enc(RAMP, _xor(RAMP, 0, 4093, 0x5A)) is None


@BOTH
def test_qemu_unit_tests(enc):
    # encode_decode_zero / unchanged
    buf = _with(ZEROS, {1000: 1, 2000: 7})
    assert enc(buf, buf) == b""
    # encode_decode_1_byte
    new = _with(ZEROS, {P - 1: 1})
    e = enc(ZEROS, new)
    assert len(e) == len(xb.uleb_encode(P - 1)) + 2
    assert xb.decode_page(e, ZEROS) == new
    # encode_decode_overflow: 1 in every even byte of the first 4094 bytes
    over = _with(ZEROS, {i: 1 for i in range(0, 4094, 2)})
    assert enc(ZEROS, over) is None


def test_qemu_random_encode_decode():
    rng = np.random.default_rng(1)
    for diff_len in rng.integers(0, 3090, size=40):
        old, new = bytearray(P), bytearray(P)
        for i in range(1, diff_len + 1):
            old[1000 + i] = i % 256
            new[1000 + i] = (i + 4) % 256
        old[1000 + diff_len + 3], new[1000 + diff_len + 3] = 103, 107
        old[1000 + diff_len + 5], new[1000 + diff_len + 5] = 105, 109
        e = xb.encode(bytes(old), bytes(new))
        assert e == xb.encode_ref(bytes(old), bytes(new))
        dst = bytearray(old)
        assert 0 < xb.decode(e, dst) < P
        assert bytes(dst) == bytes(new)


def test_prefix_write_size_matches_codec():
    base = bytes((i * 7 + 1) % 256 or 1 for i in range(P))
    for b in (1, 8, 127, 128, 129, 1000, 4090, 4091, 4092, 4093, 4096):
        new = bytes((x + 1) % 256 for x in base[:b]) + base[b:]
        enc = xb.encode_ref(base, new)
        expect = -1 if enc is None else len(enc)
        assert int(xb.prefix_write_size(b)) == expect, b


def test_encode_many_matches_single_pages():
    rng = np.random.default_rng(7)
    old = rng.integers(0, 256, size=(6, P), dtype=np.uint8)
    new = old.copy()
    new[1, 5:9] ^= 1
    new[2, ::3] ^= 0xFF  # overflow
    new[3, -1] ^= 2  # ends at the page end
    new[4, 100:2000] ^= 9
    new[5, :] ^= 1  # every byte
    lengths, encs = xb.encode_many(old, new)
    for i in range(6):
        ref = xb.encode_ref(old[i].tobytes(), new[i].tobytes())
        assert encs[i] == ref
        assert lengths[i] == (-1 if ref is None else len(ref))
    assert list(xb.encoded_sizes(old, new)) == list(lengths)


_pages = st.binary(min_size=64, max_size=64)


@settings(max_examples=300, deadline=None)
@given(
    old=_pages,
    edits=st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=40),
    dlen=st.integers(2, 80),
)
def test_round_trip_and_encoders_agree(old, edits, dlen):
    new = bytearray(old)
    for i, v in edits:
        new[i] = v
    new = bytes(new)
    ref = xb.encode_ref(old, new, dlen)
    assert xb.encode(old, new, dlen) == ref
    if ref:
        dst = bytearray(old)
        assert xb.decode(ref, dst) >= 0
        assert bytes(dst) == new
    elif ref == b"":
        assert old == new


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, P - 1), st.integers(1, 300)), max_size=30))
def test_full_page_round_trip(runs):
    old = RAMP
    new = bytearray(old)
    for start, length in runs:
        for i in range(start, min(P, start + length)):
            new[i] ^= 0x33
    ref = xb.encode_ref(old, bytes(new))
    assert xb.encode(old, bytes(new)) == ref
    if ref:
        assert xb.decode_page(ref, old) == bytes(new)
