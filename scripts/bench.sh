#!/usr/bin/env bash
# Boot-time benchmark: xhyve-manager's in-process VMM beside QEMU on the same
# Debian cloud kernel (PVH vmlinux), same memory, vCPUs and command line.
# Prints numbers only; nothing here is a test.
#
#   scripts/bench.sh [RUNS]
#
# The marker both are timed to is the busybox initramfs's userspace line on a
# host with hardware virtualization, and `smpboot: Allowing` on kvm-pvm (an
# instruction emulator where a stock kernel never reaches userspace; its
# times say little about real hardware). Override with BENCH_MARKER.
# QEMU (Debian's qemu-system-x86) is installed for this script only.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
scripts/install-deps.sh
bash scripts/fixtures/debian-kernel.sh
command -v qemu-system-x86_64 >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
}
cargo build --release
. scripts/lib/debian-guest.sh
fixtures="$DEBIAN_FIXTURES"
cmdline="$DEBIAN_CMDLINE"
bin="$PWD/target/release/xhyve-manager"

if [ "$(kvm_kind)" = hw ]; then
    host="hardware virtualization"; marker="${BENCH_MARKER:-XHYVE-USERSPACE-OK}"; timeout=60
else
    host="kvm-pvm (instruction emulation)"; marker="${BENCH_MARKER:-smpboot: Allowing}"; timeout=400
fi
echo "bench: host: $host; $runs run(s) each, timed to '$marker'"

home="$(mktemp -d -t xhyve-bench.XXXXXX)"
trap 'rm -rf "$home"' EXIT
"$bin" --home "$home" create bench --no-copy --cpus 2 --memory 512M --protocol pvh \
    --kernel "$fixtures/vmlinux" --initrd "$fixtures/initramfs.cpio" --cmdline "$cmdline" >/dev/null
echo
echo "== xhyve-manager (in-process KVM VMM)"
"$bin" --home "$home" bench bench --runs "$runs" --until "$marker" --timeout "$timeout"

echo
echo "== QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') (-M microvm, PVH)"
python3 - "$runs" "$marker" "$timeout" "$fixtures" "$cmdline" <<'PY'
import os, subprocess, sys, time, statistics
runs, marker, timeout, fx, cmdline = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3]), sys.argv[4], sys.argv[5]
cmd = ["qemu-system-x86_64", "-M", "microvm,accel=kvm", "-cpu", "host,-arch-capabilities",
       "-m", "512", "-smp", "2", "-kernel", f"{fx}/vmlinux", "-initrd", f"{fx}/initramfs.cpio",
       "-append", cmdline, "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"]
print(f"{'run':>4} {'1st output ms':>14} {'marker ms':>10}")
firsts, marks = [], []
for i in range(1, runs + 1):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.set_blocking(p.stdout.fileno(), False)
    buf, first, mark = b"", None, None
    while time.monotonic() - t0 < timeout and p.poll() is None:
        chunk = p.stdout.read(65536)
        if chunk:
            first = first or time.monotonic() - t0
            buf = (buf + chunk)[-4096:]
            if marker in buf:
                mark = time.monotonic() - t0
                break
        else:
            time.sleep(0.005)
    p.kill(); p.wait()
    fmt = lambda v: f"{v*1000:.1f}" if v is not None else "-"
    print(f"{i:>4} {fmt(first):>14} {fmt(mark):>10}")
    if first is not None: firsts.append(first)
    if mark is not None: marks.append(mark)
for name, vals in (("first output", firsts), ("marker", marks)):
    if vals:
        print(f"{name:>12}: min {min(vals)*1000:.1f} ms, median {statistics.median(vals)*1000:.1f} ms, max {max(vals)*1000:.1f} ms")
PY
