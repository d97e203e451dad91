//! `create NAME`: a new VM folder with a config.ini, optionally a sparse
//! disk, a copied (or referenced) kernel and initrd, or the kernel and
//! initrd of an installer ISO. Everything happens in a staging folder, so a
//! failure leaves nothing behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::{prompt, wizard};
use crate::manager::config::keys::*;
use crate::manager::config::settings::{self, format_mac};
use crate::manager::config::{CONFIG_FILE, template};
use crate::manager::library::{Library, Staging};
use crate::manager::size::{format_size, parse_size};
use crate::manager::{disk, iso};
use crate::vmm::layout::MIB;

/// Name of the disk image `--disk SIZE` creates in the VM folder.
pub const DISK_IMAGE: &str = "disk.img";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TypeArg {
    Linux,
    Bsd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    Auto,
    Linux64,
    Linux32,
    Pvh,
}

#[derive(Debug, Default, clap::Args)]
pub struct CreateArgs {
    /// VM name (letters, digits, '-', '_', '.'); the folder is NAME.xhyvm.
    pub name: String,
    /// Guest OS type [default: linux].
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub os_type: Option<TypeArg>,
    /// Number of vCPUs, 1..=255 [default: 1].
    #[arg(long, value_parser = settings::cpus_from_str)]
    pub cpus: Option<u8>,
    /// RAM, e.g. 512M or 2G; a bare number is MiB [default: 1G].
    #[arg(long, value_name = "SIZE", value_parser = settings::memory_from_str)]
    pub memory: Option<u64>,
    /// Kernel image to copy into the VM folder (see --no-copy), or
    /// `disk:auto` to boot the kernel installed on the disk.
    #[arg(long, value_name = "PATH", conflicts_with = "iso")]
    pub kernel: Option<String>,
    /// Initial ramdisk to copy into the VM folder (see --no-copy).
    #[arg(long, value_name = "PATH", conflicts_with = "iso", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line [default: earlyprintk=serial console=ttyS0 acpi=off,
    /// or what the ISO needs].
    #[arg(long, value_name = "ARGS")]
    pub cmdline: Option<String>,
    /// Create a sparse disk image of SIZE (e.g. 20G; a bare number is MiB),
    /// as disk.img in the VM folder or at --disk-path.
    #[arg(long, value_name = "SIZE", value_parser = disk_size)]
    pub disk: Option<u64>,
    /// Use this disk image: an existing one (referenced, not copied), or
    /// where --disk creates the new one.
    #[arg(long, value_name = "PATH")]
    pub disk_path: Option<PathBuf>,
    /// Installer ISO: its kernel and initrd are extracted into the VM folder
    /// and the ISO is attached as a read-only disk (referenced, not copied).
    #[arg(long, value_name = "PATH")]
    pub iso: Option<PathBuf>,
    /// UUID [default: a new random one].
    #[arg(long)]
    pub uuid: Option<uuid::Uuid>,
    /// Write [acpi] enabled = true (kept for xhyve; the VM always has ACPI).
    #[arg(long)]
    pub acpi: bool,
    /// Kernel entry protocol [default: auto].
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    /// Host TAP interface for a virtio-net card [default: no network card].
    #[arg(long, value_name = "IFNAME", value_parser = tap_name)]
    pub tap: Option<String>,
    /// MAC address of the network card [default: derived from the UUID].
    #[arg(long, value_parser = settings::mac_from_str)]
    pub mac: Option<[u8; 6]>,
    /// Attach a virtio-rng entropy device.
    #[arg(long)]
    pub rng: bool,
    /// Reference --kernel/--initrd where they are instead of copying them.
    #[arg(long)]
    pub no_copy: bool,
}

impl CreateArgs {
    /// True when only the name was given (the wizard may ask the rest).
    /// Destructured so that a new flag cannot be forgotten here.
    fn has_no_options(&self) -> bool {
        let CreateArgs {
            name: _,
            os_type,
            cpus,
            memory,
            kernel,
            initrd,
            cmdline,
            disk,
            disk_path,
            iso,
            uuid,
            acpi,
            protocol,
            tap,
            mac,
            rng,
            no_copy,
        } = self;
        os_type.is_none()
            && cpus.is_none()
            && memory.is_none()
            && kernel.is_none()
            && initrd.is_none()
            && cmdline.is_none()
            && disk.is_none()
            && disk_path.is_none()
            && iso.is_none()
            && uuid.is_none()
            && protocol.is_none()
            && tap.is_none()
            && mac.is_none()
            && !acpi
            && !rng
            && !no_copy
    }
}

fn disk_size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text, MIB).map_err(|e| e.to_string())?;
    if bytes < MIB || !bytes.is_multiple_of(MIB) {
        return Err("a disk size in whole MiB, at least 1M (e.g. 20G)".into());
    }
    Ok(bytes)
}

fn tap_name(text: &str) -> Result<String, String> {
    if settings::valid_ifname(text) {
        Ok(text.to_string())
    } else {
        Err("an interface name of up to 15 letters, digits, '-', '_' or '.'".into())
    }
}

pub fn run(library: &Library, args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let mut args_owned;
    let mut args = args;
    if args.has_no_options() && prompt::interactive() {
        args_owned = CreateArgs {
            name: args.name.clone(),
            ..CreateArgs::default()
        };
        let stdin = std::io::stdin();
        if !wizard::ask_all(&mut args_owned, &mut stdin.lock(), &mut std::io::stdout())? {
            bail!("create cancelled; nothing was created");
        }
        args = &args_owned;
    }
    let mut staging = library.stage(&args.name)?;
    let mut report = Vec::new();
    let values = build(args, &mut staging, &mut report)?;
    let entry = staging.commit(&template(&values))?;
    println!("Created VM '{}' in {}.", entry.name, entry.dir.display());
    for line in report {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Put the VM's files in the staging folder; return the config values.
fn build(
    args: &CreateArgs,
    staging: &mut Staging,
    report: &mut Vec<String>,
) -> anyhow::Result<Vec<(&'static str, &'static str, String)>> {
    let uuid = args.uuid.unwrap_or_else(uuid::Uuid::new_v4);
    let mut values = vec![
        (MACHINE, "name", args.name.clone()),
        (MACHINE, "uuid", uuid.to_string()),
    ];
    if let Some(t) = args.os_type {
        let t = if t == TypeArg::Bsd { "bsd" } else { "linux" };
        values.push((MACHINE, "type", t.to_string()));
    }
    if let Some(cpus) = args.cpus {
        values.push((PROCESSOR, "cpus", cpus.to_string()));
    }
    if let Some(mib) = args.memory {
        values.push((MEMORY, "size", format_size(mib * MIB)));
    }
    if args.acpi {
        values.push((ACPI, "enabled", "true".into()));
    }
    if let Some(p) = args.protocol {
        let p = match p {
            ProtocolArg::Auto => "auto",
            ProtocolArg::Linux64 => "linux64",
            ProtocolArg::Linux32 => "linux32",
            ProtocolArg::Pvh => "pvh",
        };
        values.push((BOOT, "protocol", p.to_string()));
    }
    if let Some(tap) = &args.tap {
        values.push((NETWORKING, "tap", tap.clone()));
    }
    if let Some(mac) = &args.mac {
        values.push((NETWORKING, "mac", format_mac(mac)));
    }
    if args.rng {
        values.push((RNG, "enabled", "true".into()));
    }
    boot_files(args, staging, &mut values, report)?;
    disk_image(args, staging, &mut values, report)?;
    if let Some(cmdline) = &args.cmdline {
        values.push((BOOT, "options", cmdline.clone()));
    }
    Ok(values)
}

fn boot_files(
    args: &CreateArgs,
    staging: &mut Staging,
    values: &mut Vec<(&'static str, &'static str, String)>,
    report: &mut Vec<String>,
) -> anyhow::Result<()> {
    if let Some(iso_path) = &args.iso {
        let iso_path = absolute_existing(iso_path, "--iso")?;
        let boot = iso::inspect(&iso_path)
            .with_context(|| format!("cannot tell what boots {}", iso_path.display()))?;
        let (kernel, initrd) =
            iso::extract(&iso_path, &boot, staging.dir()).with_context(|| {
                format!(
                    "cannot extract the kernel and initrd of {}",
                    iso_path.display()
                )
            })?;
        values.push((BOOT, "kernel", relative_to(staging.dir(), &kernel)));
        values.push((BOOT, "initrd", relative_to(staging.dir(), &initrd)));
        values.push((BOOT, "options", boot.cmdline.clone()));
        values.push((
            EXTERNAL_STORAGE,
            "configinfo",
            iso_path.display().to_string(),
        ));
        report.push(format!(
            "{} installer: kernel and initrd extracted into the VM folder; ISO {} attached read-only (referenced, not copied)",
            boot.distro,
            iso_path.display()
        ));
        return Ok(());
    }
    match args.kernel.as_deref() {
        None => {
            report.push(format!(
                "no kernel given: put one at {}/vmlinuz (and initrd.gz) or change [boot] kernel with `edit`",
                staging.final_dir().display()
            ));
            return Ok(());
        }
        Some(DISK_AUTO) => {
            if args.disk.is_none() && args.disk_path.is_none() {
                bail!(
                    "--kernel disk:auto boots the kernel installed on the disk: give --disk-path (or --disk)"
                );
            }
            if args.initrd.is_some() {
                bail!(
                    "--initrd cannot be used with --kernel disk:auto: the initrd comes from the disk"
                );
            }
            values.push((BOOT, "kernel", DISK_AUTO.to_string()));
            values.push((BOOT, "initrd", String::new()));
            report.push("kernel: disk:auto (read from the disk at each start)".into());
            return Ok(());
        }
        Some(kernel) => {
            let value = place_file(
                args,
                staging,
                Path::new(kernel),
                "--kernel",
                "vmlinuz",
                report,
            )?;
            values.push((BOOT, "kernel", value));
        }
    }
    let initrd = match &args.initrd {
        Some(initrd) => place_file(args, staging, initrd, "--initrd", "initrd", report)?,
        None => String::new(),
    };
    values.push((BOOT, "initrd", initrd));
    Ok(())
}

/// Copy `source` into the staging folder (or reference it with --no-copy);
/// returns the config value.
fn place_file(
    args: &CreateArgs,
    staging: &Staging,
    source: &Path,
    flag: &str,
    fallback_name: &str,
    report: &mut Vec<String>,
) -> anyhow::Result<String> {
    let source = absolute_existing(source, flag)?;
    if args.no_copy {
        report.push(format!(
            "{flag}: {} referenced (not copied)",
            source.display()
        ));
        return Ok(source.display().to_string());
    }
    let mut name = source
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(fallback_name)
        .to_string();
    let reserved = [CONFIG_FILE, DISK_IMAGE];
    if reserved.contains(&name.as_str())
        || name.starts_with('.')
        || staging.dir().join(&name).exists()
    {
        name = fallback_name.to_string();
    }
    let dest = staging.dir().join(&name);
    fs::copy(&source, &dest)
        .with_context(|| format!("cannot copy {} to {}", source.display(), dest.display()))?;
    report.push(format!(
        "{flag}: {} copied into the VM folder as {name}",
        source.display()
    ));
    Ok(name)
}

fn disk_image(
    args: &CreateArgs,
    staging: &mut Staging,
    values: &mut Vec<(&'static str, &'static str, String)>,
    report: &mut Vec<String>,
) -> anyhow::Result<()> {
    let value = match (args.disk, &args.disk_path) {
        (Some(size), path) => {
            let (target, value) = match path {
                Some(path) => {
                    let target = std::path::absolute(path)
                        .with_context(|| format!("--disk-path {}", path.display()))?;
                    (target.clone(), target.display().to_string())
                }
                None => (staging.dir().join(DISK_IMAGE), DISK_IMAGE.to_string()),
            };
            if fs::symlink_metadata(&target).is_ok() {
                bail!(
                    "--disk would overwrite {}; remove it or drop --disk to use it as it is",
                    target.display()
                );
            }
            disk::create_sparse(&target, size).with_context(|| {
                let shown = staging.final_path(&target);
                format!("cannot create the disk image {}", shown.display())
            })?;
            if path.is_some() {
                staging.created_outside(target.clone());
            }
            report.push(format!(
                "disk: {} created, {} (sparse)",
                staging.final_path(&target).display(),
                format_size(size)
            ));
            value
        }
        (None, Some(path)) => {
            let target = absolute_existing(path, "--disk-path")?;
            report.push(format!(
                "disk: {} referenced (not copied)",
                target.display()
            ));
            target.display().to_string()
        }
        (None, None) => return Ok(()),
    };
    values.push((INTERNAL_STORAGE, "configinfo", value));
    Ok(())
}

/// `path` made absolute; it must be an existing file.
fn absolute_existing(path: &Path, flag: &str) -> anyhow::Result<PathBuf> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("{flag} {}", path.display()))?;
    if !absolute.is_file() {
        bail!("{flag} {}: no such file", path.display());
    }
    Ok(absolute)
}

/// `path` relative to `dir` when inside it (so it survives the rename).
fn relative_to(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_name_means_no_options() {
        let mut args = CreateArgs {
            name: "x".into(),
            ..CreateArgs::default()
        };
        assert!(args.has_no_options());
        args.rng = true;
        assert!(!args.has_no_options());
    }

    #[test]
    fn disk_sizes() {
        assert_eq!(disk_size("20"), Ok(20 * MIB));
        assert_eq!(disk_size("2G"), Ok(2 << 30));
        assert_eq!(disk_size("512M"), Ok(512 * MIB));
        assert!(disk_size("1K").is_err());
        assert!(disk_size("lots").is_err());
    }
}
