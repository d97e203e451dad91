#!/usr/bin/env bash
# The main job, from a fresh clone: build xhyve-manager, fetch Debian's cloud
# kernel (cached under target/fixtures), create a demo VM in a throw-away
# library and start it in the foreground with its console on this terminal.
#
# On a host with hardware virtualization the kernel boots to a busybox shell
# that prints a marker and powers off. On kvm-pvm (an instruction emulator)
# it gets through its early boot log and then stops on an emulation failure,
# which xhyve-manager reports with the vCPU, RIP and instruction bytes.
# Quit early with Ctrl-] q. DEMO_TIMEOUT (seconds, default 240) bounds the run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
bash scripts/fixtures/debian-kernel.sh
cargo build --release
. scripts/lib/debian-guest.sh
home="$(mktemp -d -t xhyve-demo.XXXXXX)"
trap 'rm -rf "$home"' EXIT
bin=target/release/xhyve-manager

case "$(kvm_kind)" in
    hw) echo "demo: hardware virtualization found: the guest should reach userspace." ;;
    pvm) echo "demo: /dev/kvm is kvm-pvm (instruction emulator): the kernel gets as far as its early log." ;;
esac

"$bin" --home "$home" create demo --type linux --cpus 2 --memory 512M \
    --kernel "$DEBIAN_FIXTURES/vmlinuz" --initrd "$DEBIAN_FIXTURES/initramfs.cpio" \
    --cmdline "$DEBIAN_CMDLINE"
"$bin" --home "$home" info demo
echo "demo: starting (Ctrl-] q quits)"
set +e
timeout --foreground -s TERM "${DEMO_TIMEOUT:-240}" "$bin" --home "$home" start demo
status=$?
set -e
echo "demo: xhyve-manager start exited with status $status"
