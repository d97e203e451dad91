//! `info NAME`: every setting (defaults marked), resolved paths, whether
//! each referenced file exists, and what the VMM will make of the config.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::list::state_word;
use crate::manager::config::keys::{
    self, BOOT, DISK_AUTO, EXTERNAL_STORAGE, INTERNAL_STORAGE, USERBOOT,
};
use crate::manager::config::settings::format_mac;
use crate::manager::config::{OsType, Settings};
use crate::manager::disk;
use crate::manager::library::{Library, VmEntry};
use crate::manager::run::{self, RuntimeState};
use crate::manager::size::format_size;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// VM name.
    pub name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Info {
    name: String,
    dir: PathBuf,
    config: PathBuf,
    #[serde(flatten)]
    state: RuntimeState,
    /// Every known key: the value in effect and whether it is the default.
    settings: Vec<Setting>,
    /// Keys the tool does not know, kept as they are.
    unknown_keys: Vec<Setting>,
    files: Vec<FileRef>,
    /// The validated values.
    effective: Settings,
    mac: Option<String>,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Setting {
    section: String,
    key: String,
    value: String,
    default: bool,
}

#[derive(Debug, Serialize)]
struct FileRef {
    section: &'static str,
    key: &'static str,
    value: String,
    path: PathBuf,
    exists: bool,
    inside_vm_folder: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    apparent_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allocated_size: Option<u64>,
}

pub fn run(library: &Library, args: &InfoArgs) -> anyhow::Result<ExitCode> {
    let entry = library.load(&args.name)?;
    let info = gather(&entry);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print_text(&info);
    }
    Ok(ExitCode::SUCCESS)
}

fn gather(entry: &VmEntry) -> Info {
    let config = &entry.config;
    let s = &config.settings;
    let settings = keys::KEYS
        .iter()
        .map(|k| Setting {
            section: k.section.to_string(),
            key: k.key.to_string(),
            value: config.value(k.section, k.key),
            default: config.document.get(k.section, k.key).is_none(),
        })
        .collect();
    let unknown_keys = config
        .unknown_keys()
        .into_iter()
        .map(|(section, key)| Setting {
            value: config
                .document
                .get(&section, &key)
                .unwrap_or_default()
                .to_string(),
            section,
            key,
            default: false,
        })
        .collect();
    let mut files = Vec::new();
    if s.kernel != DISK_AUTO {
        files.push(file_ref(entry, BOOT, "kernel", &s.kernel));
    }
    if !s.initrd.is_empty() && s.kernel != DISK_AUTO {
        files.push(file_ref(entry, BOOT, "initrd", &s.initrd));
    }
    for (section, path) in [
        (INTERNAL_STORAGE, &s.internal_storage.path),
        (EXTERNAL_STORAGE, &s.external_storage.path),
    ] {
        if !path.is_empty() {
            files.push(file_ref(entry, section, "configinfo", path));
        }
    }
    Info {
        name: entry.name.clone(),
        dir: entry.dir.clone(),
        config: config.path.clone(),
        state: run::runtime_state(&entry.dir),
        settings,
        unknown_keys,
        files,
        effective: s.clone(),
        mac: s.networking.tap.as_ref().map(|_| format_mac(&entry.mac())),
        notes: notes(entry),
    }
}

fn file_ref(entry: &VmEntry, section: &'static str, key: &'static str, value: &str) -> FileRef {
    let path = entry.resolve(value);
    let exists = path.exists();
    let is_image = section != BOOT && path.is_file();
    let sizes = is_image.then(|| disk::usage(&path).ok()).flatten();
    FileRef {
        section,
        key,
        value: value.to_string(),
        inside_vm_folder: entry.contains(&path),
        path,
        exists,
        apparent_size: sizes.map(|(apparent, _)| apparent),
        allocated_size: sizes.map(|(_, allocated)| allocated),
    }
}

/// What the VMM makes of this config, where it differs from xhyve.
fn notes(entry: &VmEntry) -> Vec<String> {
    let s = &entry.config.settings;
    let mut notes = Vec::new();
    notes.push(format!(
        "[acpi] enabled = {} is accepted and ignored: the VM always has ACPI (kernels need it for SMP and PCI)",
        s.acpi
    ));
    if s.os_type == OsType::Bsd {
        if std::path::Path::new(&s.kernel).file_name() == Some(USERBOOT.as_ref()) {
            notes.push(
                "type = bsd with kernel = userboot.so will not start: point [boot] kernel at a FreeBSD >= 14 kernel (booted through PVH)"
                    .into(),
            );
        } else {
            notes.push("type = bsd: the kernel boots through PVH".into());
        }
    }
    if s.kernel == DISK_AUTO {
        notes.push("kernel = disk:auto: kernel and initrd are read from the internal disk at start, root= is added".into());
    }
    if !s.external_storage.path.is_empty() {
        notes.push(format!(
            "[external_storage] ({}) is attached as a read-only virtio-blk disk: there is no AHCI controller",
            s.external_storage.driver
        ));
    }
    if s.internal_storage.driver == "ahci-hd" {
        notes.push("[internal_storage] ahci-hd is attached as a virtio-blk disk".into());
    }
    if s.networking.tap.is_none() {
        notes.push("no [networking] tap configured: the VM has no network card".into());
    }
    notes
}

fn print_text(info: &Info) {
    println!("VM {}", info.name);
    println!("  folder: {}", info.dir.display());
    println!("  config: {}", info.config.display());
    println!("  state:  {}", state_word(&info.state));
    let mut section = "";
    for setting in &info.settings {
        if setting.section != section {
            section = &setting.section;
            println!("[{section}]");
        }
        let default = if setting.default { "  (default)" } else { "" };
        println!("  {} = {}{default}", setting.key, setting.value);
        if let Some(file) = info
            .files
            .iter()
            .find(|f| f.section == setting.section && f.key == setting.key)
        {
            println!("      -> {}", describe(file));
        }
        if setting.section == "networking"
            && setting.key == "mac"
            && let Some(mac) = info.mac.as_ref().filter(|_| setting.value.is_empty())
        {
            println!("      -> {mac} (derived from the UUID)");
        }
        if setting.section == "memory" {
            println!("      -> {} MiB", info.effective.memory_mib);
        }
    }
    if !info.unknown_keys.is_empty() {
        println!("Unknown keys (kept):");
        for setting in &info.unknown_keys {
            println!(
                "  [{}] {} = {}",
                setting.section, setting.key, setting.value
            );
        }
    }
    if !info.notes.is_empty() {
        println!("Notes:");
        for note in &info.notes {
            println!("  - {note}");
        }
    }
}

fn describe(file: &FileRef) -> String {
    let mut text = format!(
        "{} ({}",
        file.path.display(),
        if file.exists { "exists" } else { "missing" }
    );
    if !file.inside_vm_folder {
        text.push_str(", outside the VM folder");
    }
    if let (Some(apparent), Some(allocated)) = (file.apparent_size, file.allocated_size) {
        text.push_str(&format!(
            ", {} apparent, {} allocated",
            format_size(apparent),
            format_size(allocated)
        ));
    }
    text.push(')');
    text
}
