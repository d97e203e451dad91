//! config.ini → `vmm::VmConfig`: what the 2016 keys mean for our VMM.
//!
//! - `[machine] type = bsd` boots a FreeBSD >= 14 kernel through PVH;
//!   xhyve's `userboot.so` loader does not exist here.
//! - `[external_storage]` (an `ahci-cd` in xhyve) and an `ahci-hd` internal
//!   disk are attached as virtio-blk disks: there is no AHCI controller.
//! - `[acpi] enabled` is ignored: the VM always has ACPI tables, which
//!   modern kernels need for SMP and PCI.
//! - `[networking]` gives a NIC only when a TAP interface is configured.

use std::path::{Path, PathBuf};

use super::{DISK_BOOT_DIR, Error, VmEntry};
use crate::manager::config::keys::{BOOT, DISK_AUTO, EXTERNAL_STORAGE, INTERNAL_STORAGE, USERBOOT};
use crate::manager::config::settings::{Network, PciSlot, Storage};
use crate::manager::config::{OsType, Protocol};
use crate::manager::disk;
use crate::vmm::{BootProtocol, DiskConfig, NetConfig, VmConfig};

/// First MAC octet of derived addresses: locally administered (bit 1),
/// unicast (bit 0 clear), per IEEE 802.
const LOCAL_UNICAST_OCTET: u8 = 0x02;
/// FNV-1a 64-bit parameters (for a MAC when the VM has no UUID).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl VmEntry {
    /// The plain-data config the VMM runs; relative paths resolved against
    /// `dir`, `disk:auto` boot resolved (kernel/initrd read from the disk).
    pub fn vmm_config(&self) -> Result<VmConfig, Error> {
        let s = &self.config.settings;
        let mut cmdline = s.cmdline.clone();
        let (kernel, initrd) = if s.kernel == DISK_AUTO {
            let boot = self.disk_boot()?;
            let has_root = cmdline.split_whitespace().any(|w| w.starts_with("root="));
            if !has_root && !boot.root_arg.is_empty() {
                if !cmdline.is_empty() {
                    cmdline.push(' ');
                }
                cmdline.push_str(&boot.root_arg);
            }
            (boot.kernel, boot.initrd)
        } else {
            if s.os_type == OsType::Bsd
                && Path::new(&s.kernel).file_name() == Some(USERBOOT.as_ref())
            {
                return Err(Error::Userboot {
                    config: self.config.path.clone(),
                });
            }
            let kernel = self.existing(BOOT, "kernel", &s.kernel)?;
            let initrd = if s.initrd.is_empty() {
                None
            } else {
                Some(self.existing(BOOT, "initrd", &s.initrd)?)
            };
            (kernel, initrd)
        };
        let boot_protocol = match (s.os_type, s.protocol) {
            (OsType::Bsd, _) | (_, Protocol::Pvh) => BootProtocol::Pvh,
            (_, Protocol::Auto) => BootProtocol::Auto,
            (_, Protocol::Linux64) => BootProtocol::Linux64,
            (_, Protocol::Linux32) => BootProtocol::Linux32,
        };
        let mut disks: Vec<(PciSlot, DiskConfig)> = Vec::new();
        for (section, storage) in [
            (INTERNAL_STORAGE, &s.internal_storage),
            (EXTERNAL_STORAGE, &s.external_storage),
        ] {
            if let Some(disk) = self.disk(section, storage)? {
                disks.push((storage.slot, disk));
            }
        }
        disks.sort_by_key(|(slot, _)| (slot.device, slot.function));
        Ok(VmConfig {
            name: self.name.clone(),
            vcpus: s.cpus,
            memory_mib: s.memory_mib,
            kernel,
            initrd,
            cmdline,
            boot_protocol,
            disks: disks.into_iter().map(|(_, d)| d).collect(),
            nets: self.net(&s.networking).into_iter().collect(),
            rng: s.rng,
            com2: s.serial.com == 2,
        })
    }

    /// The MAC the NIC gets: the configured one, else one derived from the
    /// UUID (or the name), stable across starts.
    pub fn mac(&self) -> [u8; 6] {
        let s = &self.config.settings;
        if let Some(mac) = s.networking.mac {
            return mac;
        }
        let seed: [u8; 8] = match s.uuid {
            Some(uuid) => {
                let b = uuid.as_bytes();
                [b[10], b[11], b[12], b[13], b[14], b[15], 0, 0]
            }
            None => self
                .name
                .bytes()
                .fold(FNV_OFFSET, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
                })
                .to_le_bytes(),
        };
        [
            LOCAL_UNICAST_OCTET,
            seed[0],
            seed[1],
            seed[2],
            seed[3],
            seed[4],
        ]
    }

    fn net(&self, net: &Network) -> Option<NetConfig> {
        net.tap.as_ref().map(|tap| NetConfig {
            tap: tap.clone(),
            mac: self.mac(),
        })
    }

    fn disk(&self, section: &'static str, storage: &Storage) -> Result<Option<DiskConfig>, Error> {
        if storage.path.is_empty() {
            return Ok(None);
        }
        Ok(Some(DiskConfig {
            path: self.existing(section, "configinfo", &storage.path)?,
            read_only: storage.readonly,
        }))
    }

    fn disk_boot(&self) -> Result<disk::DiskBoot, Error> {
        let storage = &self.config.settings.internal_storage;
        if storage.path.is_empty() {
            return Err(Error::DiskAutoWithoutDisk {
                config: self.config.path.clone(),
            });
        }
        let image = self.existing(INTERNAL_STORAGE, "configinfo", &storage.path)?;
        disk::resolve_disk_boot(&image, &self.dir.join(DISK_BOOT_DIR)).map_err(|source| {
            Error::DiskBoot {
                disk: image,
                source,
            }
        })
    }

    /// `value` of `[section] key` resolved; it must exist.
    fn existing(
        &self,
        section: &'static str,
        key: &'static str,
        value: &str,
    ) -> Result<PathBuf, Error> {
        let resolved = self.resolve(value);
        if resolved.exists() {
            Ok(resolved)
        } else {
            Err(Error::MissingFile {
                config: self.config.path.clone(),
                section,
                key,
                value: value.to_string(),
                resolved,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::config::ConfigFile;
    use std::fs;

    fn entry(dir: &Path, text: &str) -> VmEntry {
        let path = dir.join("config.ini");
        fs::write(&path, text).unwrap();
        VmEntry {
            name: "t".into(),
            dir: dir.to_path_buf(),
            config: ConfigFile::load(&path).unwrap(),
        }
    }

    #[test]
    fn maps_the_2016_keys() {
        let tmp = tempfile::tempdir().unwrap();
        for f in ["vmlinuz", "initrd.gz", "hdd.img"] {
            fs::write(tmp.path().join(f), b"x").unwrap();
        }
        let iso = tmp.path().join("elsewhere.iso");
        fs::write(&iso, b"x").unwrap();
        let text = format!(
            "[processor]\ncpus = 3\n[memory]\nsize = 768M\n[boot]\noptions = console=ttyS0\n\
             [internal_storage]\nconfiginfo = hdd.img\n[external_storage]\nconfiginfo = {}\n\
             [acpi]\nenabled = false\n",
            iso.display()
        );
        let config = entry(tmp.path(), &text).vmm_config().unwrap();
        assert_eq!(config.vcpus, 3);
        assert_eq!(config.memory_mib, 768);
        assert_eq!(config.kernel, tmp.path().join("vmlinuz"));
        assert_eq!(config.initrd, Some(tmp.path().join("initrd.gz")));
        assert_eq!(config.cmdline, "console=ttyS0");
        assert_eq!(config.boot_protocol, BootProtocol::Auto);
        // Slot 3 (the CD) comes before slot 4 (the disk); the CD is read-only.
        assert_eq!(
            config.disks,
            vec![
                DiskConfig {
                    path: iso,
                    read_only: true
                },
                DiskConfig {
                    path: tmp.path().join("hdd.img"),
                    read_only: false
                },
            ]
        );
        assert!(config.nets.is_empty());
        assert!(!config.rng && !config.com2);
    }

    #[test]
    fn tap_gives_a_nic_with_a_stable_mac() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("k"), b"x").unwrap();
        let text = "[boot]\nkernel = k\ninitrd =\nprotocol = linux32\n\
                    [machine]\nuuid = 6b1ab1f4-0b39-4c2e-9e0e-33b2a9a5f63c\n\
                    [networking]\ntap = tap5\n[rng]\nenabled = true\n";
        let vm = entry(tmp.path(), text);
        let config = vm.vmm_config().unwrap();
        assert_eq!(config.initrd, None);
        assert_eq!(config.boot_protocol, BootProtocol::Linux32);
        assert_eq!(config.nets.len(), 1);
        assert_eq!(config.nets[0].tap, "tap5");
        assert_eq!(config.nets[0].mac, [0x02, 0x33, 0xb2, 0xa9, 0xa5, 0xf6]);
        assert!(config.rng);
    }

    #[test]
    fn bsd_boots_pvh_and_refuses_userboot() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("kernel"), b"x").unwrap();
        let vm = entry(
            tmp.path(),
            "[machine]\ntype = bsd\n[boot]\nkernel = kernel\ninitrd =\n",
        );
        assert_eq!(vm.vmm_config().unwrap().boot_protocol, BootProtocol::Pvh);
        let vm = entry(
            tmp.path(),
            "[machine]\ntype = bsd\n[boot]\nkernel = userboot.so\n",
        );
        let message = vm.vmm_config().unwrap_err().to_string();
        assert!(message.contains("FreeBSD >= 14"), "{message}");
    }

    #[test]
    fn missing_files_name_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let vm = entry(tmp.path(), "[boot]\nkernel = nope\n");
        let message = vm.vmm_config().unwrap_err().to_string();
        assert!(message.contains("[boot] kernel = \"nope\""), "{message}");
        let vm = entry(tmp.path(), "[boot]\nkernel = disk:auto\n");
        let message = vm.vmm_config().unwrap_err().to_string();
        assert!(message.contains("needs a disk image"), "{message}");
    }
}
