"""The project's own set-up scripts (ops/): what they generate must be accepted by the tools they feed."""
from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _cluster_id_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cluster_id", ROOT / "ops" / "cluster_id.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    """kafka-storage's parser read an id starting with "-" as an option and the broker's first start failed
    (seen on a fresh checkout: "argument --cluster-id/-t: expected one argument"); such a draw is drawn again."""
    mod = _cluster_id_module()
    dash, fine = b"\xf8" + bytes(15), b"\x01" * 16
    assert base64.urlsafe_b64encode(dash).decode().startswith("-")  # the draw that broke the start
    draws = iter([dash, dash, fine])
    got = mod.cluster_id(lambda n: next(draws))
    assert got == base64.urlsafe_b64encode(fine).decode().rstrip("=")
    assert len(got) == 22


def test_the_kafka_script_formats_with_the_generator() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "ops" / "cluster_id.py")], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert len(out) == 22 and not out.startswith("-")
    assert '"$here/cluster_id.py"' in (ROOT / "ops" / "kafka.sh").read_text()
