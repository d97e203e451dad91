//! The root device as the installed bootloader configuration gives it,
//! for disks whose root filesystem this tool cannot read (LVM, btrfs, ...):
//! GRUB's `linux` lines and Boot Loader Specification entries.
//!
//! Spec: GRUB manual §16.3 (`linux` command); UAPI Boot Loader
//! Specification, type #1 entries (`linux`, `options` keys).

use ext4_view::Ext4;

/// GRUB configuration files, relative to a /boot partition or a root.
const GRUB_CONFIGS: &[&str] = &[
    "/grub/grub.cfg",
    "/grub2/grub.cfg",
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
];
/// Boot Loader Specification entry folders.
const BLS_DIRS: &[&str] = &["/loader/entries", "/boot/loader/entries"];
/// GRUB commands that load a Linux kernel.
const GRUB_LINUX: &[&str] = &["linux", "linuxefi", "linux16"];
/// Command line parameters that say where and how to mount the root.
const ROOT_PARAMS: &[&str] = &["root=", "rootflags=", "rootfstype="];
/// Configuration files larger than this are not read.
const MAX_CONFIG: u64 = 1 << 20;
/// BLS entries read at most.
const MAX_ENTRIES: usize = 256;

/// The root parameters from the bootloader configuration on `fs` for the
/// kernel file `kernel_name`, and the file they came from. A line for
/// exactly this kernel wins; otherwise the first line giving `root=`.
pub fn root_params(fs: &Ext4, kernel_name: &str) -> Option<(String, String)> {
    let mut fallback = None;
    for (file, lines) in kernel_lines(fs) {
        for (kernel, args) in lines {
            let params = root_only(&args);
            if params.is_empty() {
                continue;
            }
            if kernel.rsplit('/').next() == Some(kernel_name) {
                return Some((params, file));
            }
            fallback.get_or_insert((params, file.clone()));
        }
    }
    fallback
}

/// `(file, [(kernel path, arguments)])` for each configuration file found.
fn kernel_lines(fs: &Ext4) -> Vec<(String, Vec<(String, String)>)> {
    let mut found = Vec::new();
    for path in GRUB_CONFIGS {
        if let Some(text) = read_small(fs, path) {
            found.push((path.to_string(), grub_lines(&text)));
        }
    }
    for dir in BLS_DIRS {
        let Ok(entries) = fs.read_dir(*dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().as_str().ok().map(str::to_string))
            .filter(|n| n.ends_with(".conf"))
            .take(MAX_ENTRIES)
            .collect();
        names.sort();
        for name in names {
            let path = format!("{dir}/{name}");
            if let Some(text) = read_small(fs, &path) {
                found.push((path, bls_lines(&text)));
            }
        }
    }
    found
}

fn read_small(fs: &Ext4, path: &str) -> Option<String> {
    let meta = fs.metadata(path).ok()?;
    if meta.len() > MAX_CONFIG {
        return None;
    }
    fs.read(path)
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn grub_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let command = words.next()?;
            if !GRUB_LINUX.contains(&command) {
                return None;
            }
            let kernel = words.next()?.to_string();
            Some((kernel, words.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

fn bls_lines(text: &str) -> Vec<(String, String)> {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.trim().split_once(char::is_whitespace)?;
            (k == key).then(|| v.trim().to_string())
        })
    };
    match (value("linux"), value("options")) {
        (Some(kernel), Some(options)) => vec![(kernel, options)],
        _ => Vec::new(),
    }
}

/// Keep the root parameters of a command line, in order.
fn root_only(args: &str) -> String {
    args.split_whitespace()
        .filter(|a| ROOT_PARAMS.iter().any(|p| a.starts_with(p)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_linux_lines_and_root_parameters() {
        let cfg = "menuentry 'Ubuntu' {\n\tlinux\t/vmlinuz-5.15.0-91-generic root=/dev/mapper/ubuntu--vg-ubuntu--lv ro quiet\n\tinitrd /initrd.img-5.15.0-91-generic\n}\n";
        let lines = grub_lines(cfg);
        assert_eq!(lines[0].0, "/vmlinuz-5.15.0-91-generic");
        assert_eq!(
            root_only(&lines[0].1),
            "root=/dev/mapper/ubuntu--vg-ubuntu--lv"
        );
    }

    #[test]
    fn bls_entries_give_linux_and_options() {
        let entry = "title Fedora\nversion 6.5.6\nlinux /vmlinuz-6.5.6-300.fc39.x86_64\ninitrd /initramfs-6.5.6-300.fc39.x86_64.img\noptions root=UUID=abc ro rootflags=subvol=root rhgb\n";
        let lines = bls_lines(entry);
        assert_eq!(lines[0].0, "/vmlinuz-6.5.6-300.fc39.x86_64");
        assert_eq!(
            root_only(&lines[0].1),
            "root=UUID=abc rootflags=subvol=root"
        );
        assert!(bls_lines("title x\n").is_empty());
    }
}
