//! config.ini as typed, validated values.
//!
//! Every value is read through the key table (`keys::KEYS`), so a missing
//! key takes its documented default, and every check says which section and
//! key it was, the value found, and what is allowed.

use serde::Serialize;

use super::ini::Document;
use super::keys::{self, *};
use crate::manager::size::{SizeError, parse_size};
use crate::vmm::layout::{CMDLINE_MAX_SIZE, MAX_VCPUS, MIB};
use crate::vmm::memory::{MAX_MEMORY_MIB, MIN_MEMORY_MIB};

/// Highest PCI device number on a bus (PCI Local Bus spec: 5 bits).
const PCI_MAX_DEVICE: u8 = 31;
/// Highest PCI function number (3 bits).
const PCI_MAX_FUNCTION: u8 = 7;
/// Longest Linux interface name (IFNAMSIZ - 1).
const IFNAME_MAX_LEN: usize = 15;

/// One bad value: where it is and what is allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("[{section}] {key} = \"{value}\" is not allowed: {allowed}")]
pub struct InvalidValue {
    pub section: String,
    pub key: String,
    pub value: String,
    pub allowed: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OsType {
    Linux,
    Bsd,
}

impl OsType {
    pub fn as_str(self) -> &'static str {
        match self {
            OsType::Linux => "linux",
            OsType::Bsd => "bsd",
        }
    }
}

/// `[boot] protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Auto,
    Linux64,
    Linux32,
    Pvh,
}

/// A PCI slot as xhyve wrote it: `N` or `N:F`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PciSlot {
    pub device: u8,
    pub function: u8,
}

/// The serial port line of `[lpc_dev] config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SerialPort {
    /// 1 (COM1, the console) or 2.
    pub com: u8,
    /// `stdio` or `autopty`; either way the console is the VM's console.
    pub autopty: bool,
}

/// A storage section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Storage {
    pub slot: PciSlot,
    pub driver: String,
    /// Image path as written (relative to the VM folder); empty: none.
    pub path: String,
    pub readonly: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Network {
    pub slot: PciSlot,
    pub driver: String,
    /// Host TAP interface; `None`: no network card.
    pub tap: Option<String>,
    pub mac: Option<[u8; 6]>,
}

/// All of config.ini, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub name: String,
    pub os_type: OsType,
    pub uuid: Option<uuid::Uuid>,
    pub kernel: String,
    /// Empty: no initrd.
    pub initrd: String,
    pub cmdline: String,
    pub protocol: Protocol,
    /// `[acpi] enabled` as written; accepted and ignored.
    pub acpi: bool,
    pub cpus: u8,
    pub memory_mib: u64,
    pub bridge_slot: PciSlot,
    pub lpc_slot: PciSlot,
    pub serial: SerialPort,
    pub internal_storage: Storage,
    pub external_storage: Storage,
    pub networking: Network,
    pub rng: bool,
}

/// Reads values of one document, defaults filled in.
struct Reader<'a> {
    doc: &'a Document,
}

impl Reader<'_> {
    fn raw(&self, section: &'static str, key: &'static str) -> (&str, Field) {
        let default = keys::spec(section, key)
            .map(|k| k.default)
            .unwrap_or_default();
        let value = self.doc.get(section, key).unwrap_or(default);
        (value, Field { section, key })
    }
}

/// Names the key being checked, to build errors.
#[derive(Clone, Copy)]
struct Field {
    section: &'static str,
    key: &'static str,
}

impl Field {
    fn invalid(self, value: &str, allowed: impl Into<String>) -> InvalidValue {
        InvalidValue {
            section: self.section.to_string(),
            key: self.key.to_string(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}

impl Settings {
    /// Validate `doc`, defaults for what it does not set.
    pub fn from_document(doc: &Document) -> Result<Settings, InvalidValue> {
        let r = Reader { doc };
        let (name, _) = r.raw(MACHINE, "name");
        let os_type = parse_os_type(r.raw(MACHINE, "type"))?;
        let uuid = parse_uuid(r.raw(MACHINE, "uuid"))?;
        let kernel = parse_path(r.raw(BOOT, "kernel"), false)?;
        let initrd = parse_path(r.raw(BOOT, "initrd"), true)?;
        let cmdline = parse_cmdline(r.raw(BOOT, "options"))?;
        let protocol = parse_protocol(r.raw(BOOT, "protocol"))?;
        let acpi = parse_bool(r.raw(ACPI, "enabled"))?;
        let cpus = parse_cpus(r.raw(PROCESSOR, "cpus"))?;
        let memory_mib = parse_memory(r.raw(MEMORY, "size"))?;

        let bridge_slot = parse_slot(r.raw(BRIDGE, "slot"))?;
        parse_driver(r.raw(BRIDGE, "driver"), &["hostbridge", "amd_hostbridge"])?;
        let lpc_slot = parse_slot(r.raw(LPC, "slot"))?;
        parse_driver(r.raw(LPC, "driver"), &["lpc"])?;
        let serial = parse_serial(r.raw(LPC_DEV, "config"))?;

        let internal_storage = parse_storage(&r, INTERNAL_STORAGE, &["virtio-blk", "ahci-hd"])?;
        let mut external_storage = parse_storage(&r, EXTERNAL_STORAGE, &["ahci-cd", "virtio-blk"])?;
        if external_storage.driver == "ahci-cd" {
            // A CD cannot be written, whatever the key says.
            external_storage.readonly = true;
        }
        let networking = parse_network(&r)?;
        let rng = parse_bool(r.raw(RNG, "enabled"))?;

        let settings = Settings {
            name: name.to_string(),
            os_type,
            uuid,
            kernel,
            initrd,
            cmdline,
            protocol,
            acpi,
            cpus,
            memory_mib,
            bridge_slot,
            lpc_slot,
            serial,
            internal_storage,
            external_storage,
            networking,
            rng,
        };
        settings.check_slots_distinct(&r)?;
        Ok(settings)
    }

    fn check_slots_distinct(&self, r: &Reader) -> Result<(), InvalidValue> {
        let used = [
            (BRIDGE, self.bridge_slot),
            (LPC, self.lpc_slot),
            (INTERNAL_STORAGE, self.internal_storage.slot),
            (EXTERNAL_STORAGE, self.external_storage.slot),
            (NETWORKING, self.networking.slot),
        ];
        for (i, (section, slot)) in used.iter().enumerate() {
            if let Some((other, _)) = used[..i].iter().find(|(_, s)| s == slot) {
                let (value, field) = r.raw(section, "slot");
                return Err(field.invalid(
                    value,
                    format!("a slot no other device uses ([{other}] has it)"),
                ));
            }
        }
        Ok(())
    }
}

fn parse_os_type((value, field): (&str, Field)) -> Result<OsType, InvalidValue> {
    match value {
        "linux" => Ok(OsType::Linux),
        "bsd" => Ok(OsType::Bsd),
        _ => Err(field.invalid(value, "linux or bsd")),
    }
}

fn parse_uuid((value, field): (&str, Field)) -> Result<Option<uuid::Uuid>, InvalidValue> {
    if value.is_empty() || value == UUID_PLACEHOLDER {
        return Ok(None);
    }
    uuid::Uuid::parse_str(value).map(Some).map_err(|_| {
        field.invalid(
            value,
            "a UUID like 8c8ad0a8-3f4e-4b5e-9a43-1e2f3a4b5c6d, or empty",
        )
    })
}

pub fn parse_bool_str(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_bool((value, field): (&str, Field)) -> Result<bool, InvalidValue> {
    parse_bool_str(value)
        .ok_or_else(|| field.invalid(value, "true or false (also yes/no, on/off, 1/0)"))
}

fn parse_path((value, field): (&str, Field), may_be_empty: bool) -> Result<String, InvalidValue> {
    if value.is_empty() && !may_be_empty {
        return Err(field.invalid(
            value,
            "a file path (relative paths are relative to the VM folder)",
        ));
    }
    if value.contains('\0') {
        return Err(field.invalid(value, "a path without NUL characters"));
    }
    Ok(value.to_string())
}

fn parse_cmdline((value, field): (&str, Field)) -> Result<String, InvalidValue> {
    // The command line is copied with a terminating NUL.
    if value.len() >= CMDLINE_MAX_SIZE {
        return Err(field.invalid(value, format!("at most {} bytes", CMDLINE_MAX_SIZE - 1)));
    }
    Ok(value.to_string())
}

fn parse_protocol((value, field): (&str, Field)) -> Result<Protocol, InvalidValue> {
    match value {
        "auto" => Ok(Protocol::Auto),
        "linux64" => Ok(Protocol::Linux64),
        "linux32" => Ok(Protocol::Linux32),
        "pvh" => Ok(Protocol::Pvh),
        _ => Err(field.invalid(value, "auto, linux64, linux32 or pvh")),
    }
}

/// Parse a vCPU count (also used by the CLI).
pub fn cpus_from_str(value: &str) -> Result<u8, String> {
    let allowed = format!("a whole number from 1 to {MAX_VCPUS}");
    match value.trim().parse::<u64>() {
        Ok(n) if (1..=u64::from(MAX_VCPUS)).contains(&n) => Ok(n as u8),
        _ => Err(allowed),
    }
}

fn parse_cpus((value, field): (&str, Field)) -> Result<u8, InvalidValue> {
    cpus_from_str(value).map_err(|allowed| field.invalid(value, allowed))
}

/// Parse a memory size in MiB (bare numbers are MiB; also used by the CLI).
pub fn memory_from_str(value: &str) -> Result<u64, String> {
    let range = format!(
        "a size from {MIN_MEMORY_MIB}M to {}G in whole MiB, e.g. 512M or 2G (a bare number is MiB)",
        MAX_MEMORY_MIB / 1024
    );
    let bytes = match parse_size(value, MIB) {
        Ok(bytes) => bytes,
        Err(SizeError::Invalid(_)) | Err(SizeError::Overflow(_)) => return Err(range),
    };
    if !bytes.is_multiple_of(MIB) {
        return Err(range);
    }
    let mib = bytes / MIB;
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(range);
    }
    Ok(mib)
}

fn parse_memory((value, field): (&str, Field)) -> Result<u64, InvalidValue> {
    memory_from_str(value).map_err(|allowed| field.invalid(value, allowed))
}

fn parse_slot((value, field): (&str, Field)) -> Result<PciSlot, InvalidValue> {
    let allowed = || {
        field.invalid(
            value,
            format!(
                "N or N:F with device N 0..={PCI_MAX_DEVICE} and function F 0..={PCI_MAX_FUNCTION}"
            ),
        )
    };
    let (device, function) = value.split_once(':').unwrap_or((value, "0"));
    let number = |s: &str, max: u8| {
        s.trim()
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max && !s.trim().starts_with('+'))
    };
    match (
        number(device, PCI_MAX_DEVICE),
        number(function, PCI_MAX_FUNCTION),
    ) {
        (Some(device), Some(function)) => Ok(PciSlot { device, function }),
        _ => Err(allowed()),
    }
}

fn parse_driver((value, field): (&str, Field), supported: &[&str]) -> Result<String, InvalidValue> {
    if supported.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(field.invalid(value, format!("one of: {}", supported.join(", "))))
    }
}

fn parse_serial((value, field): (&str, Field)) -> Result<SerialPort, InvalidValue> {
    let allowed = || {
        field.invalid(
            value,
            "com1,stdio | com1,autopty | com2,stdio | com2,autopty",
        )
    };
    let (port, backend) = value.split_once(',').unwrap_or((value, "stdio"));
    let com = match port.trim() {
        "com1" => 1,
        "com2" => 2,
        _ => return Err(allowed()),
    };
    let autopty = match backend.trim() {
        "stdio" => false,
        "autopty" => true,
        _ => return Err(allowed()),
    };
    Ok(SerialPort { com, autopty })
}

fn parse_storage(
    r: &Reader,
    section: &'static str,
    drivers: &[&str],
) -> Result<Storage, InvalidValue> {
    let slot = parse_slot(r.raw(section, "slot"))?;
    let driver = parse_driver(r.raw(section, "driver"), drivers)?;
    let (info, field) = r.raw(section, "configinfo");
    let (path, options) = info.split_once(',').unwrap_or((info, ""));
    let mut readonly = parse_bool(r.raw(section, "readonly"))?;
    for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match option {
            "ro" => readonly = true,
            _ => return Err(field.invalid(info, "an image path, optionally followed by ,ro")),
        }
    }
    let path = parse_path((path.trim(), field), true)?;
    Ok(Storage {
        slot,
        driver,
        path,
        readonly,
    })
}

/// Parse `aa:bb:cc:dd:ee:ff` (unicast; also used by the CLI).
pub fn mac_from_str(value: &str) -> Result<[u8; 6], String> {
    let allowed = || "a unicast MAC address like 02:12:34:56:78:9a".to_string();
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != 6 {
        return Err(allowed());
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(allowed());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| allowed())?;
    }
    // Bit 0 of the first octet set means multicast (IEEE 802).
    if mac[0] & 1 != 0 {
        return Err(allowed());
    }
    Ok(mac)
}

/// Is `name` a valid Linux interface name?
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX_LEN
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_network(r: &Reader) -> Result<Network, InvalidValue> {
    let slot = parse_slot(r.raw(NETWORKING, "slot"))?;
    let driver = parse_driver(r.raw(NETWORKING, "driver"), &["virtio-net"])?;
    let (tap_value, tap_field) = r.raw(NETWORKING, "tap");
    let (mac_value, mac_field) = r.raw(NETWORKING, "mac");
    let mut tap = None;
    let mut mac = None;
    // bhyve-style configinfo: "tap0" or "tap0,mac=02:..".
    let (info, info_field) = r.raw(NETWORKING, "configinfo");
    for item in info.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if let Some(m) = item.strip_prefix("mac=") {
            mac = Some(mac_from_str(m).map_err(|a| info_field.invalid(info, a))?);
        } else if valid_ifname(item) && tap.is_none() {
            tap = Some(item.to_string());
        } else {
            return Err(info_field.invalid(
                info,
                "TAP[,mac=MAC] with an interface name of up to 15 characters",
            ));
        }
    }
    if !tap_value.is_empty() {
        if !valid_ifname(tap_value) {
            return Err(tap_field.invalid(
                tap_value,
                "an interface name of up to 15 letters, digits, '-', '_' or '.', or empty",
            ));
        }
        tap = Some(tap_value.to_string());
    }
    if !mac_value.is_empty() {
        mac = Some(mac_from_str(mac_value).map_err(|a| mac_field.invalid(mac_value, a))?);
    }
    Ok(Network {
        slot,
        driver,
        tap,
        mac,
    })
}

impl std::fmt::Display for PciSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.device, self.function)
    }
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
