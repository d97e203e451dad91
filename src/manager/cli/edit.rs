//! `edit NAME`, modelled on `virsh edit`: the editor works on a copy; the
//! copy replaces config.ini (atomically) only once it validates. On an
//! invalid result the user may edit again or discard; without a terminal
//! the edit is discarded and the command fails. config.ini itself is never
//! invalid, not even for a moment.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

use super::prompt;
use crate::manager::config::{CONFIG_FILE, ConfigFile};
use crate::manager::library::{Library, write_atomic};
use crate::manager::run;

/// Editors tried, in order, when neither $VISUAL nor $EDITOR is set.
const FALLBACK_EDITORS: [&str; 5] = ["sensible-editor", "editor", "nano", "vim", "vi"];

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// VM name.
    pub name: String,
}

/// Removes the working copy whatever happens.
struct WorkingCopy(PathBuf);

impl Drop for WorkingCopy {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

pub fn run(library: &Library, args: &EditArgs) -> anyhow::Result<ExitCode> {
    // Find, not load: an invalid config must stay editable.
    let dir = library.find(&args.name)?;
    let path = dir.join(CONFIG_FILE);
    let original =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let editor =
        find_editor().context("no editor found: set $VISUAL or $EDITOR (e.g. EDITOR=nano)")?;
    if run::is_running(&dir) {
        eprintln!(
            "{}: note: VM '{}' is running; changes apply at its next start",
            super::PROGRAM,
            args.name
        );
    }
    let copy = WorkingCopy(dir.join(format!(".config.edit-{}.ini", std::process::id())));
    fs::write(&copy.0, &original).with_context(|| format!("cannot create {}", copy.0.display()))?;
    loop {
        run_editor(&editor, &copy.0)?;
        let edited = fs::read_to_string(&copy.0)
            .with_context(|| format!("cannot read the edited copy {}", copy.0.display()))?;
        if edited == original {
            println!("No changes to {}.", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        match ConfigFile::parse(&path, &edited) {
            Ok(_) => {
                write_atomic(&path, edited.as_bytes(), library.owner)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("Saved {}.", path.display());
                return Ok(ExitCode::SUCCESS);
            }
            Err(err) => {
                let err = anyhow::Error::new(err);
                if !prompt::interactive() {
                    return Err(err.context(format!(
                        "the edited config is invalid; {} was left as it was",
                        path.display()
                    )));
                }
                eprintln!("{}: error: {err:#}", super::PROGRAM);
                if !ask_edit_again()? {
                    bail!("changes discarded; {} was left as it was", path.display());
                }
            }
        }
    }
}

fn ask_edit_again() -> anyhow::Result<bool> {
    loop {
        let stdin = io::stdin();
        let mut input = stdin.lock();
        let answer = prompt::ask(
            &mut input,
            &mut io::stderr(),
            "Edit again (e) or discard the changes and keep the previous file (d)?",
            "e",
        )?;
        match answer.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("e") | Some("edit") => return Ok(true),
            Some("d") | Some("discard") | Some("r") | Some("restore") | None => return Ok(false),
            Some(_) => writeln!(io::stderr(), "Please answer e or d.")?,
        }
    }
}

/// $VISUAL, $EDITOR, or the first fallback on $PATH.
fn find_editor() -> Option<String> {
    for var in ["VISUAL", "EDITOR"] {
        if let Some(value) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            return Some(value);
        }
    }
    FALLBACK_EDITORS
        .iter()
        .find(|e| on_path(e))
        .map(|e| e.to_string())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Run `editor FILE` through the shell, so `EDITOR="code --wait"` works
/// (as git does).
fn run_editor(editor: &str, file: &Path) -> anyhow::Result<()> {
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$@\""))
        .arg("sh")
        .arg(file)
        .status()
        .with_context(|| format!("cannot run the editor '{editor}'"))?;
    if !status.success() {
        bail!("the editor '{editor}' failed ({status}); config.ini was left as it was");
    }
    Ok(())
}
