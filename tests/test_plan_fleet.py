"""Fleet files: CSV and TOML rows, and one-line errors naming the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from migtune.errors import InputError
from migtune.plan.fleet import load_fleet

ROOT = Path(__file__).resolve().parents[1]
GiB = 1024**3


def test_the_examples_read_the_same_as_csv_and_as_toml():
    csv = load_fleet(ROOT / "examples" / "fleets" / "mixed.csv")
    toml = load_fleet(ROOT / "examples" / "fleets" / "mixed.toml")
    strip = [(v.name, v.ram_bytes, v.workload, v.max_downtime, v.index) for v in csv]
    assert strip == [(v.name, v.ram_bytes, v.workload, v.max_downtime, v.index) for v in toml]
    assert csv[0].name == "db-1" and csv[0].ram_bytes == 64 * GiB and csv[0].max_downtime == 1.0
    assert csv[1].max_downtime is None  # an empty cell is "not given"
    assert csv[0].line == 4  # comment lines count: the line number is the file's


def _write(tmp_path, text: str, name: str = "vms.csv") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("name,ram,workload\na,4GiB,idle\nb,lots,idle\n", ":3: ram: cannot read size 'lots'"),
        (
            "name,ram,workload\na,4GiB,ws=1GiB\nb,4GiB,pattern=zigzag\n",
            ":3: workload: workload: pattern",
        ),
        ("name,ram,workload\na,4GiB,idle,1s\n", ":2: 4 fields, the header has 3"),
        ("name,ram,workload,colour\na,4GiB,idle,red\n", ":1: 'colour': unknown column"),
        ("name,ram\na,4GiB\n", ":1: workload: missing from the header"),
        ("name,ram,workload\na,,idle\n", ":2: ram: missing"),
        ("name,ram,workload\na,4GiB,idle\na,8GiB,idle\n", ":3: name: 'a' again (first on line 2)"),
        (
            "name,ram,workload,max-downtime\na,4GiB,idle,soon\n",
            ":2: max-downtime: cannot read duration",
        ),
        (
            "name,ram,workload,platform\na,4GiB,idle,vmware\n",
            ":2: platform: 'vmware' is not one of",
        ),
        ('name,ram,workload\na,1GiB,"ws=2GiB,rate=1MiB/s"\n', ":2: workload: the working set"),
        ("name,ram,workload\na,4GiB,history:\n", ":2: workload: history: needs a VM name"),
        ("# nothing but a comment\n", ": no header line"),
        ("name,ram,workload\n", ": no VM in it"),
    ],
)
def test_a_bad_row_names_the_file_line_and_field(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_fleet(path)
    assert str(exc.value).startswith(path)
    assert expected in str(exc.value)
    assert "\n" not in str(exc.value)


def test_toml_errors_name_the_vm_table_line(tmp_path):
    text = '[[vm]]\nname = "a"\nram = "4GiB"\nworkload = "idle"\n\n[[vm]]\nname = "b"\nram = "x"\nworkload = "idle"\n'
    path = _write(tmp_path, text, "vms.toml")
    with pytest.raises(InputError, match=r"vms.toml:6: ram: cannot read size 'x'"):
        load_fleet(path)
    with pytest.raises(InputError, match="not valid TOML"):
        load_fleet(_write(tmp_path, "[[vm]\n", "bad.toml"))
    with pytest.raises(InputError, match="hosts: unknown table"):
        load_fleet(_write(tmp_path, "[hosts]\na = 1\n", "other.toml"))


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_fleet(tmp_path / "nope.csv")
    b = tmp_path / "b.csv"
    b.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(InputError, match="not a text file"):
        load_fleet(b)


def test_optional_columns_in_base_units(tmp_path):
    path = _write(
        tmp_path,
        "name,ram,workload,max-downtime,max-time,max-bandwidth,platform\n"
        "a,2GiB,idle,500ms,30min,1Gbit/s,proxmox\n",
    )
    (vm,) = load_fleet(path)
    assert (vm.max_downtime, vm.max_time, vm.max_bandwidth, vm.platform) == (
        0.5, 1800.0, 125e6, "proxmox")  # fmt: skip
