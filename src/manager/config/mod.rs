//! config.ini: the 2016 xhyve-manager format, read unchanged, validated,
//! and rewritten without losing what the user wrote.

pub mod ini;
pub mod keys;
pub mod settings;

use std::path::{Path, PathBuf};

pub use settings::{InvalidValue, OsType, Protocol, Settings};

/// The file name inside a `NAME.xhyvm` folder.
pub const CONFIG_FILE: &str = "config.ini";

/// First lines of a config.ini we write.
const HEADER: &str = "\
; xhyve-manager VM configuration: the 2016 xhyve-manager format plus a few
; keys with defaults. Relative paths are relative to this folder.
; Reference: README.md, section \"config.ini reference\".
";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid INI", path.display())]
    Syntax {
        path: PathBuf,
        #[source]
        source: ini::Error,
    },
    #[error("{}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: Box<InvalidValue>,
    },
}

/// A config.ini: its text (kept for rewriting) and its validated values.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub document: ini::Document,
    pub settings: Settings,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ConfigFile::parse(path, &text)
    }

    /// Parse and validate `text` (errors name `path`).
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, Error> {
        let document = ini::Document::parse(text).map_err(|source| Error::Syntax {
            path: path.to_path_buf(),
            source,
        })?;
        ConfigFile::from_document(path, document)
    }

    pub fn from_document(path: &Path, document: ini::Document) -> Result<ConfigFile, Error> {
        let settings = Settings::from_document(&document).map_err(|source| Error::Invalid {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            document,
            settings,
        })
    }

    /// The value in effect for a key (the file's, or the default).
    pub fn value(&self, section: &str, key: &str) -> String {
        self.document
            .get(section, key)
            .map(str::to_string)
            .or_else(|| keys::spec(section, key).map(|k| k.default.to_string()))
            .unwrap_or_default()
    }

    /// Keys the file sets that this tool does not know (kept on rewrite).
    pub fn unknown_keys(&self) -> Vec<(String, String)> {
        self.document
            .keys()
            .into_iter()
            .filter(|(s, k)| keys::spec(s, k).is_none())
            .collect()
    }

    /// The text to write back.
    pub fn text(&self) -> String {
        self.document.to_string()
    }
}

/// A new config.ini: every known key, `values` overriding the defaults.
pub fn template(values: &[(&str, &str, String)]) -> ini::Document {
    let mut document = ini::Document::parse(HEADER).unwrap_or_default();
    for spec in keys::KEYS {
        let value = values
            .iter()
            .rev()
            .find(|(s, k, _)| *s == spec.section && *k == spec.key)
            .map_or(spec.default, |(_, _, v)| v.as_str());
        document.set(spec.section, spec.key, value);
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::layout::MAX_VCPUS;

    /// A config.ini as the 2016 tool's users have it.
    const ORIGINAL: &str = include_str!("../../../tests/fixtures/config-2016.ini");
    const PATH: &str = "/lib/Foo.xhyvm/config.ini";

    fn load(text: &str) -> Result<ConfigFile, Error> {
        ConfigFile::parse(Path::new(PATH), text)
    }

    fn error_of(text: &str) -> String {
        let err = load(text).unwrap_err();
        let source = std::error::Error::source(&err).map(ToString::to_string);
        format!("{err}: {}", source.unwrap_or_default())
    }

    #[test]
    fn original_file_loads_with_its_values() {
        let config = load(ORIGINAL).unwrap();
        let s = &config.settings;
        assert_eq!(s.name, "Foo");
        assert_eq!(s.os_type, OsType::Linux);
        assert_eq!(
            s.uuid.unwrap().to_string(),
            "6b1ab1f4-0b39-4c2e-9e0e-33b2a9a5f63c"
        );
        assert_eq!(s.kernel, "vmlinuz");
        assert_eq!(s.initrd, "initrd.gz");
        assert_eq!(
            s.cmdline,
            "earlyprintk=serial console=ttyS0 acpi=off root=/dev/vda1"
        );
        assert!(!s.acpi);
        assert_eq!(s.cpus, 2);
        assert_eq!(s.memory_mib, 2048);
        assert_eq!(s.internal_storage.path, "hdd.img");
        assert_eq!(s.internal_storage.slot.device, 4);
        assert_eq!(s.external_storage.path, "");
        assert!(s.external_storage.readonly);
        assert_eq!(s.networking.slot.to_string(), "2:0");
        assert_eq!(s.networking.tap, None);
        // New keys take their defaults.
        assert_eq!(s.protocol, Protocol::Auto);
        assert!(!s.rng);
        // [lpc] configinfo is not ours: kept, reported.
        assert_eq!(
            config.unknown_keys(),
            vec![("lpc".into(), "configinfo".into())]
        );
    }

    #[test]
    fn original_file_round_trips_byte_for_byte() {
        let config = load(ORIGINAL).unwrap();
        assert_eq!(config.text(), ORIGINAL);
    }

    #[test]
    fn setting_a_key_keeps_everything_else() {
        let mut config = load(&format!("{ORIGINAL}\n[custom]\nmine = kept\n")).unwrap();
        config.document.set("processor", "cpus", "4");
        config.document.set("networking", "tap", "tap7");
        let text = config.text();
        let reread = load(&text).unwrap();
        assert_eq!(reread.settings.cpus, 4);
        assert_eq!(reread.settings.networking.tap.as_deref(), Some("tap7"));
        assert_eq!(reread.document.get("custom", "mine"), Some("kept"));
        assert_eq!(reread.document.get("lpc", "configinfo"), Some("com1,stdio"));
        assert!(text.contains("; Foo, as xhyve-manager (2016) wrote it"));
        // Only the changed line differs; one line was added.
        let old: Vec<&str> = ORIGINAL.lines().collect();
        let new: Vec<&str> = text.lines().collect();
        assert_eq!(new.len(), old.len() + 4);
        let changed = old.iter().filter(|l| !new.contains(l)).collect::<Vec<_>>();
        assert_eq!(changed, vec![&"cpus = 2"]);
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let s = load("").unwrap().settings;
        assert_eq!(s.name, "default");
        assert_eq!(s.cpus, 1);
        assert_eq!(s.memory_mib, 1024);
        assert_eq!(s.kernel, "vmlinuz");
        assert_eq!(s.cmdline, "earlyprintk=serial console=ttyS0 acpi=off");
        assert_eq!(s.uuid, None);
    }

    #[test]
    fn template_is_valid_and_complete() {
        let doc = template(&[
            ("processor", "cpus", "3".into()),
            ("boot", "options", "a ; b".into()),
        ]);
        let config = ConfigFile::from_document(Path::new(PATH), doc).unwrap();
        assert_eq!(config.settings.cpus, 3);
        assert_eq!(config.settings.cmdline, "a ; b");
        for spec in keys::KEYS {
            assert!(
                config.document.get(spec.section, spec.key).is_some(),
                "{spec:?}"
            );
        }
        let order: Vec<String> = config.document.sections();
        assert_eq!(order, keys::sections());
    }

    #[test]
    fn memory_sizes() {
        for (text, mib) in [("512M", 512), ("1G", 1024), ("1024", 1024), ("1.5G", 1536)] {
            let c = load(&format!("[memory]\nsize = {text}\n")).unwrap();
            assert_eq!(c.settings.memory_mib, mib, "{text}");
        }
        for bad in ["0", "8M", "1X", "", "1500K", "2000T"] {
            let message = error_of(&format!("[memory]\nsize = {bad}\n"));
            assert!(message.starts_with(PATH), "{message}");
            assert!(
                message.contains(&format!("[memory] size = \"{bad}\"")),
                "{message}"
            );
            assert!(message.contains("512M or 2G"), "{message}");
        }
    }

    #[test]
    fn cpus_range() {
        assert_eq!(
            load("[processor]\ncpus = 255\n").unwrap().settings.cpus,
            MAX_VCPUS
        );
        for bad in ["0", "256", "-1", "two", "1.5"] {
            let message = error_of(&format!("[processor]\ncpus = {bad}\n"));
            assert!(message.contains("[processor] cpus"), "{message}");
            assert!(message.contains("1 to 255"), "{message}");
        }
    }

    #[test]
    fn type_protocol_bool_and_uuid() {
        assert_eq!(
            load("[machine]\ntype = bsd\n").unwrap().settings.os_type,
            OsType::Bsd
        );
        assert!(error_of("[machine]\ntype = windows\n").contains("linux or bsd"));
        assert_eq!(
            load("[boot]\nprotocol = pvh\n").unwrap().settings.protocol,
            Protocol::Pvh
        );
        assert!(error_of("[boot]\nprotocol = efi\n").contains("auto, linux64, linux32 or pvh"));
        assert!(load("[acpi]\nenabled = yes\n").unwrap().settings.acpi);
        assert!(error_of("[acpi]\nenabled = maybe\n").contains("[acpi] enabled"));
        assert!(error_of("[machine]\nuuid = nope\n").contains("[machine] uuid"));
        // The 2016 config.def placeholder means "no UUID".
        assert_eq!(
            load("[machine]\nuuid = UUID-STRING-HERE\n")
                .unwrap()
                .settings
                .uuid,
            None
        );
    }

    #[test]
    fn slots_and_drivers() {
        let c = load("[networking]\nslot = 5:1\n").unwrap();
        assert_eq!(c.settings.networking.slot.to_string(), "5:1");
        for bad in ["32", "1:8", "a", "1:2:3", ""] {
            let message = error_of(&format!("[bridge]\nslot = {bad}\n"));
            assert!(message.contains("[bridge] slot"), "{message}");
            assert!(message.contains("N or N:F"), "{message}");
        }
        let message = error_of("[networking]\nslot = 4\n");
        assert!(message.contains("[networking] slot = \"4\""), "{message}");
        assert!(message.contains("[internal_storage] has it"), "{message}");
        let message = error_of("[networking]\ndriver = e1000\n");
        assert!(message.contains("one of: virtio-net"), "{message}");
        assert!(error_of("[external_storage]\ndriver = nvme\n").contains("ahci-cd, virtio-blk"));
        assert!(error_of("[lpc_dev]\nconfig = com3,stdio\n").contains("com1,stdio"));
    }

    #[test]
    fn storage_and_network_options() {
        let c = load("[internal_storage]\nconfiginfo = disk.img,ro\n").unwrap();
        assert_eq!(c.settings.internal_storage.path, "disk.img");
        assert!(c.settings.internal_storage.readonly);
        assert!(error_of("[internal_storage]\nconfiginfo = disk.img,size=1g\n").contains(",ro"));
        let c = load("[networking]\nconfiginfo = tap3,mac=02:00:00:00:00:01\n").unwrap();
        assert_eq!(c.settings.networking.tap.as_deref(), Some("tap3"));
        assert_eq!(c.settings.networking.mac, Some([2, 0, 0, 0, 0, 1]));
        assert!(error_of("[networking]\nmac = 01:00:00:00:00:01\n").contains("unicast"));
        assert!(error_of("[networking]\ntap = a/b\n").contains("[networking] tap"));
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let message = error_of("[machine]\nthis is not ini\n");
        assert!(
            message.starts_with(&format!("{PATH} is not valid INI: line 2")),
            "{message}"
        );
    }
}
