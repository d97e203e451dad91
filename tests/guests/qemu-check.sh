#!/usr/bin/env bash
# Development check of the test guests under QEMU (not part of the test
# suite; QEMU is deliberately not in scripts/apt-packages.txt):
#   apt-get install -y qemu-system-x86 && tests/guests/qemu-check.sh
# Builds the guests into $OUT (default /tmp/xhyve-guests), runs each under
# QEMU with KVM and checks the lines the integration tests rely on.
# QEMU's isa-debug-exit turns the guest's code v into exit status 2v+1:
# EXIT_OK 0x10 -> 33.
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-/tmp/xhyve-guests}
make -s OUT="$OUT" || exit 1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
QEMU=(timeout 120 qemu-system-x86_64 -accel kvm -cpu host,-arch-capabilities -m 128
      -display none -serial stdio -monitor none -no-reboot
      -device isa-debug-exit,iobase=0xf4)
failed=0

# check NAME WANT_STATUS PATTERN... -- QEMU ARGS...
check() {
    local name=$1 want=$2; shift 2
    local patterns=()
    while [ "$1" != "--" ]; do patterns+=("$1"); shift; done
    shift
    local log="$WORK/$name.log"
    "${QEMU[@]}" "$@" >"$log" 2>&1
    local status=$?
    local ok=1
    [ "$status" = "$want" ] || ok=0
    for p in "${patterns[@]}"; do grep -qE -- "$p" "$log" || { ok=0; echo "  missing: $p"; }; done
    if [ $ok = 1 ]; then
        echo "ok    $name"
    else
        echo "FAIL  $name (status $status, wanted $want)"; sed 's/^/  | /' "$log" | tail -30
        failed=1
    fi
}

head -c 10000 /dev/urandom >"$WORK/initrd"
head -c 1048576 /dev/urandom >"$WORK/disk"
CMD="console=ttyS0 hello=world"

check pvh-microvm 33 '^ENTRY=pvh' '^PVH_MAGIC=0x336ec578' "^CMDLINE=$CMD\$" '^INITRD=0x[0-9a-f]+,0x2710,' '^BOOT_DONE' \
    -- -M microvm -kernel "$OUT/pvh" -initrd "$WORK/initrd" -append "$CMD"
check pvh-q35 33 '^ENTRY=pvh' '^E820_RAM_TOTAL=' "^CMDLINE=$CMD\$" '^INITRD=' '^BOOT_DONE' \
    -- -M q35 -kernel "$OUT/pvh" -initrd "$WORK/initrd" -append "$CMD"
# QEMU runs the real-mode setup, which enters the 32-bit entry.
for bz in bzimage64 bzimage32; do
    check "$bz" 33 '^ENTRY=32' '^BOOT_PROTOCOL=0x20f' '^E820=0x100000,' "^CMDLINE=$CMD\$" '^INITRD=0x[0-9a-f]+,0x2710,' '^BOOT_DONE' \
        -- -M pc -kernel "$OUT/$bz" -initrd "$WORK/initrd" -append "$CMD"
done
check acpi 33 '^ACPI_CPUS=2$' '^IOAPIC=0xfec00000$' '^ACPI_CHECKSUMS=ok$' '^S5_SLP_TYP=' \
    -- -M q35 -smp 2 -kernel "$OUT/acpi"
check smp 33 '^AP 1 up$' '^AP 2 up$' '^AP 3 up$' '^CPUS_UP=4$' -- -M q35 -smp 4 -kernel "$OUT/smp"
check poweroff 0 '^POWEROFF$' -- -M q35 -kernel "$OUT/poweroff"
check reset 0 '^RESET$' -- -M q35 -kernel "$OUT/reset"
check triplefault 0 '^TRIPLEFAULT$' -- -M q35 -kernel "$OUT/triplefault"
check virtio 33 '^BLK_CAPACITY=2048$' '^BLK_SECTOR=0,' '^BLK_SECTOR=2047,' '^BLK_READBACK=ok$' '^BLK_FLUSH=ok$' \
    '^RNG_BYTES=64$' '^RNG_NONZERO=1$' '^VIRTIO_DONE$' \
    -- -M q35 -kernel "$OUT/virtio" -drive "file=$WORK/disk,if=none,id=d0,format=raw" \
       -device virtio-blk-pci,drive=d0,disable-legacy=on -device virtio-rng-pci,disable-legacy=on
check echo 33 '^ECHO=hello$' '^ECHO=exit$' -- -M microvm -kernel "$OUT/echo" < <(sleep 3; printf 'hello\nexit\n')
# These never end by themselves: run them for a while.
QEMU[1]=15
check counter 124 '^count=0$' '^count=20$' -- -M q35 -kernel "$OUT/counter"
check spin 124 '^SPINNING$' -- -M microvm -kernel "$OUT/spin"
# kvm-pvm cannot emulate xgetbv (QEMU reports an emulation failure and hangs
# until the timeout); hardware virtualization runs it and the guest exits OK.
QEMU[1]=30
if [ -e /sys/module/kvm_pvm ]; then
    check emufail 124 '^EMUFAIL_BEFORE$' 'emulation failure' -- -M microvm -kernel "$OUT/emufail"
else
    check emufail 33 '^EMUFAIL_SURVIVED$' -- -M microvm -kernel "$OUT/emufail"
fi
exit $failed
