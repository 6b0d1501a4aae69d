"""Shipped defaults are what profiles/make_defaults.py generates, and say where they come from."""

import json
import subprocess
import sys

from dsbench.readers import read_acceptance, read_profile
from dsbench.shipped import profiles_dir
from tests.conftest import REPO


def test_shipped_defaults_are_not_stale():
    p = subprocess.run(
        [sys.executable, str(REPO / "profiles" / "make_defaults.py"), "--check"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_every_shipped_file_states_its_source():
    for f in profiles_dir().glob("*-qwen3-8b.json"):
        p = read_profile(f)
        assert p.source == "roofline" and "formula" in p.raw["roofline"] and p.raw["provenance"]["tool"] == "dsbench"
        assert set(p.draft) == {"mtp-1", "eagle3", "dflash", "dspark"}
    names = {f.stem.split("-qwen3")[0] for f in profiles_dir().glob("*-qwen3-8b.json")}
    assert {"h100", "h200", "a100"} <= names
    for c in read_acceptance("qwen3-8b"):
        assert c.source == "paper" and c.raw["derivation"] and c.spread["sigma"] > 0
    gpus = json.loads((profiles_dir() / "gpus.json").read_text())
    names = {g["name"] for g in gpus["gpus"]}
    assert {"H100 SXM", "H100 PCIe", "H200", "H800", "H20", "A100", "A100 40GB", "L40S"} <= names
    assert {"B200", "GB200", "B300", "MI300X", "MI325X", "MI355X"} <= names
    for g in gpus["gpus"]:
        assert g["source"] and g["peak_fp8_flops"] >= 0 and g["interconnect_bw_bytes_s"] > 0, g["name"]
