# Sourced by scripts/demo.sh and scripts/bench.sh: where the Debian kernel
# fixture lives, the command line both boot it with, and what kind of KVM
# this host has. (tests/real_kernel.rs keeps its own copy of the command
# line: it is Rust, and asserts on it.)

# Fixture folder written by scripts/fixtures/debian-kernel.sh.
DEBIAN_FIXTURES="${XHYVE_FIXTURE_DIR:-$PWD/target/fixtures}/debian"

# Serial console, then the parameters that postpone kvm-pvm's emulation
# failures (see ../shared/README.md), then: a panic ends the VM at once.
DEBIAN_CMDLINE="console=ttyS0 earlyprintk=serial noxsave clearcpuid=cx16,popcnt,rdtscp,rdpid,smap,pcid,invpcid nofsgsbase mitigations=off panic=-1"

# Prints "hw" (VT-x / AMD-V), "pvm" (kvm-pvm, an instruction emulator) or
# "unknown".
kvm_kind() {
    if [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then
        echo hw
    elif [ -d /sys/module/kvm_pvm ] || grep -qs kvm_pvm /proc/modules; then
        echo pvm
    else
        echo unknown
    fi
}
