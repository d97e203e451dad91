//! The interactive `create` wizard: asks for what the flags would give,
//! each answer checked with the same parsers as the flags and asked again
//! when invalid. End of input cancels.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use super::create::{CreateArgs, TypeArg};
use super::prompt::ask_valid;
use crate::manager::config::keys;
use crate::manager::config::settings::{self, cpus_from_str, memory_from_str};
use crate::manager::size::parse_size;
use crate::vmm::layout::MIB;

fn keep(text: &str) -> Result<String, String> {
    Ok(text.to_string())
}

fn optional_file(text: &str) -> Result<Option<PathBuf>, String> {
    if text.is_empty() || text == "none" {
        return Ok(None);
    }
    let path = PathBuf::from(text);
    if path.is_file() {
        Ok(Some(path))
    } else {
        Err("an existing file, or empty for none".into())
    }
}

/// Fill `args` from answers; `false` if input ended (cancelled).
pub fn ask_all(
    args: &mut CreateArgs,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> io::Result<bool> {
    writeln!(
        out,
        "Creating VM '{}'. Press Enter to take the [default]; Ctrl-D cancels.",
        args.name
    )?;
    macro_rules! ask {
        ($question:expr, $default:expr, $check:expr) => {
            match ask_valid(input, out, $question, $default, $check)? {
                Some(value) => value,
                None => return Ok(false),
            }
        };
    }
    let os_type = ask!("OS type (linux or bsd)", "linux", |t: &str| match t {
        "linux" => Ok(TypeArg::Linux),
        "bsd" => Ok(TypeArg::Bsd),
        _ => Err("linux or bsd".to_string()),
    });
    args.os_type = Some(os_type);
    args.cpus = Some(ask!("Number of vCPUs", "1", cpus_from_str));
    args.memory = Some(ask!("Memory (e.g. 512M, 2G)", "1G", memory_from_str));
    args.iso = ask!("Installer ISO (empty: none)", "", optional_file);
    if args.iso.is_none() {
        let kernel = ask!(
            "Kernel image (a file, disk:auto, or empty to add one later)",
            "",
            |k: &str| match k {
                "" | keys::DISK_AUTO => Ok(k.to_string()),
                _ => optional_file(k).map(|_| k.to_string()),
            }
        );
        if !kernel.is_empty() {
            if kernel != keys::DISK_AUTO {
                args.initrd = ask!("Initrd (empty: none)", "", optional_file);
            }
            args.kernel = Some(kernel);
        }
        let default_cmdline = keys::spec(keys::BOOT, "options").map_or("", |k| k.default);
        args.cmdline = Some(ask!("Kernel command line", default_cmdline, keep));
    }
    args.disk = ask!(
        "Disk size (e.g. 20G; empty: no new disk)",
        "",
        |s: &str| -> Result<Option<u64>, String> {
            if s.is_empty() || s == "none" {
                return Ok(None);
            }
            match parse_size(s, MIB) {
                Ok(bytes) if bytes >= MIB && bytes.is_multiple_of(MIB) => Ok(Some(bytes)),
                _ => Err("a size like 20G, or empty".into()),
            }
        }
    );
    if args.disk.is_none() {
        args.disk_path = ask!(
            "Existing disk image to use (empty: none)",
            "",
            optional_file
        );
    }
    if args.kernel.as_deref() == Some(keys::DISK_AUTO)
        && args.disk.is_none()
        && args.disk_path.is_none()
    {
        writeln!(
            out,
            "  kernel disk:auto needs a disk; booting it will fail until you add one with `edit`"
        )?;
    }
    let tap = ask!(
        "Host TAP interface for networking (empty: no network)",
        "",
        |t: &str| {
            if t.is_empty() || settings::valid_ifname(t) {
                Ok(t.to_string())
            } else {
                Err("an interface name of up to 15 characters, or empty".to_string())
            }
        }
    );
    args.tap = (!tap.is_empty()).then_some(tap);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(answers: &str) -> (bool, CreateArgs, String) {
        let mut args = CreateArgs {
            name: "w".into(),
            ..CreateArgs::default()
        };
        let mut input = io::Cursor::new(answers.to_string());
        let mut out = Vec::new();
        let done = ask_all(&mut args, &mut input, &mut out).unwrap();
        (done, args, String::from_utf8(out).unwrap())
    }

    #[test]
    fn defaults_everywhere() {
        let (done, args, _) = run("\n\n\n\n\n\n\n\n\n");
        assert!(done);
        assert_eq!(args.os_type, Some(TypeArg::Linux));
        assert_eq!(args.cpus, Some(1));
        assert_eq!(args.memory, Some(1024));
        assert_eq!(args.kernel, None);
        assert_eq!(args.disk, None);
        assert_eq!(args.tap, None);
        assert_eq!(
            args.cmdline.as_deref(),
            Some("earlyprintk=serial console=ttyS0 acpi=off")
        );
    }

    #[test]
    fn bad_answers_are_asked_again() {
        let (done, args, out) = run("windows\nbsd\n0\n4\nlots\n2G\n\n\nquiet\n8G\ntap0\n");
        assert!(done, "{out}");
        assert_eq!(args.os_type, Some(TypeArg::Bsd));
        assert_eq!(args.cpus, Some(4));
        assert_eq!(args.memory, Some(2048));
        assert_eq!(args.cmdline.as_deref(), Some("quiet"));
        assert_eq!(args.disk, Some(8 << 30));
        assert_eq!(args.tap.as_deref(), Some("tap0"));
        assert!(
            out.contains("'windows' is not allowed: linux or bsd"),
            "{out}"
        );
        assert!(out.contains("'0' is not allowed"), "{out}");
    }

    #[test]
    fn end_of_input_cancels() {
        let (done, _, _) = run("linux\n2\n");
        assert!(!done);
    }
}
