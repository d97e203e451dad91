//! Every section and key config.ini knows, with its default.
//!
//! The first block is the 2016 tool's (`config.def`), in its order; files
//! it wrote load unchanged. The keys after it are ours; each has a default
//! that keeps old files meaning what they meant.

/// One known key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub section: &'static str,
    pub key: &'static str,
    pub default: &'static str,
    /// Part of the 2016 tool's format (otherwise added by us).
    pub original: bool,
    /// One line for `info` and the README.
    pub help: &'static str,
}

pub const MACHINE: &str = "machine";
pub const BOOT: &str = "boot";
pub const ACPI: &str = "acpi";
pub const PROCESSOR: &str = "processor";
pub const MEMORY: &str = "memory";
pub const BRIDGE: &str = "bridge";
pub const LPC: &str = "lpc";
pub const LPC_DEV: &str = "lpc_dev";
pub const INTERNAL_STORAGE: &str = "internal_storage";
pub const EXTERNAL_STORAGE: &str = "external_storage";
pub const NETWORKING: &str = "networking";
pub const RNG: &str = "rng";

/// `[boot] kernel` value that boots the kernel installed on the internal disk.
pub const DISK_AUTO: &str = "disk:auto";
/// The 2016 tool's BSD loader; we boot FreeBSD through PVH instead.
pub const USERBOOT: &str = "userboot.so";
/// The 2016 tool's `config.def` placeholder for an unset UUID.
pub const UUID_PLACEHOLDER: &str = "UUID-STRING-HERE";

const fn original(
    section: &'static str,
    key: &'static str,
    default: &'static str,
    help: &'static str,
) -> KeySpec {
    KeySpec {
        section,
        key,
        default,
        original: true,
        help,
    }
}

const fn added(
    section: &'static str,
    key: &'static str,
    default: &'static str,
    help: &'static str,
) -> KeySpec {
    KeySpec {
        section,
        key,
        default,
        original: false,
        help,
    }
}

pub const KEYS: &[KeySpec] = &[
    original(
        MACHINE,
        "name",
        "default",
        "display name (the folder name is the VM's name)",
    ),
    original(
        MACHINE,
        "type",
        "linux",
        "linux | bsd (bsd boots a FreeBSD >= 14 kernel via PVH)",
    ),
    original(MACHINE, "uuid", "", "the VM's UUID (empty: none)"),
    original(
        BOOT,
        "kernel",
        "vmlinuz",
        "kernel image, or disk:auto for the one installed on the disk",
    ),
    original(BOOT, "initrd", "initrd.gz", "initial ramdisk (empty: none)"),
    original(
        BOOT,
        "options",
        "earlyprintk=serial console=ttyS0 acpi=off",
        "kernel command line",
    ),
    added(BOOT, "protocol", "auto", "auto | linux64 | linux32 | pvh"),
    original(
        ACPI,
        "enabled",
        "false",
        "accepted and ignored: the VM always has ACPI",
    ),
    original(PROCESSOR, "cpus", "1", "number of vCPUs, 1..=255"),
    original(
        MEMORY,
        "size",
        "1G",
        "RAM: 512M, 2G, or a bare number of MiB",
    ),
    original(BRIDGE, "slot", "0:0", "PCI slot N or N:F"),
    original(BRIDGE, "driver", "hostbridge", "hostbridge"),
    original(BRIDGE, "configinfo", "", "unused"),
    original(LPC, "slot", "31", "PCI slot N or N:F"),
    original(LPC, "driver", "lpc", "lpc"),
    original(
        LPC_DEV,
        "config",
        "com1,stdio",
        "serial port: com1 or com2, then stdio or autopty",
    ),
    original(INTERNAL_STORAGE, "slot", "4", "PCI slot N or N:F"),
    original(
        INTERNAL_STORAGE,
        "driver",
        "virtio-blk",
        "virtio-blk | ahci-hd (attached as virtio-blk)",
    ),
    original(
        INTERNAL_STORAGE,
        "configinfo",
        "",
        "disk image path (empty: no disk); ',ro' = read-only",
    ),
    added(
        INTERNAL_STORAGE,
        "readonly",
        "false",
        "attach the disk read-only",
    ),
    original(EXTERNAL_STORAGE, "slot", "3", "PCI slot N or N:F"),
    original(
        EXTERNAL_STORAGE,
        "driver",
        "ahci-cd",
        "ahci-cd | virtio-blk (attached as virtio-blk)",
    ),
    original(
        EXTERNAL_STORAGE,
        "configinfo",
        "",
        "ISO or image path (empty: none)",
    ),
    added(
        EXTERNAL_STORAGE,
        "readonly",
        "true",
        "attach read-only (always for ahci-cd)",
    ),
    original(NETWORKING, "slot", "2:0", "PCI slot N or N:F"),
    original(NETWORKING, "driver", "virtio-net", "virtio-net"),
    original(
        NETWORKING,
        "configinfo",
        "",
        "bhyve-style TAP[,mac=MAC] (optional)",
    ),
    added(
        NETWORKING,
        "tap",
        "",
        "host TAP interface (empty: no network card)",
    ),
    added(
        NETWORKING,
        "mac",
        "",
        "MAC address (empty: derived from the UUID)",
    ),
    added(
        RNG,
        "enabled",
        "false",
        "attach a virtio-rng entropy device",
    ),
];

/// The spec of `section`/`key`, if known.
pub fn spec(section: &str, key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.section == section && k.key == key)
}

/// The sections in the order config.ini lists them.
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for key in KEYS {
        if !out.contains(&key.section) {
            out.push(key.section);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's config.ini reference lists every key with its default.
    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../../../README.md");
        for spec in KEYS {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `[{}]` | `{}`", spec.section, spec.key)))
                .unwrap_or_else(|| panic!("README lacks [{}] {}", spec.section, spec.key));
            let default = if spec.default.is_empty() {
                "*(empty)*".to_string()
            } else {
                format!("`{}`", spec.default)
            };
            assert!(row.contains(&default), "README default of {spec:?}: {row}");
            assert_eq!(row.contains("*(new)*"), !spec.original, "{row}");
        }
    }
}
