"""synth.sta: endpoint slacks from an SDF as nextpnr writes it (a real build's is checked against
nextpnr's own Fmax in tests/test_synth.py)."""

import pytest

from gateskip.synth.sta import endpoint_slacks, failing_paths, read_sdf, rtl_name, worst_path

# two registers into a LUT into a third (bits 0 and 1 of a bus), a fourth straight from the first
SDF = r"""(DELAYFILE
  (SDFVERSION "3.0")
  (TIMESCALE 1ps)
  (CELL
    (CELLTYPE "top")
    (INSTANCE )
    (DELAY
      (ABSOLUTE
        (INTERCONNECT top.a_TRELLIS_FF_Q/Q top.sum_LUT4_Z/A (1000:1200:1400) (1000:1200:1400))
        (INTERCONNECT top.b\[1\]_TRELLIS_FF_Q/Q top.sum_LUT4_Z/B (3000:3500:4000) (3000:3500:4000))
        (INTERCONNECT top.sum_LUT4_Z/F top.sum_TRELLIS_FF_Q_1/DI (500:600:700) (500:600:700))
        (INTERCONNECT top.a_TRELLIS_FF_Q/Q top.copy_TRELLIS_FF_Q/M (200:250:300) (200:250:300))
      )
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE top.a_TRELLIS_FF_Q)
    (DELAY
      (ABSOLUTE
        (IOPATH CLK Q (400:450:500) (400:450:500))
      )
    )
    (TIMINGCHECK
      (SETUPHOLD (posedge DI) (posedge CLK) (50:50:50) (0:0:0))
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE top.b\[1\]_TRELLIS_FF_Q)
    (DELAY
      (ABSOLUTE
        (IOPATH CLK Q (400:450:500) (400:450:500))
      )
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_COMB")
    (INSTANCE top.sum_LUT4_Z)
    (DELAY
      (ABSOLUTE
        (IOPATH A F (200:220:240) (200:220:240))
        (IOPATH B F (200:230:260) (200:230:260))
      )
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE top.sum_TRELLIS_FF_Q_1)
    (DELAY
      (ABSOLUTE
        (IOPATH CLK Q (400:450:500) (400:450:500))
      )
    )
    (TIMINGCHECK
      (SETUPHOLD (posedge DI) (posedge CLK) (100:100:100) (0:0:0))
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE top.copy_TRELLIS_FF_Q)
    (TIMINGCHECK
      (SETUPHOLD (posedge M) (posedge CLK) (0:0:0) (0:0:0))
    )
  )
)
"""


@pytest.fixture
def sdf(tmp_path):
    path = tmp_path / "top.sdf"
    path.write_text(SDF)
    return path


def test_slacks_are_the_longest_paths_max_delays(sdf):
    """Arrival at ``sum``'s input: b's clock-to-output 0.5 + 4.0 + the LUT's 0.26 + 0.7 = 5.46
    ns (a's is shorter), its setup 0.1: slack 4.44 at 10 ns; ``copy``: 0.5 + 0.3, no setup."""
    ((s1, p1), (s2, p2)), worst_from = endpoint_slacks(read_sdf(sdf), 10.0)
    assert (round(s1, 3), p1) == (4.44, ("top.sum_TRELLIS_FF_Q_1", "DI"))
    assert worst_path(worst_from, p1) == [
        ("top.b[1]_TRELLIS_FF_Q", "Q"), ("top.sum_LUT4_Z", "B"), ("top.sum_LUT4_Z", "F"),
        ("top.sum_TRELLIS_FF_Q_1", "DI")]
    assert (round(s2, 3), p2) == (9.2, ("top.copy_TRELLIS_FF_Q", "M"))


def test_failing_paths_group_by_start_and_end(sdf):
    """At 5 ns only ``sum`` fails, by 0.56 ns, through one LUT, 4.7 ns of it routing."""
    f = failing_paths(sdf, 5.0)
    assert (f["endpoints"], f["failing"], f["worst_ns"]) == (2, 1, -0.56)
    assert f["groups"] == [{"from": "b", "to": "sum.DI", "worst_ns": -0.56, "endpoints": 1,
                            "cells": 1, "routing_ns": 4.7}]
    assert failing_paths(sdf, 10.0)["failing"] == 0


def test_rtl_names():
    assert rtl_name("top.backward.ew.sq_f_TRELLIS_FF_Q_1") == "backward.ew.sq_f"
    assert rtl_name("top.backward.bank$681.mem_dho.0.0") == "backward.bank.mem_dho.0.0"
