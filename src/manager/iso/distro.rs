//! Which distribution an installer ISO is, from its files and volume label.
//!
//! The table is data: to support a new layout, add a `Layout` line. Entries
//! are tried in order; the first whose kernel and initrd both exist (and
//! whose label test, if any, passes) wins. A `*` in the last path component
//! matches any text; the text the kernel's `*` matched is substituted into
//! the initrd's `*` (`vmlinuz-6.1.0-18-amd64` pairs with
//! `initrd.img-6.1.0-18-amd64`), and among several kernels the newest by
//! version ordering wins.
//!
//! In `cmdline`, `{label}` becomes the ISO's volume label, with spaces
//! written `\x20` as udev's /dev/disk/by-label names (which archiso and
//! dracut look the label up in) spell them.

use crate::manager::disk::version::compare_versions;

/// One known installer layout.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub distro: &'static str,
    /// Required substring of the volume label (ASCII case-insensitive).
    pub label_contains: Option<&'static str>,
    pub kernel: &'static str,
    pub initrd: &'static str,
    pub cmdline: &'static str,
}

const fn layout(
    distro: &'static str,
    label_contains: Option<&'static str>,
    kernel: &'static str,
    initrd: &'static str,
    cmdline: &'static str,
) -> Layout {
    Layout {
        distro,
        label_contains,
        kernel,
        initrd,
        cmdline,
    }
}

/// Red Hat family installers (anaconda) find their stage 2 by volume label.
const ANACONDA: &str = "inst.stage2=hd:LABEL={label} console=ttyS0";
/// Debian-installer based media scan the CD drives themselves.
const DEBIAN_INSTALLER: &str = "console=ttyS0";
/// Alpine's init loads these modules to find and mount its media.
const ALPINE: &str = "modules=loop,squashfs,sd-mod,usb-storage console=ttyS0";

/// archiso finds its media by label.
const ARCH: &str = "archisobasedir=arch archisolabel={label} console=ttyS0";
/// Ubuntu's live system (casper) scans for its media itself.
const CASPER: &str = "boot=casper console=ttyS0";
const DEBIAN_LIVE: &str = "boot=live components console=ttyS0";
const OPENSUSE: &str = "console=ttyS0";

/// Tried in order: specific layouts before generic ones.
#[rustfmt::skip]
pub const LAYOUTS: &[Layout] = &[
    // Arch: current layout, then the pre-2020 one.
    layout("arch",        None,           "/arch/boot/x86_64/vmlinuz-linux", "/arch/boot/x86_64/initramfs-linux.img", ARCH),
    layout("arch",        None,           "/arch/boot/x86_64/vmlinuz",       "/arch/boot/x86_64/archiso.img",         ARCH),
    // Ubuntu live (casper), current and older names.
    layout("ubuntu",      None,           "/casper/vmlinuz",     "/casper/initrd",    CASPER),
    layout("ubuntu",      None,           "/casper/vmlinuz",     "/casper/initrd.gz", CASPER),
    layout("ubuntu",      None,           "/casper/vmlinuz",     "/casper/initrd.lz", CASPER),
    layout("ubuntu",      None,           "/casper/vmlinuz.efi", "/casper/initrd.lz", CASPER),
    // Ubuntu alternate and netboot (debian-installer).
    layout("ubuntu",      None,           "/install/vmlinuz", "/install/initrd.gz", DEBIAN_INSTALLER),
    layout("ubuntu",      None,           "/install/netboot/ubuntu-installer/amd64/linux",
                                          "/install/netboot/ubuntu-installer/amd64/initrd.gz", DEBIAN_INSTALLER),
    // Debian installer, then Debian live (versioned names).
    layout("debian",      None,           "/install.amd/vmlinuz", "/install.amd/initrd.gz", DEBIAN_INSTALLER),
    layout("debian-live", None,           "/live/vmlinuz*",       "/live/initrd.img*",      DEBIAN_LIVE),
    // Red Hat family: the volume label names the distribution.
    layout("fedora",      Some("fedora"), "/isolinux/vmlinuz",       "/isolinux/initrd.img",       ANACONDA),
    layout("fedora",      Some("fedora"), "/images/pxeboot/vmlinuz", "/images/pxeboot/initrd.img", ANACONDA),
    layout("rocky",       Some("rocky"),  "/isolinux/vmlinuz",       "/isolinux/initrd.img",       ANACONDA),
    layout("rocky",       Some("rocky"),  "/images/pxeboot/vmlinuz", "/images/pxeboot/initrd.img", ANACONDA),
    layout("alma",        Some("alma"),   "/isolinux/vmlinuz",       "/isolinux/initrd.img",       ANACONDA),
    layout("alma",        Some("alma"),   "/images/pxeboot/vmlinuz", "/images/pxeboot/initrd.img", ANACONDA),
    layout("centos",      Some("centos"), "/isolinux/vmlinuz",       "/isolinux/initrd.img",       ANACONDA),
    layout("centos",      Some("centos"), "/images/pxeboot/vmlinuz", "/images/pxeboot/initrd.img", ANACONDA),
    layout("rhel",        Some("rhel"),   "/isolinux/vmlinuz",       "/isolinux/initrd.img",       ANACONDA),
    layout("rhel",        Some("rhel"),   "/images/pxeboot/vmlinuz", "/images/pxeboot/initrd.img", ANACONDA),
    layout("redhat",      None,           "/isolinux/vmlinuz",       "/isolinux/initrd.img",       ANACONDA),
    layout("redhat",      None,           "/images/pxeboot/vmlinuz", "/images/pxeboot/initrd.img", ANACONDA),
    // Alpine: standard/extended flavours, then virt.
    layout("alpine",      None,           "/boot/vmlinuz-lts",  "/boot/initramfs-lts",  ALPINE),
    layout("alpine",      None,           "/boot/vmlinuz-virt", "/boot/initramfs-virt", ALPINE),
    // openSUSE installer.
    layout("opensuse",    None,           "/boot/x86_64/loader/linux", "/boot/x86_64/loader/initrd", OPENSUSE),
];

/// The kernel command line of `layout` for an ISO labelled `label`.
pub fn cmdline(layout: &Layout, label: &str) -> String {
    layout
        .cmdline
        .replace("{label}", &label.replace(' ', "\\x20"))
}

/// Whether `layout`'s label test passes for `label`.
pub fn label_matches(layout: &Layout, label: &str) -> bool {
    layout.label_contains.is_none_or(|want| {
        label
            .to_ascii_lowercase()
            .contains(&want.to_ascii_lowercase())
    })
}

/// Split a pattern path into directory and last-component pattern.
pub fn split(pattern: &str) -> (&str, &str) {
    match pattern.rfind('/') {
        Some(i) => (&pattern[..i.max(1)], &pattern[i + 1..]),
        None => ("/", pattern),
    }
}

/// Match `name` against a one-`*` pattern; returns what `*` matched.
pub fn glob_match<'a>(pattern: &str, name: &'a str) -> Option<&'a str> {
    match pattern.split_once('*') {
        None => (pattern.eq_ignore_ascii_case(name)).then_some(""),
        Some((prefix, suffix)) => {
            let rest = strip_prefix_ci(name, prefix)?;
            let cut = rest.len().checked_sub(suffix.len())?;
            if !rest.is_char_boundary(cut) {
                return None;
            }
            let (star, tail) = rest.split_at(cut);
            tail.eq_ignore_ascii_case(suffix).then_some(star)
        }
    }
}

fn strip_prefix_ci<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// Among `names`, the kernels matching `kernel_pattern` whose initrd
/// (by `initrd_pattern`) is also present; newest version first.
pub fn pair_candidates(
    names: &[String],
    kernel_pattern: &str,
    initrd_pattern: &str,
) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String, String)> = names
        .iter()
        .filter_map(|name| {
            let star = glob_match(kernel_pattern, name)?;
            let wanted = initrd_pattern.replacen('*', star, 1);
            let initrd = names.iter().find(|n| n.eq_ignore_ascii_case(&wanted))?;
            Some((star.to_string(), name.clone(), initrd.clone()))
        })
        .collect();
    pairs.sort_by(|a, b| compare_versions(&b.0, &a.0));
    pairs.into_iter().map(|(_, k, i)| (k, i)).collect()
}

/// Whether a file name looks like a kernel or an initrd (for listing
/// what an unknown ISO holds).
pub fn looks_like_kernel(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("vmlinuz")
        || n.starts_with("vmlinux")
        || n.starts_with("bzimage")
        || n == "linux"
        || n == "linux64"
}

pub fn looks_like_initrd(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("initrd") || n.starts_with("initramfs") || n == "archiso.img"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_pair_kernels_with_initrds_newest_first() {
        let names: Vec<String> = [
            "vmlinuz-6.1.0-9-amd64",
            "initrd.img-6.1.0-9-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "initrd.img-6.1.0-10-amd64",
            "vmlinuz-6.2.0-1-amd64",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pairs = pair_candidates(&names, "vmlinuz*", "initrd.img*");
        assert_eq!(
            pairs,
            vec![
                (
                    "vmlinuz-6.1.0-10-amd64".to_string(),
                    "initrd.img-6.1.0-10-amd64".to_string()
                ),
                (
                    "vmlinuz-6.1.0-9-amd64".to_string(),
                    "initrd.img-6.1.0-9-amd64".to_string()
                ),
            ]
        );
    }

    #[test]
    fn exact_patterns_match_ignoring_case() {
        assert_eq!(glob_match("vmlinuz", "VMLINUZ"), Some(""));
        assert_eq!(glob_match("vmlinuz", "vmlinuz-lts"), None);
        assert_eq!(glob_match("initrd*.img", "initrd-5.img"), Some("-5"));
        assert_eq!(glob_match("ab*ba", "aba"), None);
    }

    #[test]
    fn label_substitution_and_tests() {
        let arch = &LAYOUTS[0];
        assert_eq!(
            cmdline(arch, "ARCH_202401"),
            "archisobasedir=arch archisolabel=ARCH_202401 console=ttyS0"
        );
        assert_eq!(
            cmdline(arch, "ARCH 2024"),
            "archisobasedir=arch archisolabel=ARCH\\x202024 console=ttyS0"
        );
        let fedora = LAYOUTS.iter().find(|l| l.distro == "fedora").unwrap();
        assert!(label_matches(fedora, "Fedora-S-dvd-x86_64-39"));
        assert!(!label_matches(fedora, "Rocky-9-3-x86_64-dvd"));
        assert_eq!(split("/casper/vmlinuz"), ("/casper", "vmlinuz"));
        assert_eq!(split("/vmlinuz"), ("/", "vmlinuz"));
    }

    #[test]
    fn every_layout_has_absolute_paths_and_console() {
        for l in LAYOUTS {
            assert!(
                l.kernel.starts_with('/') && l.initrd.starts_with('/'),
                "{l:?}"
            );
            assert!(l.cmdline.contains("console=ttyS0"), "{l:?}");
            assert_eq!(
                l.kernel.matches('*').count(),
                l.initrd.matches('*').count(),
                "{l:?}"
            );
        }
    }
}
